//! A real docker-registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1
//! with bcrypt htpasswd auth, started for a test run and stopped when dropped.

use anyhow::{bail, Context, Result};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
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
        std::fs::create_dir_all(dir.join("data"))?;
        let htpasswd_line = cmd!(sh, "htpasswd -Bbn {USER} {PASSWORD}")
            .quiet()
            .read()
            .context("htpasswd (apache2-utils) failed")?;
        std::fs::write(dir.join("htpasswd"), format!("{htpasswd_line}\n"))?;
        // Take a free port from the kernel; the registry binds it right after.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {host}\n  secret: pause-e2e\nauth:\n  htpasswd:\n    realm: pause-e2e\n    path: {htpasswd}\n",
            data = dir.join("data").display(),
            htpasswd = dir.join("htpasswd").display(),
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
        let started = Instant::now();
        while TcpStream::connect(&host).is_err() {
            if let Some(status) = registry.child.try_wait()? {
                bail!(
                    "docker-registry exited ({status}); see {}",
                    dir.join("registry.log").display()
                );
            }
            if started.elapsed() > Duration::from_secs(15) {
                bail!("docker-registry did not listen on {host} within 15s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }

    /// A docker-format auth file for this registry with `password`.
    pub fn authfile(&self, password: &str) -> Result<PathBuf> {
        self.authfile_as(&self.host, password)
    }

    /// The same, keyed as `host` (a proxy in front of this registry).
    pub fn authfile_as(&self, host: &str, password: &str) -> Result<PathBuf> {
        use base64::Engine;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        let name = format!("{host}:{password}");
        let path = self.dir.join(format!(
            "auth-{}.json",
            xtask::build::sha256_hex(name.as_bytes())
        ));
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"{host}":{{"auth":"{encoded}"}}}}}}"#),
        )?;
        Ok(path)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
