//! One registry session, for push and reproduce: the reference parsed, the protocol
//! (HTTPS, except on loopback or with --insecure), the credentials from the auth file,
//! the client and its runtime, and the one-line errors users meet.

use anyhow::{bail, Context, Result};
use base64::Engine;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use std::path::{Path, PathBuf};
use std::time::Duration;
use xshell::Shell;

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
    pub fn new(target: Reference, authfile: Option<&Path>, insecure: bool) -> Result<Session> {
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
        let auth = credentials(authfile, &host)?;
        Ok(Session {
            client,
            auth,
            host,
            target,
        })
    }

    /// Logs in for `operation` (a token, where the registry uses them).
    pub async fn login(&self, operation: RegistryOperation) -> Result<()> {
        self.client
            .auth(&self.target, &self.auth, operation)
            .await
            .map(|_token| ())
            .map_err(|err| self.explain(err))
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

    /// One line for `err`, naming this registry.
    pub fn explain(&self, err: OciDistributionError) -> anyhow::Error {
        explain(err, &self.host)
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

/// `--authfile`, else `REGISTRY_AUTH_FILE`, else `~/.docker/config.json` (if it exists).
pub fn auth_file(sh: &Shell, given: Option<PathBuf>) -> Option<PathBuf> {
    given
        .or_else(|| sh.var_os("REGISTRY_AUTH_FILE").map(PathBuf::from))
        .or_else(|| {
            sh.var_os("HOME")
                .map(|home| Path::new(&home).join(".docker/config.json"))
                .filter(|p| p.is_file())
        })
}

/// Credentials for `host` from a docker-format auth file: `auths.<host>.auth` is
/// base64 of `user:password`.
pub fn credentials(authfile: Option<&Path>, host: &str) -> Result<RegistryAuth> {
    let Some(path) = authfile else {
        return Ok(RegistryAuth::Anonymous);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading auth file {}", path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "auth file {} is not JSON in the docker config format",
            path.display()
        )
    })?;
    let auths = &config["auths"];
    let entry = [
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
    ]
    .iter()
    .find_map(|key| auths.get(key))
    .cloned();
    let Some(encoded) = entry.as_ref().and_then(|e| e["auth"].as_str()) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .with_context(|| {
            format!(
                "auths.{host}.auth in {} is not base64 of user:password",
                path.display()
            )
        })?;
    let (user, password) = decoded.split_once(':').with_context(|| {
        format!(
            "auths.{host}.auth in {} is not base64 of user:password",
            path.display()
        )
    })?;
    Ok(RegistryAuth::Basic(user.to_string(), password.to_string()))
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
            "authentication to {host} failed: check the user and password for {host} in the auth file (--authfile, REGISTRY_AUTH_FILE or ~/.docker/config.json)"
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

    #[test]
    fn credentials_come_from_the_docker_config_format() {
        let dir = std::env::temp_dir().join(format!("xtask-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("auth.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        std::fs::write(
            &file,
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{encoded}"}}}}}}"#),
        )
        .unwrap();
        match credentials(Some(&file), "127.0.0.1:5000").unwrap() {
            RegistryAuth::Basic(user, pass) => {
                assert_eq!((user.as_str(), pass.as_str()), ("alice", "s3cr:et"))
            }
            _ => panic!("expected basic auth"),
        }
        assert!(matches!(
            credentials(Some(&file), "ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        ));
        std::fs::write(&file, r#"{"auths":{"ghcr.io":{"auth":"not base64!"}}}"#).unwrap();
        assert!(credentials(Some(&file), "ghcr.io")
            .unwrap_err()
            .to_string()
            .contains("not base64"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
