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
mod fixtures;
mod image;
pub use image::sboms_are_referrers;
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
pub use fixtures::Fixtures;
use std::time::{Duration, Instant};
use xshell::{cmd, Shell};
use xtask::build;
use xtask::flags::Builder;
use xtask::image::description::ImageDescription;
use xtask::{setup, version};

/// One check: its name (`--check NAME`), what it proves (`--list`), and its code.
pub struct Check {
    pub name: &'static str,
    pub proves: &'static str,
    run: fn(&Fixtures) -> Result<()>,
    /// Timed to the millisecond: it runs before the background rebuild starts.
    quiet: bool,
}

/// Every check, in the order a whole run takes them.
pub const CHECKS: &[Check] = &[
    Check {
        name: "image",
        proves: "the layout is reproducible in any directory, and a failed run leaves the old one whole",
        run: image::layout,
        quiet: true,
    },
    Check {
        name: "runc",
        proves: "runc runs the image: PID 1 as 65535, SIGTERM → exit 0 within 1 s; a negative control",
        run: runc::check,
        quiet: true,
    },
    Check {
        name: "registry",
        proves: "push (interrupted, then completed); skopeo and umoci read every arch; SBOM referrers; refusals in one line; a credential helper",
        run: image::registry,
        quiet: false,
    },
    Check {
        name: "faults",
        proves: "push retries a registry that fails for a moment, and gives up on one that never recovers, tagging nothing",
        run: faults::check,
        quiet: false,
    },
    Check {
        name: "lies",
        proves: "push and reproduce fail closed against a registry that misbehaves on purpose",
        run: lies::check,
        quiet: false,
    },
    Check {
        name: "containerd",
        proves: "containerd's CRI pulls the image and runs it as a pod sandbox that reaps 100 orphans",
        run: containerd::check,
        quiet: false,
    },
    Check {
        name: "podman",
        proves: "podman: a pod's infra image that reaps, a hardened container, every arch pulled",
        run: podman::check,
        quiet: false,
    },
    Check {
        name: "airgap",
        proves: "the archive, byte-identical twice, imported into containerd and podman with no registry",
        run: airgap::check,
        quiet: false,
    },
    Check {
        name: "reproduce",
        proves: "reproduce: identical, one string changed, an unknown revision; by digest, layout and archive",
        run: reproduce::check,
        quiet: false,
    },
    Check {
        name: "token",
        proves: "bearer-token auth: push, refusals in one line, reproduce through a token",
        run: token::check,
        quiet: false,
    },
];

/// The checks `names` asks for (all when empty), in table order; an unknown name is
/// one line listing the known ones.
pub fn select(names: &[String]) -> Result<Vec<&'static Check>> {
    if let Some(unknown) = names.iter().find(|n| !CHECKS.iter().any(|c| c.name == *n)) {
        let known: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
        bail!(
            "no e2e check is called {unknown:?}; the checks are {}",
            known.join(", ")
        );
    }
    Ok(CHECKS
        .iter()
        .filter(|c| names.is_empty() || names.iter().any(|n| n == c.name))
        .collect())
}

/// How many orphans a pod's workload leaves behind for pause to adopt and reap.
pub const ORPHANS: usize = 100;

/// The workload that leaves them: `ORPHANS` background sleeps whose parent shell is
/// gone by the time they exit, then a wait while they are reaped.
pub fn orphan_maker() -> String {
    format!("i=0; while [ $i -lt {ORPHANS} ]; do (sleep 2 &); i=$((i+1)); done; sleep 4")
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
/// target/debug/xtask since it started. Add its arguments, then `CommandOutput::of` runs it.
pub fn xtask_cli(sh: &Shell) -> xshell::Cmd<'_> {
    as_cli(cmd!(sh, "cargo {XTASK_RUN...} --"))
}

/// cargo's arguments that run `cargo xtask`, quiet and offline (see `xtask_cli`).
pub const XTASK_RUN: [&str; 8] = [
    "run",
    "--locked",
    "--offline",
    "--quiet",
    "-p",
    "xtask",
    "--bin",
    "xtask",
];

