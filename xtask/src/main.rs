//! cargo xtask: everything in this workspace that is not the pause binary itself.
//!
//! Thin by design (after rust-analyzer's xtask): parse flags, make one `Shell` at the
//! project root, dispatch to the command's module. Tools run only through xshell's
//! `cmd!`, never through `sh -c`.

mod bench;
mod build;
mod ci;
mod cross;
mod e2e;
mod elf;
mod flags;
mod image;
mod platform;
mod procfs;
mod push;
mod release;
mod smoke;
mod tools;
mod verify;
mod version;

use anyhow::Result;
use clap::Parser;
use std::path::Path;
use xshell::Shell;

fn main() {
    if let Err(err) = try_main() {
        // One line a cause: what failed, and (from the innermost) how to fix it.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn try_main() -> Result<()> {
    let flags = flags::Xtask::parse();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match flags.command {
        flags::Command::Build(cmd) => cmd.run(&sh),
        flags::Command::Verify(cmd) => cmd.run(&sh),
        flags::Command::Image(cmd) => cmd.run(&sh),
        flags::Command::Push(cmd) => cmd.run(&sh),
        flags::Command::E2e(cmd) => cmd.run(&sh),
        flags::Command::Bench(cmd) => cmd.run(&sh),
        flags::Command::Release(cmd) => cmd.run(&sh),
        flags::Command::Smoke(cmd) => cmd.run(&sh),
        flags::Command::Ci(cmd) => cmd.run(&sh),
        flags::Command::CiMatrix(cmd) => cmd.run(&sh),
    }
}

fn project_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
}
