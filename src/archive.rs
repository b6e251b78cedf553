//! The archive: objects by key in S3 or a local directory, for dead letters (`crate::dlq`) and
//! for the claim checks of records too large for an SQS message (`crate::delivery::sqs`).
//!
//! Callers choose the keys (a dead letter's key comes from its coordinates, so a rewrite of the
//! same dead letter replaces the same object). Directory writes go through a temporary file and
//! a rename, so a reader never sees half an object.

use std::path::PathBuf;

use crate::config::ArchiveTarget;

/// Why an archive write failed. Every failure is retried by the caller.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// S3 refused or could not be reached.
    #[error("S3 PutObject s3://{bucket}/{key} failed: {message}")]
    S3 {
        /// Bucket.
        bucket: String,
        /// Object key.
        key: String,
        /// The SDK's error, one line.
        message: String,
    },
    /// The local file could not be written.
    #[error("cannot write {path}: {source}")]
    File {
        /// File path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The archive document could not be encoded.
    #[error("cannot encode the archive document: {0}")]
    Encode(String),
}

/// Where archive objects go.
#[derive(Clone, Debug)]
pub enum Archive {
    /// An S3 bucket and prefix.
    S3 {
        /// S3 client (endpoint and credentials from the AWS SDK's environment).
        client: aws_sdk_s3::Client,
        /// Bucket name.
        bucket: String,
        /// Key prefix without trailing `/`.
        prefix: String,
    },
    /// A local directory.
    Dir {
        /// The directory; objects go under it by key.
        root: PathBuf,
    },
}

impl Archive {
    /// Builds the archive for a configured target (`None` for `none`).
    pub async fn from_target(target: &ArchiveTarget) -> Option<Archive> {
        match target {
            ArchiveTarget::None => None,
            ArchiveTarget::File(root) => Some(Archive::Dir { root: root.clone() }),
            ArchiveTarget::S3 { bucket, prefix } => {
                let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                Some(Archive::S3 {
                    client: aws_sdk_s3::Client::new(&config),
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                })
            }
        }
    }

    /// The key prefix under which objects are written.
    pub fn prefix(&self) -> &str {
        match self {
            Archive::S3 { prefix, .. } => prefix,
            Archive::Dir { .. } => "",
        }
    }

    /// A URI naming the object with `key`, for logs and reports.
    pub fn location(&self, key: &str) -> String {
        match self {
            Archive::S3 { bucket, .. } => format!("s3://{bucket}/{key}"),
            Archive::Dir { root } => format!("file://{}", root.join(key).display()),
        }
    }

    /// Writes (or overwrites) the object `key`.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), ArchiveError> {
        match self {
            Archive::S3 { client, bucket, .. } => client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type("application/json")
                .body(body.into())
                .send()
                .await
                .map(drop)
                .map_err(|err| ArchiveError::S3 {
                    bucket: bucket.clone(),
                    key: key.to_string(),
                    message: describe_sdk_error(&err),
                }),
            Archive::Dir { root } => {
                let path = root.join(key);
                let tmp = path.with_extension("json.tmp");
                let result = async {
                    if let Some(parent) = path.parent() {
                        tokio::fs::create_dir_all(parent).await?;
                    }
                    tokio::fs::write(&tmp, body).await?;
                    tokio::fs::rename(&tmp, &path).await
                }
                .await;
                result.map_err(|source| ArchiveError::File { path, source })
            }
        }
    }
}

/// A short description of an AWS SDK error: the service's code and message when it answered,
/// else the transport error (one line, bounded).
pub fn describe_sdk_error<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => {
            let text = one_line(&aws_sdk_s3::error::DisplayErrorContext(err).to_string());
            text.chars().take(300).collect()
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn directory_archive_writes_and_overwrites_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Archive::Dir { root: dir.path().to_path_buf() };
        archive.put("t/2024/01/02/0-5.json", b"{\"a\":1}".to_vec()).await.expect("put");
        archive.put("t/2024/01/02/0-5.json", b"{\"a\":2}".to_vec()).await.expect("put again");
        let read = std::fs::read_to_string(dir.path().join("t/2024/01/02/0-5.json")).expect("read");
        assert_eq!(read, "{\"a\":2}");
        assert!(!dir.path().join("t/2024/01/02/0-5.json.tmp").exists());
        assert!(archive.location("t/x.json").starts_with("file:///"));
    }

    #[tokio::test]
    async fn directory_archive_reports_unwritable_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"not a directory").expect("write");
        let archive = Archive::Dir { root: blocker };
        let err = archive.put("t/0-1.json", b"{}".to_vec()).await.expect_err("cannot write under a file");
        assert!(err.to_string().contains("cannot write"), "{err}");
    }
}
