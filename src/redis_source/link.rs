//! A Redis connection made on first use and made again after an error: the source's commands
//! never hold a broken connection, and a server that went away is reached again with the next
//! command (the caller backs off). With `REDIS_AUTH=iam` each new connection authenticates with
//! a token signed then (ElastiCache accepts a token for 15 minutes, for new connections only).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Value};
use tokio::sync::Mutex;

/// Signs the password of each new connection (`REDIS_AUTH=iam`).
pub trait Password: Send + Sync + 'static {
    /// The password for a connection made now.
    fn password(&self) -> Result<String, String>;
}

/// One connection, remade on demand.
pub struct Link {
    client: Client,
    config: AsyncConnectionConfig,
    password: Option<std::sync::Arc<dyn Password>>,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl Link {
    /// A link whose commands give up after `timeout` without an answer; `password` signs each
    /// new connection's password (else the URL's is used).
    pub fn new(client: Client, timeout: Duration, password: Option<std::sync::Arc<dyn Password>>) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(timeout));
        Link { client, config, password, connection: Mutex::new(None) }
    }

    /// A client for a new connection: the URL's, or with a freshly signed password.
    fn client(&self) -> Result<Client, CommandError> {
        let Some(password) = &self.password else { return Ok(self.client.clone()) };
        let token = password.password().map_err(|text| CommandError { code: None, refused: false, text })?;
        let info = self.client.get_connection_info().clone();
        let settings = info.redis_settings().clone().set_password(token);
        Client::open(info.set_redis_settings(settings)).map_err(|err| CommandError::from(&err))
    }

    /// Runs `cmd`; an error is one line without the server's address or credentials.
    pub async fn query(&self, cmd: &Cmd) -> Result<Value, CommandError> {
        let mut connection = {
            let mut slot = self.connection.lock().await;
            match slot.as_ref() {
                Some(connection) => connection.clone(),
                None => {
                    let connection = self
                        .client()?
                        .get_multiplexed_async_connection_with_config(&self.config)
                        .await
                        .map_err(|err| CommandError::from(&err))?;
                    *slot = Some(connection.clone());
                    connection
                }
            }
        };
        match cmd.query_async::<Value>(&mut connection).await {
            Ok(value) => Ok(value),
            Err(err) => {
                // A refusal by the server (a wrong type, no such group) leaves the connection
                // usable; anything else may have broken it.
                if !matches!(err.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::Extension) {
                    self.connection.lock().await.take();
                }
                Err(CommandError::from(&err))
            }
        }
    }
}

/// A command that failed: the server's error code (`BUSYGROUP`, `NOGROUP`), if it answered with
/// one, and one line that names the failure (never the URL or credentials).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct CommandError {
    /// The server's error code.
    pub code: Option<String>,
    /// The server answered, and no retry changes the answer: wrong credentials, a key that is
    /// not a stream, an ACL that forbids the command. (Failing over, loading, too many clients
    /// and no answer at all pass.)
    pub refused: bool,
    /// What failed.
    pub text: String,
}

impl From<&redis::RedisError> for CommandError {
    fn from(err: &redis::RedisError) -> Self {
        let code = err.code().map(str::to_string);
        CommandError {
            refused: err.kind() == redis::ErrorKind::AuthenticationFailed
                || matches!(code.as_deref(), Some("WRONGTYPE" | "NOPERM" | "WRONGPASS" | "NOAUTH")),
            code,
            text: crate::config::redact_text_url(&err.to_string().replace('\n', " ")),
        }
    }
}
