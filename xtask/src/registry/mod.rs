//! One registry session, for push and reproduce: the reference parsed, the protocol
//! (HTTPS, except on loopback or with --insecure), the credentials from the auth file,
//! the client and its runtime, and the one-line errors users meet.

pub mod credentials;

use anyhow::{bail, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// A client for one repository, with its credentials.
pub struct Session {
    pub client: Client,
    pub auth: RegistryAuth,
    /// `REGISTRY[:PORT]`, as users wrote it and auth files key it.
    pub host: String,
    pub target: Reference,
}

impl Session {
    /// A session for `target` (credentials looked up for its registry); nothing is
    /// sent until the first request.
    pub fn new(target: Reference, authfiles: &[PathBuf], insecure: bool) -> Result<Session> {
        let host = target.resolve_registry().to_string();
        let protocol = if insecure || is_loopback(&host) {
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        install_tls_provider();
        let client = Client::new(ClientConfig {
            protocol,
            read_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Some(Duration::from_secs(10)),
            ..ClientConfig::default()
        });
        let auth = credentials::lookup(authfiles, &host)?;
        Ok(Session {
            client,
            auth,
            host,
            target,
        })
    }

    /// Logs in for `operation` (a token, where the registry uses them).
    pub async fn login(&self, operation: RegistryOperation) -> Result<()> {
        let what = format!("logging in to {}", self.host);
        self.retrying(&what, || {
            self.client.auth(&self.target, &self.auth, operation)
        })
        .await
        .map(|_token| ())
    }

    /// The same repository at `tag_or_digest`.
    pub fn at(&self, tag_or_digest: &str) -> Reference {
        let (registry, repo) = (self.target.registry(), self.target.repository());
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(registry.into(), repo.into(), tag_or_digest.into())
        } else {
            Reference::with_tag(registry.into(), repo.into(), tag_or_digest.into())
        }
    }

    /// Runs `request` (a read) until it succeeds, fails for good, or has failed for a
    /// moment (5xx, 429, a dropped or refused connection, a timeout) `TRIES` times,
    /// waiting 0.25 s, 0.5 s, 1 s, 2 s between tries: at most about 4 s of waiting.
    pub async fn retrying<T, F, Fut>(&self, what: &str, request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        self.retrying_as(Access::Read, what, request).await
    }

    /// `retrying` for a write: a refusal of it, after reads with the same credentials
    /// went through, says that they may not push rather than that they are wrong.
    pub async fn retrying_write<T, F, Fut>(&self, what: &str, request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        self.retrying_as(Access::Write, what, request).await
    }

    async fn retrying_as<T, F, Fut>(&self, access: Access, what: &str, mut request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        let mut pause = Duration::from_millis(250);
        for attempt in 1..=TRIES {
            match request().await {
                Ok(value) => return Ok(value),
                Err(err) if is_transient(&err) && attempt < TRIES => {
                    eprintln!(
                        "{what}: {} failed for a moment ({}); try {} of {TRIES} in {:.2}s",
                        self.host,
                        short(&err),
                        attempt + 1,
                        pause.as_secs_f64()
                    );
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(err) if is_transient(&err) => {
                    return Err(explain(err, &self.host)
                        .context(format!("{what}: gave up after {TRIES} tries")));
                }
                Err(err) if access == Access::Write && is_auth_failure(&err) => {
                    let repo = self.target.repository();
                    return Err(anyhow::anyhow!(
                        "{} refused to let these credentials push to {repo}: they may read it but not write it (a token that grants pull only?); use credentials with push rights",
                        self.host
                    )
                    .context(what.to_string()));
                }
                Err(err) => return Err(explain(err, &self.host).context(what.to_string())),
            }
        }
        unreachable!("the last try returns")
    }
}

/// Whether a request reads or writes: it changes what a refusal means.
#[derive(Clone, Copy, PartialEq)]
enum Access {
    Read,
    Write,
}

/// How many times a request is tried before a transient failure is final.
pub const TRIES: u32 = 5;

/// A failure that another try may not meet: the server's 5xx or 429, a connection
/// refused, dropped or timed out. Never an auth failure or a 4xx.
pub fn is_transient(err: &OciDistributionError) -> bool {
    use oci_client::errors::OciDistributionError as E;
    match err {
        E::ServerError { code, .. } => *code >= 500 || *code == 429,
        E::RequestError(inner) => {
            inner.is_connect()
                || inner.is_timeout()
                || inner.is_request()
                || inner.is_body()
                || inner
                    .status()
                    .is_some_and(|s| s.is_server_error() || s.as_u16() == 429)
        }
        _ => false,
    }
}

/// The error in a few words, for the retry line.
fn short(err: &OciDistributionError) -> String {
    use oci_client::errors::OciDistributionError as E;
    match err {
        E::ServerError { code, .. } => format!("HTTP {code}"),
        E::RequestError(inner) => match inner.status() {
            Some(status) => format!("HTTP {}", status.as_u16()),
            None if inner.is_timeout() => "timed out".to_string(),
            None => "connection failed".to_string(),
        },
        other => other.to_string(),
    }
}

/// `REGISTRY/REPO[:TAG|@DIGEST]`, with a one-line error.
pub fn parse_reference(text: &str) -> Result<Reference> {
    let reference: Reference = text.parse().map_err(|err| {
        anyhow::anyhow!("invalid reference {text:?}: {err}; expected REGISTRY/REPO[:TAG]")
    })?;
    if !text.contains('/') {
        bail!("invalid reference {text:?}: name the registry, as in REGISTRY/REPO[:TAG]");
    }
    Ok(reference)
}

/// `text` split at its tag: a colon after the last slash starts one, one before it
/// ends a registry host (`127.0.0.1:5000/pause`). Shared by registry references and
/// `oci:DIR[:TAG]`.
pub fn split_tag(text: &str) -> (&str, Option<&str>) {
    match text.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (text, None),
    }
}

/// rustls is built without a provider of its own (see Cargo.toml): ring, for the
/// process. A second call finds one installed, which is fine.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// True for registries on this machine, where plain HTTP is allowed without --insecure.
pub fn is_loopback(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One line for the errors users meet: refused credentials, an unreachable registry.
fn explain(err: OciDistributionError, host: &str) -> anyhow::Error {
    use oci_client::errors::OciDistributionError as E;
    let text = format!("{err:#}");
    if is_auth_failure(&err) {
        return anyhow::anyhow!(
            "authentication to {host} failed: check the credentials for {host} (--authfile, REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json or their credential helper)"
        );
    }
    let unreachable = match &err {
        E::RequestError(inner) => inner.is_connect() || inner.is_timeout(),
        _ => false,
    };
    if unreachable {
        return anyhow::anyhow!(
            "cannot reach registry {host}: {text}; check the address and that the registry is up"
        );
    }
    if let E::ServerError { code, url, message } = &err {
        let said = match message.trim() {
            "" => String::new(),
            message => format!(": {message}"),
        };
        return anyhow::anyhow!("registry {host} answered HTTP {code} to {url}{said}");
    }
    anyhow::anyhow!("registry {host}: {text}")
}

/// A refusal of our credentials, by status code or registry error code, never by the
/// error's text (digests and URLs in it can hold "401"). A wrong password reaches us
/// three ways: a 401 on a HEAD (`RequestError`), `ServerError` on a push,
/// `UnauthorizedError` on a pull.
fn is_auth_failure(err: &OciDistributionError) -> bool {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode};
    let status = match err {
        E::ServerError { code, .. } => Some(*code),
        E::RequestError(inner) => inner.status().map(|s| s.as_u16()),
        _ => None,
    };
    let refused_code = matches!(err, E::RegistryError { envelope, .. }
        if envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)));
    matches!(
        err,
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_)
    ) || matches!(status, Some(401 | 403))
        || refused_code
}

