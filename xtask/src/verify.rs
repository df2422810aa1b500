//! `cargo xtask verify`: every dist binary proven on its own architecture.
//!
//! Each binary's ELF header is checked against its platform row, then pause's own
//! integration tests (`pause/tests/`) run against it under `qemu-<arch>-static`:
//! `-v`, INT/TERM exit 0, ignored signals, 10,000 orphans reaped as PID 1 of a new PID
//! namespace, and SIGTERM during that storm. One suite serves the host build and every
//! foreign one; it is compiled once, then run for each arch.

use crate::build::{dist_dir, read_record};
use crate::{elf, flags, platform, tools};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Instant;
use xshell::{cmd, Shell};

impl flags::Verify {
    pub fn run(self, sh: &Shell) -> Result<()> {
        match self.arch {
            Some(arches) => verify(sh, &arches.0),
            None => verify(sh, &platform::PLATFORMS.iter().collect::<Vec<_>>()),
        }
    }
}

pub fn verify(sh: &Shell, platforms: &[&'static platform::Platform]) -> Result<()> {
    let mut versions = Vec::new();
    for p in platforms {
        let qemu = p.qemu;
        tools::require(sh, qemu, "apt-get install qemu-user-static").with_context(|| {
            format!(
                "{qemu} is needed to run the {} binary; or pass --arch with fewer arches",
                p.arch
            )
        })?;
        let bin = dist_dir(sh).join(p.dist_name);
        if !bin.is_file() {
            bail!(
                "{} is missing; run `cargo xtask build --arch {}` first",
                bin.display(),
                p.arch
            );
        }
        elf::check_static(&bin, p)?;
        let version = read_record(&bin)?.version;
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    let [version] = versions.as_slice() else {
        bail!("the dist binaries were built as different versions ({}); build them together with `cargo xtask build --arch …`", versions.join(", "));
    };
    let suites = compile_suites(sh, version)?;
    // One arch at a time: two storms of 10,000 orphans at once exceed the pid limit.
    for p in platforms {
        run_suites(sh, &suites, p, version)?;
    }
    Ok(())
}

/// Builds pause's `cli` and `reaping` test binaries once, at `version` (they expect the
/// version they were compiled with), and returns their paths.
fn compile_suites(sh: &Shell, version: &str) -> Result<Vec<PathBuf>> {
    let _version = sh.push_env("PAUSE_VERSION", version);
    let messages = cmd!(
        sh,
        "cargo test --locked -q -p pause --test cli --test reaping --no-run --message-format=json"
    )
    .read()
    .context("compiling pause's test suites")?;
    let suites: Vec<PathBuf> = messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .collect();
    if suites.len() != 2 {
        bail!(
            "cargo built {} test binaries for pause, not the 2 suites",
            suites.len()
        );
    }
    Ok(suites)
}

/// Runs the suites against one arch's dist binary under its qemu; their output is
/// shown when one fails.
fn run_suites(sh: &Shell, suites: &[PathBuf], p: &platform::Platform, version: &str) -> Result<()> {
    let started = Instant::now();
    let bin = dist_dir(sh).join(p.dist_name);
    let qemu = p.qemu;
    // The subreaper test is left out: qemu-user 7.2 refuses PR_SET_CHILD_SUBREAPER
    // (EINVAL), so no binary could pass it under emulation; the host build runs it.
    let skip = "not_pid1_adopts_and_reaps_an_orphaned_grandchild";
    for suite in suites {
        let out = cmd!(sh, "{suite} -q --skip {skip}")
            .env("PAUSE_BIN", &bin)
            .env("PAUSE_RUNNER", qemu)
            .quiet()
            .ignore_status()
            .output()?;
        if !out.status.success() {
            eprintln!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            bail!(
                "the {} binary failed {} under {qemu}",
                p.arch,
                suite.display()
            );
        }
    }
    eprintln!(
        "ok verify {}: ELF {} static, -v {version:?}, signals and reaping under {qemu} ({:.1}s)",
        p.arch,
        p.elf_machine_name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
