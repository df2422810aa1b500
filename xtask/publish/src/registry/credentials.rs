//! Credentials where `docker login` and `podman login` leave them.
//!
//! Files, in the order skopeo and podman read them: `--authfile`, else
//! `REGISTRY_AUTH_FILE` (either one alone: the user chose it), else
//! `$XDG_RUNTIME_DIR/containers/auth.json`, then `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`; the first with credentials for the registry wins.
//!
//! Inside a file, `docker_credential` does the lookup: `credHelpers.<host>`, then
//! `auths.<host>.auth`, then `credsStore`, running `docker-credential-NAME get` for a
//! helper. It lacks three things, added here: keys written as `https://host` (what
//! `docker login` writes for some registries), the name of a helper that is not on
//! PATH (it says only that it could not talk to one), and `identitytoken` entries
//! (it ignores them; our registry client cannot use OAuth2 refresh tokens, so we
//! refuse them with a line rather than push anonymously).

use anyhow::{bail, Context, Result};
use docker_credential::{CredentialRetrievalError as E, DockerCredential};
use std::path::{Path, PathBuf};
use xshell::Shell;

/// What a registry gets to prove who we are. `Debug` never shows the password.
#[derive(Clone, PartialEq)]
pub enum Credentials {
    Anonymous,
    Basic { user: String, password: String },
}

impl Credentials {
    /// The strings that must never be printed: the password, and the header value
    /// that carries it (`base64(user:password)`).
    pub fn secrets(&self) -> Vec<String> {
        use base64::Engine;
        match self {
            Credentials::Anonymous => Vec::new(),
            Credentials::Basic { user, password } => vec![
                password.clone(),
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
            ],
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { user, .. } => {
                write!(f, "Basic {{ user: {user:?}, password: <not shown> }}")
            }
        }
    }
}

/// The auth files to look in, in order (only those that exist, but an explicit one is
/// kept so that reading it fails with its name).
pub fn auth_files(sh: &Shell, given: Option<PathBuf>) -> Vec<PathBuf> {
    if let Some(chosen) = given.or_else(|| sh.var_os("REGISTRY_AUTH_FILE").map(PathBuf::from)) {
        return vec![chosen];
    }
    let podman = sh
        .var_os("XDG_RUNTIME_DIR")
        .map(|dir| Path::new(&dir).join("containers/auth.json"));
    let docker = sh
        .var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            sh.var_os("HOME")
                .map(|home| Path::new(&home).join(".docker"))
        })
        .map(|dir| dir.join("config.json"));
    [podman, docker]
        .into_iter()
        .flatten()
        .filter(|path| path.is_file())
        .collect()
}

/// The credentials for `host` from the first of `files` that has some; anonymous when
/// none has.
pub fn lookup(files: &[PathBuf], host: &str) -> Result<Credentials> {
    for path in files {
        if let Some(auth) = from_file(path, host)? {
            return Ok(auth);
        }
    }
    Ok(Credentials::Anonymous)
}

fn from_file(path: &Path, host: &str) -> Result<Option<Credentials>> {
    let text =
        std::fs::read(path).with_context(|| format!("reading auth file {}", path.display()))?;
    let config: serde_json::Value = serde_json::from_slice(&text).with_context(|| {
        format!(
            "auth file {} is not JSON in the docker config format",
            path.display()
        )
    })?;
    let keys = [
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
    ];
    for key in &keys {
        if config["auths"][key]["identitytoken"].is_string() {
            bail!("auths.{key} in {} holds an identitytoken (an OAuth2 refresh token), which push cannot use; log in with a password or an access token instead", path.display());
        }
        match docker_credential::get_credential_from_reader(text.as_slice(), key) {
            Ok(DockerCredential::UsernamePassword(user, secret)) => {
                return Ok(Some(Credentials::Basic {
                    user,
                    password: secret,
                }))
            }
            // Helpers answer `<token>` as the user for an identity token.
            Ok(DockerCredential::IdentityToken(_)) => bail!(
                "the credential helper for {key} in {} gave an identity token (an OAuth2 refresh token), which push cannot use",
                path.display()
            ),
            Err(E::NoCredentialConfigured) => continue,
            Err(E::HelperCommunicationError) => {
                let helper = helper_of(&config, key).unwrap_or_default();
                bail!("the credential helper docker-credential-{helper} that {} names for {key} cannot be run: is it on PATH?", path.display());
            }
            Err(E::HelperFailure { stderr, .. }) => {
                // A store without this registry answers so; the next file may have it.
                if stderr.contains("credentials not found") {
                    continue;
                }
                let helper = helper_of(&config, key).unwrap_or_default();
                bail!(
                    "the credential helper docker-credential-{helper} failed for {key}: {}",
                    stderr.trim()
                );
            }
            Err(E::CredentialDecodingError) => bail!(
                "auths.{key}.auth in {} is not base64 of user:password",
                path.display()
            ),
            Err(err) => bail!("reading credentials for {key} from {}: {err}", path.display()),
        }
    }
    Ok(None)
}

/// The helper the config names for `key`: its `credHelpers` entry, else `credsStore`.
fn helper_of(config: &serde_json::Value, key: &str) -> Option<String> {
    config["credHelpers"][key]
        .as_str()
        .or(config["credsStore"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn credentials_come_from_the_docker_config_format() {
        let dir = std::env::temp_dir().join(format!("xtask-auth-{}", std::process::id()));
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let plain = file(
            &dir,
            "plain.json",
            &format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{encoded}"}}}}}}"#),
        );
        let https = file(
            &dir,
            "https.json",
            &format!(r#"{{"auths":{{"https://ghcr.io":{{"auth":"{encoded}"}}}}}}"#),
        );
        let basic = |auth| match auth {
            Credentials::Basic { user, password } => (user, password),
            other => panic!("expected basic auth, got {other:?}"),
        };
        let alice = ("alice".to_string(), "s3cr:et".to_string());
        assert_eq!(
            basic(lookup(std::slice::from_ref(&plain), "127.0.0.1:5000").unwrap()),
            alice
        );
        assert_eq!(
            basic(lookup(std::slice::from_ref(&https), "ghcr.io").unwrap()),
            alice
        );
        // The first file with an entry wins; a file without one is passed over.
        assert_eq!(
            basic(lookup(&[plain.clone(), https.clone()], "ghcr.io").unwrap()),
            alice
        );
        assert!(matches!(
            lookup(&[plain], "ghcr.io").unwrap(),
            Credentials::Anonymous
        ));

        let bad = file(
            &dir,
            "bad.json",
            r#"{"auths":{"ghcr.io":{"auth":"not base64!"}}}"#,
        );
        let err = lookup(&[bad], "ghcr.io").unwrap_err().to_string();
        assert!(err.contains("not base64"), "{err}");
        let token = file(
            &dir,
            "token.json",
            r#"{"auths":{"ghcr.io":{"identitytoken":"xyz"}}}"#,
        );
        let err = lookup(&[token], "ghcr.io").unwrap_err().to_string();
        assert!(err.contains("identitytoken"), "{err}");
        let missing = file(
            &dir,
            "helper.json",
            r#"{"credHelpers":{"ghcr.io":"pause-test-absent"}}"#,
        );
        let err = lookup(&[missing], "ghcr.io").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-pause-test-absent") && err.contains("PATH"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
