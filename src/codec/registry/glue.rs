//! The AWS Glue Schema Registry: `GetSchemaVersion` by the schema version id a record carries,
//! with the AWS SDK's default credentials (the same chain as the rest of the sidecar; the
//! endpoint can be moved with `AWS_ENDPOINT_URL_GLUE`). The policy needs
//! `glue:GetSchemaVersion`.

use std::sync::Arc;

use aws_sdk_glue::error::ProvideErrorMetadata as _;
use tokio::sync::OnceCell;

use super::{Parsed, Unreachable, parse};

/// The client, made at first use.
#[derive(Default)]
pub struct Glue {
    client: OnceCell<aws_sdk_glue::Client>,
}

impl Glue {
    /// A client made at first use.
    pub fn new() -> Glue {
        Glue::default()
    }

    /// Fetches and parses schema version `id`.
    pub async fn fetch(&self, id: uuid::Uuid) -> Result<(Result<Parsed, String>, Arc<str>), Unreachable> {
        let client = self
            .client
            .get_or_init(|| async {
                let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                aws_sdk_glue::Client::new(&config)
            })
            .await;
        // The SDK bounds only the connect: a connection that stops answering must not hold
        // the record without `/ready` saying why.
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.get_schema_version().schema_version_id(id.to_string()).send(),
        )
        .await
        .map_err(|_| Unreachable(format!("Glue GetSchemaVersion {id} did not answer within 10 s")))?;
        let version = match answer {
            Ok(version) => version,
            Err(err) => {
                let code = err.code().unwrap_or_default().to_string();
                if code == "EntityNotFoundException" {
                    let name = Arc::from(format!("glue:{id}"));
                    return Ok((
                        Err(format!("schema version {id} is not in the Glue Schema Registry")),
                        name,
                    ));
                }
                let message = err.message().map(str::to_string).unwrap_or_else(|| err.to_string());
                return Err(Unreachable(format!("Glue GetSchemaVersion {id} failed: {code} {message}")));
            }
        };
        // arn:aws:glue:<region>:<account>:schema/<registry>/<schema>
        let path =
            version.schema_arn().and_then(|arn| arn.split_once(":schema/")).map(|(_, path)| path.to_string());
        let name: Arc<str> = Arc::from(format!("glue:{}@{id}", path.unwrap_or_default()));
        let kind = version.data_format().map(|f| f.as_str().to_string()).unwrap_or_default();
        let parsed = match version.schema_definition() {
            Some(text) => parse(&kind, text),
            None => Err(format!("schema version {id} has no definition")),
        };
        Ok((parsed, name))
    }
}
