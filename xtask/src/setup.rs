//! `cargo xtask setup`: what the test suite needs beyond rustup's stable toolchain,
//! installed with one line for each install.
//!
//! The Debian packages are listed here once, each with a command that proves it is
//! there (looked up on PATH, so any distribution can be checked). As root on Debian or
//! Ubuntu, apt-get installs what is missing; anywhere else we stop with one line naming
//! the packages and the command that installs them. The release path (`build`,
//! `image`, `push`, `release`) needs none of them.

use crate::{flags, platform, tools};
use anyhow::{bail, Context, Result};
use std::path::Path;
use xshell::{cmd, Shell};

/// A Debian package the test suite needs, and why.
pub struct Package {
    pub name: &'static str,
    provides: Provides,
    pub why: &'static str,
}

/// How to tell that a package is installed: the commands it puts on PATH.
enum Provides {
    Command(&'static str),
    /// qemu-user-static: the qemu of every row of the platform table.
    QemuOfEveryPlatform,
}

pub const PACKAGES: &[Package] = &[
    Package {
        name: "qemu-user-static",
        provides: Provides::QemuOfEveryPlatform,
        why: "runs every foreign-arch binary",
    },
    Package {
        name: "util-linux",
        provides: Provides::Command("unshare"),
        why: "private namespaces for the tests",
    },
    Package {
        name: "iproute2",
        provides: Provides::Command("ip"),
        why: "loopback inside the e2e network namespace",
    },
    Package {
        name: "docker-registry",
        provides: Provides::Command("docker-registry"),
        why: "a real registry on 127.0.0.1",
    },
    Package {
        name: "apache2-utils",
        provides: Provides::Command("htpasswd"),
        why: "the registry's bcrypt passwords",
    },
    Package {
        name: "skopeo",
        provides: Provides::Command("skopeo"),
        why: "a real client that reads the image back",
    },
    Package {
        name: "umoci",
        provides: Provides::Command("umoci"),
        why: "unpacks the image into a runtime bundle",
    },
    Package {
        name: "runc",
        provides: Provides::Command("runc"),
        why: "the OCI runtime",
    },
    Package {
        name: "containerd",
        provides: Provides::Command("containerd"),
        why: "the runtime kubelet talks to, through its CRI",
    },
    Package {
        name: "busybox-static",
        provides: Provides::Command("busybox"),
        why: "the e2e workload that leaves orphans",
    },
    Package {
        name: "podman",
        provides: Provides::Command("podman"),
        why: "the cross builder's engine, and pods in the e2e",
    },
    Package {
        name: "debootstrap",
        provides: Provides::Command("debootstrap"),
        why: "the cross builder's image, made from Debian",
    },
    Package {
        name: "catatonit",
        provides: Provides::Command("catatonit"),
        why: "podman's pause, a peer the bench measures us against",
    },
    Package {
        name: "openssl",
        provides: Provides::Command("openssl"),
        why: "the throw-away key and certificate of the e2e token issuer",
    },
    Package {
        name: "protobuf-compiler",
        provides: Provides::Command("protoc"),
        why: "builds the CRI API for the harness's client",
    },
];

impl Package {
    fn commands(&self) -> Vec<&'static str> {
        match self.provides {
            Provides::Command(command) => vec![command],
            Provides::QemuOfEveryPlatform => platform::PLATFORMS.iter().map(|p| p.qemu).collect(),
        }
    }
}

/// The packages whose commands are not on PATH.
pub fn missing(sh: &Shell) -> Vec<&'static Package> {
    PACKAGES
        .iter()
        .filter(|pkg| {
            pkg.commands()
                .iter()
                .any(|c| tools::find_on_path(sh, c).is_none())
        })
        .collect()
}

/// What this machine lets us do about missing packages.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    pub root: bool,
    pub apt_get: bool,
    /// /etc/os-release says Debian or a derivative (Ubuntu).
    pub debian_like: bool,
}

impl Host {
    pub fn detect(sh: &Shell) -> Host {
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        Host {
            root: nix::unistd::geteuid().is_root(),
            apt_get: tools::find_on_path(sh, "apt-get").is_some(),
            debian_like: is_debian_like(&os_release),
        }
    }
}

fn is_debian_like(os_release: &str) -> bool {
    os_release.lines().any(|line| {
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        matches!(key, "ID" | "ID_LIKE")
            && value
                .trim_matches('"')
                .split_whitespace()
                .any(|id| id == "debian" || id == "ubuntu")
    })
}