#[cfg(test)]
mod tests {
    use oci_client::errors::{OciDistributionError as E, OciEnvelope, OciError, OciErrorCode};

    #[test]
    fn auth_failures_are_judged_by_codes_not_text() {
        let server = |code: u16, message: &str| E::ServerError {
            code,
            url: "http://127.0.0.1:5000/v2/pause/blobs/sha256:4011403".to_string(),
            message: message.to_string(),
        };
        assert!(super::is_auth_failure(&server(401, "")));
        assert!(super::is_auth_failure(&server(403, "")));
        assert!(super::is_auth_failure(&E::UnauthorizedError {
            url: String::new()
        }));
        let registry = |code: OciErrorCode| E::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: String::new(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: String::new(),
        };
        assert!(super::is_auth_failure(&registry(OciErrorCode::Denied)));
        assert!(!super::is_auth_failure(&registry(
            OciErrorCode::BlobUnknown
        )));
        // A server error whose URL and message hold "401" and "403" is not one.
        assert!(!super::is_auth_failure(&server(
            500,
            "digest sha256:401403 failed"
        )));
    }

    use super::*;

    #[test]
    fn a_tag_follows_the_last_slash() {
        assert_eq!(
            split_tag("127.0.0.1:5000/pause:3.10"),
            ("127.0.0.1:5000/pause", Some("3.10"))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/pause"),
            ("127.0.0.1:5000/pause", None)
        );
        assert_eq!(split_tag("target/oci/pause"), ("target/oci/pause", None));
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "127.3.4.5",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "registry.k8s.io",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
