//! A Confluent-compatible schema registry over its REST API: `GET /schemas/ids/{id}` gives the
//! schema's text, its type (`schemaType`, absent for Avro) and its references. Basic auth comes
//! from the URL's user info and is never shown.

use std::sync::Arc;
use std::time::Duration;

use super::{Parsed, Unreachable, parse};

/// The registry's answer for one schema id.
#[derive(serde::Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

/// The client.
pub struct Confluent {
    base: reqwest::Url,
    auth: Option<(String, String)>,
    http: reqwest::Client,
}

impl Confluent {
    /// A client for the registry at `url`.
    pub fn new(url: &str) -> Result<Confluent, String> {
        let mut base = reqwest::Url::parse(url.trim()).map_err(|e| format!("not a URL or glue: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err("expected glue or an http:// or https:// URL".into());
        }
        let auth = (!base.username().is_empty()).then(|| {
            let decode = |s: &str| percent_decode(s);
            (decode(base.username()), decode(base.password().unwrap_or_default()))
        });
        // Cannot fail on an http(s) URL.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        // The registry's API takes no query; a query value may be a secret, never shown.
        base.set_query(None);
        base.set_fragment(None);
        // `schemas/ids/1` joins under the base's path, also when it lacks the final slash
        // (`https://host/apis/ccompat/v7`).
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Confluent { base, auth, http })
    }

    /// The URL (its credentials and query were taken out when it was read).
    pub fn describe(&self) -> String {
        self.base.to_string()
    }

    /// Fetches and parses schema `id`.
    pub async fn fetch(&self, id: u32) -> Result<(Result<Parsed, String>, Arc<str>), Unreachable> {
        let name: Arc<str> = Arc::from(format!("confluent:{id}"));
        let url = self
            .base
            .join(&format!("schemas/ids/{id}"))
            .map_err(|e| Unreachable(format!("registry URL: {e}")))?;
        let mut request = self.http.get(url);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let answer = request
            .send()
            .await
            .map_err(|e| Unreachable(format!("{} does not answer: {}", self.describe(), e.without_url())))?;
        let status = answer.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            // Only the registry's own "schema not found" (error code 40403) says the id is
            // unknown; any other 404 (a wrong path, a proxy) is an outage, not a bad record.
            let body = answer.bytes().await.unwrap_or_default();
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error_code"].as_i64());
            if code == Some(40403) {
                return Ok((Err(format!("schema id {id} is not in the registry")), name));
            }
            return Err(Unreachable(format!(
                "{} answered 404 without the registry's error code for schema id {id}: is the URL the registry's?",
                self.describe()
            )));
        }
        if !status.is_success() {
            return Err(Unreachable(format!("{} answered {status} for schema id {id}", self.describe())));
        }
        let text = answer.bytes().await.map_err(|e| {
            Unreachable(format!("{} broke off its answer: {}", self.describe(), e.without_url()))
        })?;
        let body: SchemaAnswer = serde_json::from_slice(&text)
            .map_err(|e| Unreachable(format!("{} gave an unreadable answer: {e}", self.describe())))?;
        if !body.references.is_empty() {
            return Ok((
                Err(format!("schema id {id} has references, which the sidecar does not resolve yet")),
                name,
            ));
        }
        Ok((parse(body.schema_type.as_deref().unwrap_or("AVRO"), &body.schema), name))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_and_a_base_path_keeps_its_last_segment() {
        let registry = Confluent::new("https://svc:p%40ss@registry.internal/apis/ccompat/v7").expect("valid");
        assert_eq!(registry.auth, Some(("svc".to_string(), "p@ss".to_string())));
        assert!(!registry.describe().contains("p%40ss") && !registry.describe().contains("svc"));
        assert_eq!(
            registry.base.join("schemas/ids/3").expect("join").as_str(),
            "https://registry.internal/apis/ccompat/v7/schemas/ids/3"
        );
        assert!(Confluent::new("ftp://registry").is_err());
    }
}