/// What to do about the missing packages.
#[derive(Debug, PartialEq)]
pub enum SetupAction {
    Ready,
    AptInstall(Vec<&'static str>),
    /// We cannot install them here: the one line that says what to run.
    Refuse(String),
}

pub fn plan(missing: &[&'static Package], host: Host) -> SetupAction {
    if missing.is_empty() {
        return SetupAction::Ready;
    }
    let names: Vec<&str> = missing.iter().map(|pkg| pkg.name).collect();
    let list = names.join(" ");
    if !(host.apt_get && host.debian_like) {
        return SetupAction::Refuse(format!(
            "the test suite needs packages this machine lacks: {}; this is no Debian or Ubuntu with apt-get, so install them with your package manager (on Debian or Ubuntu: `apt-get install {list}`)",
            names.join(", ")
        ));
    }
    if !host.root {
        return SetupAction::Refuse(format!(
            "the test suite needs Debian packages this machine lacks: {}; install them with `sudo apt-get install {list}`, or run as root and they are installed for you",
            names.join(", ")
        ));
    }
    SetupAction::AptInstall(names)
}

/// Installs the missing Debian packages, or stops with the line that says how.
pub fn ensure_packages(sh: &Shell) -> Result<()> {
    let missing = missing(sh);
    match plan(&missing, Host::detect(sh)) {
        SetupAction::Ready => Ok(()),
        SetupAction::Refuse(line) => bail!("{line}"),
        SetupAction::AptInstall(names) => {
            for pkg in &missing {
                eprintln!("installing {} ({})", pkg.name, pkg.why);
            }
            apt_install(sh, &names)
        }
    }
}

/// `apt-get update` and `apt-get install`, quietly: their output goes to a log that
/// the error names. No service starts on install: tests start their own on loopback.
fn apt_install(sh: &Shell, names: &[&str]) -> Result<()> {
    let log = sh.current_dir().join("target/tools/apt.log");
    crate::files::create_dir_all(log.parent().expect("a file in target/tools"))?;
    let _no_services = NoServicesOnInstall::new()?;
    let _frontend = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    let mut output = String::new();
    let mut step = |args: &[&str], what: &str| -> Result<()> {
        let out = cmd!(sh, "apt-get {args...}")
            .quiet()
            .ignore_status()
            .output()
            .with_context(|| format!("running apt-get {what}"))?;
        output.push_str(&String::from_utf8_lossy(&out.stdout));
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        crate::files::write(&log, &output)?;
        if !out.status.success() {
            bail!(
                "apt-get {what} failed (log: {}); check the network to Debian's mirror, then run `cargo xtask setup` again",
                log.display()
            );
        }
        Ok(())
    };
    step(&["update", "-q"], "update")?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(names);
    step(&install, &format!("install {}", names.join(" ")))
}

/// `/usr/sbin/policy-rc.d` answering 101 ("action forbidden") while apt runs, so
/// docker-registry and containerd do not start on install; removed afterwards unless
/// the machine had its own.
struct NoServicesOnInstall {
    written: bool,
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

impl NoServicesOnInstall {
    fn new() -> Result<NoServicesOnInstall> {
        let path = Path::new(POLICY_RC_D);
        if path.exists() {
            return Ok(NoServicesOnInstall { written: false });
        }
        std::fs::write(
            path,
            "#!/bin/sh\n# written by cargo xtask setup while apt-get runs\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .with_context(|| format!("making {POLICY_RC_D} executable"))?;
        Ok(NoServicesOnInstall { written: true })
    }
}

impl Drop for NoServicesOnInstall {
    fn drop(&mut self) {
        if self.written {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

/// macOS targets: the stub must compile (no linker needed for `cargo check`).
pub const MACOS_TARGETS: [&str; 2] = ["x86_64-apple-darwin", "aarch64-apple-darwin"];

/// Everything the test suite needs, each install announced.
pub fn all(sh: &Shell) -> Result<()> {
    ensure_packages(sh)?;
    for component in ["rustfmt", "clippy"] {
        tools::ensure_component(sh, "stable", component)?;
    }
    for triple in MACOS_TARGETS {
        tools::ensure_target(sh, "stable", triple)?;
    }
    tools::ensure_nightly(sh)?;
    tools::ensure_zig(sh, &sh.current_dir())?;
    Ok(())
}

impl flags::Setup {
    pub fn run(self, sh: &Shell) -> Result<()> {
        all(sh)?;
        eprintln!("setup: the test suite has what it needs");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Host = Host {
        root: true,
        apt_get: true,
        debian_like: true,
    };

    fn some() -> Vec<&'static Package> {
        PACKAGES.iter().take(2).collect()
    }

    #[test]
    fn nothing_missing_is_ready_anywhere() {
        let bare = Host {
            root: false,
            apt_get: false,
            debian_like: false,
        };
        assert_eq!(plan(&[], bare), SetupAction::Ready);
    }

    #[test]
    fn root_on_debian_installs_with_apt() {
        assert_eq!(
            plan(&some(), HOST),
            SetupAction::AptInstall(vec!["qemu-user-static", "util-linux"])
        );
    }

    #[test]
    fn without_apt_one_line_names_the_packages() {
        for host in [
            Host {
                apt_get: false,
                ..HOST
            },
            Host {
                debian_like: false,
                ..HOST
            },
        ] {
            let SetupAction::Refuse(line) = plan(&some(), host) else {
                panic!("{host:?} must refuse");
            };
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains("qemu-user-static, util-linux"), "{line}");
            assert!(line.contains("no Debian or Ubuntu with apt-get"), "{line}");
        }
    }

    #[test]
    fn not_root_is_told_to_use_sudo() {
        let SetupAction::Refuse(line) = plan(
            &some(),
            Host {
                root: false,
                ..HOST
            },
        ) else {
            panic!("a user must be refused");
        };
        assert!(
            line.contains("`sudo apt-get install qemu-user-static util-linux`"),
            "{line}"
        );
    }

    #[test]
    fn os_release_of_debian_and_ubuntu() {
        assert!(is_debian_like(
            "PRETTY_NAME=\"Debian GNU/Linux 12\"\nID=debian\n"
        ));
        assert!(is_debian_like("ID=ubuntu\nID_LIKE=debian\n"));
        assert!(is_debian_like("ID=pop\nID_LIKE=\"ubuntu debian\"\n"));
        assert!(!is_debian_like("ID=fedora\nID_LIKE=\"rhel centos\"\n"));
        assert!(!is_debian_like(""));
    }

    #[test]
    fn every_platform_qemu_is_checked() {
        let qemu = &PACKAGES[0];
        assert_eq!(qemu.name, "qemu-user-static");
        assert_eq!(qemu.commands().len(), platform::PLATFORMS.len());
    }
}
