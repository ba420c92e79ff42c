//! What roadie can wait for: the database, and `--wait-for` targets (`tcp://host:port`,
//! `http(s)://...` answering 2xx, another database URL), each probed once per attempt; and
//! the bare connect (`PortCheck`) that tells, at no cost to the server, when its port opens.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use url::Url;

use crate::database::readiness::{self, Verdict};
use crate::database::standby::{self, OnStandby};
use crate::database::{self, ConnectOptions, Connection, DatabaseUrl, Listening};

/// A host name is looked up at most this often (20 times a second): compose's DNS answers
/// every lookup, and a name stays unresolvable until its container exists.
pub const RESOLVE_EVERY: Duration = Duration::from_millis(50);

#[derive(Clone)]
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

impl std::fmt::Debug for Target {
    /// As derived, but an http(s) URL is shown masked, by its name: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Database {
                url,
                name,
                hand_on,
                standby,
            } => f
                .debug_struct("Database")
                .field("url", url)
                .field("name", name)
                .field("hand_on", hand_on)
                .field("standby", standby)
                .finish(),
            Target::Tcp { host, port, name } => f
                .debug_struct("Tcp")
                .field("host", host)
                .field("port", port)
                .field("name", name)
                .finish(),
            Target::Http { name, .. } => f.debug_struct("Http").field("name", name).finish(),
        }
    }
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
            // Errors name the target masked, or not at all: it may hold a password.
            "tcp" => {
                let url =
                    Url::parse(text).map_err(|e| format!("--wait-for: malformed URL: {e}"))?;
                let (Some(host), Some(port)) = (url.host_str(), url.port()) else {
                    // Without `//` the url crate finds no userinfo to mask: name none of it.
                    let shown = if url.has_host() {
                        format!(" {}", database::masked(&url))
                    } else {
                        String::new()
                    };
                    return Err(format!("--wait-for{shown}: expected tcp://host:port"));
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
                let url =
                    Url::parse(text).map_err(|e| format!("--wait-for: malformed URL: {e}"))?;
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

    /// The bare connect that tells when this target's port opens: for servers (databases
    /// but SQLite, and tcp:// targets), not for http(s):// ones.
    pub fn port_check(&self) -> Option<PortCheck> {
        match self {
            Target::Database { url, .. } => PortCheck::of_database(&url.connect_options().ok()?),
            Target::Tcp { host, port, .. } => Some(PortCheck::tcp(host, *port)),
            Target::Http { .. } => None,
        }
    }

    /// Whether an open port is all this target needs (tcp://).
    pub fn ready_when_port_opens(&self) -> bool {
        matches!(self, Target::Tcp { .. })
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
                    .map_err(|e| match readiness::classify_io(&e) {
                        Verdict::Permanent { cause, .. } => Verdict::Transient(cause),
                        verdict => verdict,
                    })
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

/// Where a target listens, checked with a bare connect: while the port refuses, the kernel
/// answers (RST, or no such socket file) and the server never sees it. One that succeeds is
/// closed at once, before a byte is sent (Postgres forks a backend for it that exits quietly).
pub struct PortCheck {
    place: Place,
    /// The addresses of the last lookup (or the literal address), tried in order.
    addresses: Vec<SocketAddr>,
    /// When the name was last looked up; `None` for a literal address or before the first.
    looked_up: Option<Instant>,
}

enum Place {
    Tcp { host: String, port: u16 },
    Socket(PathBuf),
}

impl PortCheck {
    fn tcp(host: &str, port: u16) -> Self {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addresses = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => Vec::new(),
        };
        PortCheck {
            place: Place::Tcp {
                host: host.to_string(),
                port,
            },
            addresses,
            looked_up: None,
        }
    }

    fn socket(path: PathBuf) -> Self {
        PortCheck {
            place: Place::Socket(path),
            addresses: Vec::new(),
            looked_up: None,
        }
    }

    /// Where a database listens, as sqlx would connect to it; `None` for SQLite.
    fn of_database(options: &ConnectOptions) -> Option<Self> {
        Some(match options.listening()? {
            Listening::Socket(path) => Self::socket(path),
            Listening::Tcp { host, port } => Self::tcp(&host, port),
        })
    }

    /// One bare connect to each address in turn: `Ok` as soon as one accepts. A name is
    /// looked up again when the last lookup is `RESOLVE_EVERY` old; until then the addresses
    /// it gave are reused, and a name that gave none waits for its next lookup.
    pub async fn check(&mut self) -> Result<(), String> {
        let (host, port) = match &self.place {
            Place::Socket(path) => {
                return tokio::net::UnixStream::connect(path)
                    .await
                    .map(drop)
                    .map_err(|e| format!("{}: {e}", path.display()));
            }
            Place::Tcp { host, port } => (host.clone(), *port),
        };
        let literal = self.looked_up.is_none() && !self.addresses.is_empty();
        if !literal {
            self.look_up(&host, port).await?;
        }
        let mut last = None;
        for address in &self.addresses {
            match tokio::net::TcpStream::connect(address).await {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(
            || format!("{host} resolves to no address"),
            |e| e.to_string(),
        ))
    }

    async fn look_up(&mut self, host: &str, port: u16) -> Result<(), String> {
        if let Some(at) = self.looked_up {
            let due = at + RESOLVE_EVERY;
            if !self.addresses.is_empty() && Instant::now() < due {
                return Ok(());
            }
            tokio::time::sleep_until(due.into()).await;
        }
        self.looked_up = Some(Instant::now());
        match tokio::net::lookup_host((host, port)).await {
            Ok(found) => {
                self.addresses = found.collect();
                Ok(())
            }
            Err(e) => {
                self.addresses.clear();
                Err(format!("{host}: {e}"))
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
mod properties;

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
