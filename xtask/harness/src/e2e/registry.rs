//! A real docker-registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1,
//! with bcrypt htpasswd auth or with bearer tokens from an issuer of ours (see
//! `token.rs`), started for a test run and stopped when dropped.

use anyhow::{bail, Context, Result};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use xshell::{cmd, Shell};

pub const USER: &str = "pause-e2e";
pub const PASSWORD: &str = "correct-horse";

pub struct Registry {
    child: Child,
    pub host: String,
    pub dir: PathBuf,
}

impl Registry {
    /// Starts the registry in `dir` (config, htpasswd and storage live there).
    pub fn start(sh: &Shell, dir: &Path) -> Result<Registry> {
        std::fs::create_dir_all(dir)?;
        let htpasswd_line = cmd!(sh, "htpasswd -Bbn {USER} {PASSWORD}")
            .quiet()
            .read()
            .context("htpasswd (apache2-utils) failed")?;
        std::fs::write(dir.join("htpasswd"), format!("{htpasswd_line}\n"))?;
        let auth = format!(
            "  htpasswd:\n    realm: pause-e2e\n    path: {}\n",
            dir.join("htpasswd").display()
        );
        Registry::start_with(dir, &auth)
    }

    /// Starts a registry whose clients need a token from `realm`, signed by the key of
    /// the certificate `cert` and naming `service` and `issuer`.
    pub fn start_with_tokens(
        dir: &Path,
        realm: &str,
        service: &str,
        issuer: &str,
        cert: &Path,
    ) -> Result<Registry> {
        let auth = format!(
            "  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
            cert.display()
        );
        Registry::start_with(dir, &auth)
    }

    /// Starts the registry with `auth` as its config's `auth:` section.
    fn start_with(dir: &Path, auth: &str) -> Result<Registry> {
        std::fs::create_dir_all(dir.join("data"))?;
        // Take a free port from the kernel; the registry binds it right after.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {host}\n  secret: pause-e2e\nauth:\n{auth}",
            data = dir.join("data").display(),
        );
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log"))?)
            .spawn()
            .context("starting docker-registry")?;
        let mut registry = Registry {
            child,
            host: host.clone(),
            dir: dir.to_path_buf(),
        };
        let what = format!("docker-registry to listen on {host}");
        xtask::wait::until(
            &what,
            Duration::from_secs(15),
            Duration::from_millis(50),
            || {
                if let Some(status) = registry.child.try_wait()? {
                    bail!(
                        "docker-registry exited ({status}); see {}",
                        dir.join("registry.log").display()
                    );
                }
                Ok(TcpStream::connect(&host).is_ok().then_some(()))
            },
        )?;
        Ok(registry)
    }

    /// A docker-format auth file for this registry with `password`.
    pub fn authfile(&self, password: &str) -> Result<PathBuf> {
        self.authfile_as(&self.host, password)
    }

    /// The same, keyed as `host` (a proxy in front of this registry).
    pub fn authfile_as(&self, host: &str, password: &str) -> Result<PathBuf> {
        authfile(&self.dir, host, USER, password)
    }
}

/// A docker-format auth file in `dir` with `user:password` for `host`, named after
/// all three so that each set of credentials has a file of its own.
pub fn authfile(dir: &Path, host: &str, user: &str, password: &str) -> Result<PathBuf> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let name = format!("{host}:{user}:{password}");
    let path = dir.join(format!(
        "auth-{}.json",
        xtask::build::sha256_hex(name.as_bytes())
    ));
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{encoded}"}}}}}}"#),
    )?;
    Ok(path)
}

/// What the e2e registry serves under `reference` (`HOST/REPO:TAG`), as skopeo reads
/// it with the e2e credentials.
pub fn served(sh: &Shell, reference: &str) -> Result<Vec<u8>> {
    let creds = format!("{USER}:{PASSWORD}");
    let raw = cmd!(
        sh,
        "skopeo inspect --raw --tls-verify=false --creds {creds} docker://{reference}"
    )
    .quiet()
    .ignore_stderr()
    .output()
    .with_context(|| format!("skopeo found nothing at {reference}"))?;
    Ok(raw.stdout)
}

/// `xtask_publish::push::push` of `layout` to `to` (`REGISTRY/REPO[:TAG]`) with the
/// credentials in `authfile`, as `cargo xtask push` runs it.
pub fn push(layout: &Path, to: &str, authfile: &Path) -> Result<String> {
    let options = options(authfile);
    xtask_publish::runtime()?.block_on(xtask_publish::push::push(layout, &to.parse()?, &options))
}

/// Registry options with the credentials in `authfile` and the default deadline.
pub fn options(authfile: &Path) -> xtask_publish::registry::Options {
    xtask_publish::registry::Options {
        authfiles: vec![authfile.to_path_buf()],
        insecure: false,
        timeout: xtask_publish::registry::DEFAULT_TIMEOUT,
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
