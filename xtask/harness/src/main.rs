//! The pause workspace's test harness: what proves the image with real components
//! (e2e), measures it (bench), and rehearses the release against a registry it starts.
//!
//! Run through `cargo xtask e2e|bench|release --dry-run`, which install what this
//! crate needs first. It builds and assembles with the release path (`xtask`), and
//! owns everything that only tests use: the registry, the CRI client, /proc probes.

mod bench;
mod e2e;
mod flags;
/// The orphan storm's script, one copy with pause's own tests.
#[path = "../../../pause/tests/util/orphans.rs"]
mod orphans;
/// /proc probes, one copy with pause's own tests.
#[path = "../../../pause/tests/util/procfs.rs"]
#[allow(dead_code)] // pause's tests use some, the harness others
mod procfs;
mod rehearse;

use anyhow::Result;

fn main() {
    xtask::main_with(try_main);
}

fn try_main() -> Result<()> {
    let flags: flags::Harness = xtask::parse_args()?;
    let sh = xtask::shell()?;
    match flags.command {
        flags::Command::E2e(cmd) => cmd.run(&sh),
        flags::Command::E2eInside(cmd) => cmd.run(&sh),
        flags::Command::Bench(cmd) => cmd.run(&sh),
        flags::Command::Rehearse(cmd) => cmd.run(&sh),
        flags::Command::MaxRss(cmd) => cmd.run(),
    }
}
