//! `cargo xtask e2e`: the image proven with real components, started here on loopback.
//!
//! It re-runs itself inside private mount and network namespaces (`unshare`), so the
//! registry, containerd and runc it starts touch neither the host's network nor its
//! /run and /var/lib. Each check prints `ok …` with what it proved. A missing tool is
//! a printed skip on a developer's machine and a failure under CI=true.

mod containerd;
mod cri;
mod image;
pub(crate) mod registry;
mod runc;

use crate::build::{self, DistBinary};
use crate::image::description::ImageDescription;
use crate::image::Assembled;
use crate::{flags, platform, tools, version};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Instant;
use xshell::{cmd, Shell};

/// Set in the re-run inside the namespaces.
const INSIDE: &str = "PAUSE_E2E_INSIDE";

/// (tool, Debian package) the e2e run needs.
const TOOLS: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("htpasswd", "apache2-utils"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("unshare", "util-linux"),
    ("ip", "iproute2"),
    ("runc", "runc"),
    ("containerd", "containerd"),
    ("busybox", "busybox-static"),
    ("qemu-aarch64-static", "qemu-user-static"),
];

/// What every check gets: the built binaries, the assembled layout, a scratch dir.
pub(crate) struct Run<'a> {
    pub(crate) sh: &'a Shell,
    pub(crate) desc: ImageDescription,
    pub(crate) binaries: Vec<DistBinary>,
    pub(crate) version: String,
    pub(crate) work: PathBuf,
    pub(crate) layout: PathBuf,
    pub(crate) image: Assembled,
}

impl Run<'_> {
    /// The row of the machine we run on: runtimes run the native binary.
    pub(crate) fn host_platform(&self) -> Result<&'static platform::Platform> {
        let p = platform::host()?;
        if !self.image.arches.iter().any(|a| a.arch == p.arch) {
            bail!(
                "the e2e image has no {} entry; include it in --arch",
                p.arch
            );
        }
        Ok(p)
    }
}

/// pause as the sandbox runs it: PID 1 of its PID namespace, uid and gid 65535.
pub(crate) fn check_pid1_as_65535(pid: u32) -> Result<()> {
    use crate::procfs::status_field;
    let nspid = status_field(pid, "NSpid:");
    anyhow::ensure!(
        nspid.last().map(String::as_str) == Some("1"),
        "pause is not PID 1 in its namespace: NSpid {nspid:?}"
    );
    for name in ["Uid:", "Gid:"] {
        let ids = status_field(pid, name);
        anyhow::ensure!(
            !ids.is_empty() && ids.iter().all(|id| id == "65535"),
            "pause runs with {name} {ids:?}, not 65535"
        );
    }
    Ok(())
}

pub(crate) fn ok(what: impl std::fmt::Display) {
    println!("ok {what}");
}

impl flags::E2e {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        let missing: Vec<String> = TOOLS
            .iter()
            .filter(|(tool, _)| tools::find_on_path(sh, tool).is_none())
            .map(|(tool, pkg)| format!("{tool} (apt-get install {pkg})"))
            .collect();
        if !missing.is_empty() {
            let message = format!("e2e needs {}", missing.join(", "));
            if sh.var("CI").is_ok_and(|v| v == "true") {
                bail!("{message}; .ci/run installs them");
            }
            println!("skip e2e: {message}");
            return Ok(());
        }
        if sh.var(INSIDE).is_err() {
            return reexec_in_namespaces(sh);
        }
        prepare_namespaces(sh)?;
        let started = Instant::now();
        let root = sh.current_dir();
        let desc = ImageDescription::load(&root)?;
        let platforms = match &self.arch {
            Some(spec) => platform::select(spec)?,
            None => desc.platforms()?,
        };
        let version = version::resolve(sh, self.version)?;
        let binaries = build::build(sh, &platforms, &version, flags::Builder::Zig)?;
        let work = root.join("target/e2e");
        if work.exists() {
            std::fs::remove_dir_all(&work)
                .with_context(|| format!("cleaning {}", work.display()))?;
        }
        let layout = work.join("layout/pause");
        let image =
            crate::image::assemble(sh, &desc, &binaries, &version, &layout, &mut || Ok(()))?;
        let run = Run {
            sh,
            desc,
            binaries,
            version,
            work: work.clone(),
            layout,
            image,
        };

        image::reproducible(&run)?;
        image::atomic(&run)?;
        let registry = registry::Registry::start(sh, &work.join("registry"))?;
        image::registry(&run, &registry)?;
        runc::check(&run)?;
        containerd::check(&run, &registry)?;
        drop(registry);
        println!(
            "e2e: all checks passed in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// Runs this same command again under `unshare --mount --net --fork`.
fn reexec_in_namespaces(sh: &Shell) -> Result<()> {
    let exe = std::env::current_exe()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _inside = sh.push_env(INSIDE, "1");
    cmd!(
        sh,
        "unshare --mount --net --fork --kill-child -- {exe} {args...}"
    )
    .run()
    .context(
        "e2e failed (run as root: it needs unshare for private mount and network namespaces)",
    )?;
    Ok(())
}

/// Inside the new namespaces: loopback up, and a private /run so nothing lands on the host's.
fn prepare_namespaces(sh: &Shell) -> Result<()> {
    cmd!(sh, "ip link set lo up")
        .run()
        .context("bringing up loopback in the e2e network namespace")?;
    cmd!(sh, "mount --make-rprivate /").run()?;
    cmd!(sh, "mount -t tmpfs tmpfs /run")
        .run()
        .context("mounting a private /run")?;
    Ok(())
}
