//! What roadie can wait for: the database, and `--wait-for` targets (`tcp://host:port`,
//! `http(s)://...` answering 2xx, another database URL), each probed once per attempt.

use std::time::Duration;

use url::Url;

use crate::database::readiness::{self, Verdict};
use crate::database::standby::{self, OnStandby};
use crate::database::{self, Connection, DatabaseUrl};

#[derive(Debug, Clone)]
pub enum Target {
    /// The database (named "database" in logs), or another one from `--wait-for`.
    Database {
        url: DatabaseUrl,
        name: String,
        /// The database the boot migrates: its ready connection goes on to the migrate stage.
        hand_on: bool,
        /// Whether a read-only standby is not ready (wait) or refused (fail).
        standby: Option<OnStandby>,
    },
    Tcp {
        host: String,
        port: u16,
        name: String,
    },
    Http {
        url: Url,
        name: String,
    },
}

impl Target {
    /// The boot's own database (`name` in logs), or its direct URL for migrations.
    pub fn database(
        url: DatabaseUrl,
        name: &str,
        hand_on: bool,
        standby: Option<OnStandby>,
    ) -> Self {
        Target::Database {
            url,
            name: name.into(),
            hand_on,
            standby,
        }
    }

    /// Reads a `--wait-for` value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let scheme = text
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "tcp" => {
                let url = Url::parse(text).map_err(|e| format!("--wait-for {text:?}: {e}"))?;
                let (Some(host), Some(port)) = (url.host_str(), url.port()) else {
                    return Err(format!("--wait-for {text:?}: expected tcp://host:port"));
                };
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                Ok(Target::Tcp {
                    name: format!("tcp://{}:{port}", url.host_str().unwrap_or_default()),
                    host,
                    port,
                })
            }
            "http" | "https" => {
                let url = Url::parse(text).map_err(|e| format!("--wait-for {text:?}: {e}"))?;
                Ok(Target::Http {
                    name: database::masked(&url).to_string(),
                    url,
                })
            }
            _ => {
                let url = DatabaseUrl::parse(text, "--wait-for").map_err(|_| {
                    "--wait-for: expected tcp://host:port, http(s)://... or a database URL"
                        .to_string()
                })?;
                Ok(Target::Database {
                    name: url.to_string(),
                    url,
                    hand_on: false,
                    standby: None,
                })
            }
        }
    }

    /// How logs name it: "database", or the target as written, password masked.
    pub fn name(&self) -> &str {
        match self {
            Target::Database { name, .. }
            | Target::Tcp { name, .. }
            | Target::Http { name, .. } => name,
        }
    }

    /// One attempt. Ready, the boot's own database answers with its open connection.
    pub async fn probe(
        &self,
        http: Option<&reqwest::Client>,
    ) -> Result<Option<Connection>, Verdict> {
        match self {
            Target::Database {
                url,
                hand_on,
                standby,
                ..
            } => {
                let mut connection = readiness::probe(url)
                    .await
                    .map_err(|e| readiness::classify(&e, url))?;
                if let Some(policy) = standby {
                    let read_only = standby::read_only(&mut connection)
                        .await
                        .map_err(|e| readiness::classify(&e, url))?;
                    if let Some(why) = read_only {
                        connection.close().await;
                        let cause = format!("the {} is {why}", url.whereabouts());
                        return Err(match policy {
                            OnStandby::Fail => Verdict::Permanent {
                                cause,
                                hint: "--on-standby fail: point the URL at the primary, or \
                                       use --on-standby wait or skip"
                                    .into(),
                            },
                            _ => Verdict::Transient(format!(
                                "{cause}; waiting for a primary (--on-standby wait)"
                            )),
                        });
                    }
                }
                if *hand_on {
                    return Ok(Some(connection));
                }
                connection.close().await;
                Ok(None)
            }
            Target::Tcp { host, port, .. } => {
                // tokio tries every address the name resolves to, A and AAAA.
                tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map(|_| None)
                    .map_err(|e| Verdict::Transient(e.to_string()))
            }
            Target::Http { url, .. } => {
                let client = http.expect("UNWRAP: a client is built when an http target exists");
                match client.get(url.clone()).send().await {
                    Ok(response) if response.status().is_success() => Ok(None),
                    Ok(response) => Err(Verdict::Transient(format!("HTTP {}", response.status()))),
                    Err(e) => Err(Verdict::Transient(without_url(&e))),
                }
            }
        }
    }
}

/// reqwest's message with the URL (which may hold a password) left out.
fn without_url(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    if let Some(url) = e.url() {
        message = message.replace(url.as_str(), "the URL");
    }
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

/// The client for http(s) targets: one attempt may take `timeout`.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    // reqwest leaves the choice of crypto to us; sqlx uses ring too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("setting up the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("tcp://cache:6379", "tcp://cache:6379")]
    #[case("tcp://[::1]:6379", "tcp://[::1]:6379")]
    #[case("http://api:8080/health", "http://api:8080/health")]
    #[case("https://u:secret@api/health", "https://u:***@api/health")]
    #[case("postgres://app:secret@other/db", "postgres://app:***@other/db")]
    fn reads_wait_for_targets_and_masks_passwords(#[case] text: &str, #[case] name: &str) {
        assert_eq!(Target::parse(text).unwrap().name(), name);
    }

    #[rstest]
    #[case("tcp://cache")]
    #[case("cache:6379")]
    #[case("ftp://x")]
    fn refuses_what_it_cannot_wait_for(#[case] text: &str) {
        assert!(Target::parse(text).is_err());
    }
}
