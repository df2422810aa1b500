//! `cargo xtask verify`: every dist binary proven on its own architecture.
//!
//! Each binary's ELF header is checked against its platform row, then pause's own
//! integration tests (`pause/tests/`) run against it under `qemu-<arch>-static`:
//! `-v`, INT/TERM exit 0, ignored signals, 10,000 orphans reaped as PID 1 of a new PID
//! namespace, and SIGTERM during that storm. One suite serves the host build and every
//! foreign one.

use crate::build::{dist_dir, read_record};
use crate::{elf, flags, platform, tools};
use anyhow::{bail, Context, Result};
use std::time::Instant;
use xshell::{cmd, Shell};

impl flags::Verify {
    pub fn run(self, sh: &Shell) -> Result<()> {
        verify(sh, &platform::select(&self.arch)?)
    }
}

pub fn verify(sh: &Shell, platforms: &[&'static platform::Platform]) -> Result<()> {
    for p in platforms {
        let qemu = p.qemu;
        tools::require(sh, qemu, "apt-get install qemu-user-static").with_context(|| {
            format!(
                "{qemu} is needed to run the {} binary; or pass --arch with fewer arches",
                p.arch
            )
        })?;
    }
    for p in platforms {
        let started = Instant::now();
        let bin = dist_dir(sh).join(p.dist_name);
        if !bin.is_file() {
            bail!(
                "{} is missing; run `cargo xtask build --arch {}` first",
                bin.display(),
                p.arch
            );
        }
        elf::check_static(&bin, p)?;
        let record = read_record(&bin)?;
        let qemu = p.qemu;
        // The suite expects the version it was compiled with: compile it with the binary's.
        let _version = sh.push_env("PAUSE_VERSION", &record.version);
        let _bin = sh.push_env("PAUSE_BIN", &bin);
        let _runner = sh.push_env("PAUSE_RUNNER", qemu);
        // The subreaper test is left out: qemu-user 7.2 refuses PR_SET_CHILD_SUBREAPER
        // (EINVAL), so no binary could pass it under emulation; the host build runs it.
        let skip = "not_pid1_adopts_and_reaps_an_orphaned_grandchild";
        cmd!(
            sh,
            "cargo test --locked -q -p pause --test cli --test reaping -- --skip {skip}"
        )
        .run()
        .with_context(|| format!("the {} binary failed its tests under {qemu}", p.arch))?;
        eprintln!(
            "ok verify {}: ELF {} static, -v {:?}, signals and reaping under {qemu} ({:.1}s)",
            p.arch,
            p.elf_machine_name,
            record.version,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