/// `cmd` with every cargo in it offline and quiet, also the one xtask runs for the
/// publishing crate: its output is then the command's own.
pub fn as_cli(cmd: xshell::Cmd<'_>) -> xshell::Cmd<'_> {
    cmd.env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TERM_QUIET", "true")
}

/// What a command printed, and its exit status.
pub struct CommandOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    /// Runs `cmd` to its end, whatever its status.
    pub fn of(cmd: xshell::Cmd<'_>) -> Result<CommandOutput> {
        let out = cmd.quiet().ignore_status().output()?;
        Ok(CommandOutput {
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
        if self.list {
            for check in CHECKS {
                println!("{:<12} {}", check.name, check.proves);
            }
            return Ok(());
        }
        let checks: Vec<&str> = select(&self.check)?.iter().map(|c| c.name).collect();
        let checks = checks.join(",");
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
            "unshare --mount --net --fork --kill-child -- {exe} e2e-inside --version {version} --arch {arch} --check {checks}"
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
        let checks = select(&self.check)?;
        let started = Instant::now();
        let root = sh.current_dir();
        let description = ImageDescription::load(&root)?;
        let binaries = build::build(sh, &self.arch.0, &self.version, Builder::Zig)?;
        let work = root.join("target/e2e");
        if work.exists() {
            std::fs::remove_dir_all(&work)
                .with_context(|| format!("cleaning {}", work.display()))?;
        }
        let sources = xtask::image::Sources::of_tree(sh, &description, &binaries, &self.version)?;
        let image = xtask::image::assemble(sh, &sources, &work.join("layout/pause"))?;
        let fixtures = Fixtures::new(sh, description, binaries, self.version, work, image);
        let results = run_checks(&fixtures, &checks);
        print_table(&results, started.elapsed());
        let failed: Vec<&str> = results
            .iter()
            .filter(|r| r.failed)
            .map(|r| r.name)
            .collect();
        if !failed.is_empty() {
            bail!(
                "e2e: {} of {} checks failed: {}",
                failed.len(),
                results.len(),
                failed.join(", ")
            );
        }
        Ok(())
    }
}

/// How one check went.
struct CheckResult {
    name: &'static str,
    failed: bool,
    took: Duration,
    skipped: Vec<String>,
}

/// Runs each check, whatever became of the ones before it. The background rebuild
/// (for reproduce and token) starts once the quiet checks are done, beside checks that
/// mostly wait.
fn run_checks(fixtures: &Fixtures, checks: &[&'static Check]) -> Vec<CheckResult> {
    let rebuild_wanted = checks
        .iter()
        .any(|c| matches!(c.name, "reproduce" | "token"));
    let mut results = Vec::new();
    for check in checks {
        if rebuild_wanted && !check.quiet {
            fixtures.rebuild_in_background();
        }
        let started = Instant::now();
        let outcome = (check.run)(fixtures);
        if let Err(err) = &outcome {
            println!("FAILED {}: {err:#}", check.name);
        }
        results.push(CheckResult {
            name: check.name,
            failed: outcome.is_err(),
            took: started.elapsed(),
            skipped: fixtures.take_skipped(),
        });
    }
    results
}

fn print_table(results: &[CheckResult], total: Duration) {
    println!("e2e: the checks");
    println!("| check | time | result |");
    println!("|---|---:|---|");
    for result in results {
        let outcome = match (result.failed, result.skipped.as_slice()) {
            (true, _) => "FAILED".to_string(),
            (false, []) => "ok".to_string(),
            (false, skipped) => format!("ok, skipped: {}", skipped.join(", ")),
        };
        println!(
            "| {} | {:.1} s | {outcome} |",
            result.name,
            result.took.as_secs_f64()
        );
    }
    println!("| total | {:.1} s | |", total.as_secs_f64());
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
