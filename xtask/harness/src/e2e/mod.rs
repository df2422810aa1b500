//! `cargo xtask e2e`: the image proven with real components, started here on loopback.
//!
//! `e2e` resolves the version and the arches, then runs `e2e-inside` with them, as
//! explicit arguments, inside private mount and network namespaces (`unshare`), so the
//! registry, containerd and runc it starts touch neither the host's network nor its
//! /run and /var/lib. Each check prints `ok …` with what it proved. A missing tool is
//! a printed skip on a developer's machine and a failure under CI=true (`cargo xtask
//! e2e` installs them first, as root on Debian).

mod airgap;
mod containerd;
mod cri;
mod faults;
mod image;
mod liar;
mod lies;
mod loopback;
mod podman;
pub mod registry;
mod reproduce;
mod runc;
mod token;

use crate::flags;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Instant;
use xshell::{cmd, Shell};
use xtask::build::{self, DistBinary};
use xtask::flags::Builder;
use xtask::image::description::ImageDescription;
use xtask::image::Assembled;
use xtask::{platform, setup, version};

/// What every check gets: the built binaries, the assembled layout, a scratch dir.
pub struct Run<'a> {
    pub sh: &'a Shell,
    pub desc: ImageDescription,
    pub binaries: Vec<DistBinary>,
    pub version: xtask::version::Version,
    pub work: PathBuf,
    pub layout: PathBuf,
    pub image: Assembled,
}

impl Run<'_> {
    /// What the e2e image is assembled from: this tree, at this run's version.
    pub fn sources(&self) -> Result<xtask::image::Sources<'_>> {
        xtask::image::Sources::of_tree(self.sh, &self.desc, &self.binaries, &self.version)
    }

    /// The row of the machine we run on: runtimes run the native binary.
    pub fn host_platform(&self) -> Result<&'static platform::Platform> {
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
pub fn check_pid1_as_65535(pid: u32) -> Result<()> {
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

/// `cargo xtask …`, the real command line, through cargo (quiet, and offline in this
/// network namespace) rather than a path to the binary: cargo may have replaced
/// target/debug/xtask since it started. Add its arguments, then `Said::of` runs it.
pub fn xtask_cli(sh: &Shell) -> xshell::Cmd<'_> {
    as_cli(cmd!(
        sh,
        "cargo run --locked --offline --quiet -p xtask --bin xtask --"
    ))
}

/// `cmd` with every cargo in it offline and quiet, also the one xtask runs for the
/// publishing crate: its output is then the command's own.
pub fn as_cli(cmd: xshell::Cmd<'_>) -> xshell::Cmd<'_> {
    cmd.env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TERM_QUIET", "true")
}

/// What a command printed, and its exit status.
pub struct Said {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Said {
    /// Runs `cmd` to its end, whatever its status.
    pub fn of(cmd: xshell::Cmd<'_>) -> Result<Said> {
        let out = cmd.quiet().ignore_status().output()?;
        Ok(Said {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The one `error:` line of stderr, when there is exactly one and nothing follows.
    pub fn sole_error(&self) -> Option<&str> {
        let mut errors = self.stderr.lines().filter(|l| l.starts_with("error:"));
        let (first, more) = (errors.next()?, errors.next());
        let last = self.stderr.trim_end().ends_with(first.trim_end());
        (more.is_none() && last).then_some(first)
    }
}

/// A check that cannot run here: one `skip WHAT: WHY` line on a developer's machine,
/// a failure (`WHY` and `fix`) under CI=true, where skipping would hide it.
pub fn skip_or_fail(sh: &Shell, what: &str, why: &str, fix: &str) -> Result<()> {
    if sh.var("CI").is_ok_and(|v| v == "true") {
        bail!("{why}{fix}");
    }
    println!("skip {what}: {why}");
    Ok(())
}

pub fn ok(what: impl std::fmt::Display) {
    println!("ok {what}");
}

impl flags::E2e {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let missing = setup::missing(sh);
        if !missing.is_empty() {
            let names: Vec<_> = missing.iter().map(|pkg| pkg.name).collect();
            let message = format!("e2e needs {}", names.join(", "));
            return skip_or_fail(sh, "e2e", &message, "; `cargo xtask setup` installs them");
        }
        let root = sh.current_dir();
        let platforms = match &self.arch {
            Some(arches) => arches.0.clone(),
            None => ImageDescription::load(&root)?.platforms()?,
        };
        let arch = platforms
            .iter()
            .map(|p| p.arch)
            .collect::<Vec<_>>()
            .join(",");
        let version = version::resolve(sh, self.version)?;
        let exe = std::env::current_exe()?;
        cmd!(
            sh,
            "unshare --mount --net --fork --kill-child -- {exe} e2e-inside --version {version} --arch {arch}"
        )
        .run()
        .context(
            "e2e failed (run as root: it needs unshare for private mount and network namespaces)",
        )?;
        Ok(())
    }
}

impl flags::E2eInside {
    pub fn run(self, sh: &Shell) -> Result<()> {
        prepare_namespaces(sh)?;
        let started = Instant::now();
        let root = sh.current_dir();
        let desc = ImageDescription::load(&root)?;
        let platforms = self.arch.0;
        let version = self.version;
        let binaries = build::build(sh, &platforms, &version, Builder::Zig)?;
        let work = root.join("target/e2e");
        if work.exists() {
            std::fs::remove_dir_all(&work)
                .with_context(|| format!("cleaning {}", work.display()))?;
        }
        let layout = work.join("layout/pause");
        let sources = xtask::image::Sources::of_tree(sh, &desc, &binaries, &version)?;
        let image = xtask::image::assemble(sh, &sources, &layout)?;
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
        // runc first, while the machine is quiet: it bounds the stop at 1 s.
        runc::check(&run)?;
        // reproduce rebuilds the probe arch from nothing (~40 s of compiling): start it
        // now, beside checks that mostly wait; reproduce::check joins it.
        let rebuild = reproduce::rebuild_in_background(&run);
        image::registry(&run, &registry)?;
        faults::check(&run, &registry)?;
        lies::check(&run, &registry)?;
        containerd::check(&run, &registry)?;
        // containerd's check pushed the workload image.
        podman::check(&run, &registry, &format!("{}/busybox:e2e", registry.host))?;
        airgap::check(&run)?;
        reproduce::check(&run, &registry, rebuild)?;
        token::check(&run)?;
        drop(registry);
        println!(
            "e2e: all checks passed in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
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
