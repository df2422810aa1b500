//! cargo xtask: everything in this workspace that is not the pause binary itself.
//!
//! Thin by design (after rust-analyzer's xtask): parse flags, make one `Shell` at the
//! project root, dispatch to the command's module. Tools run only through xshell's
//! `cmd!`, never through `sh -c`.

use anyhow::Result;
use xtask::flags;

fn main() {
    xtask::main_with(try_main);
}

fn try_main() -> Result<()> {
    let flags: flags::Xtask = xtask::parse_args()?;
    let sh = xtask::shell()?;
    match flags.command {
        flags::Command::Build(cmd) => cmd.run(&sh),
        flags::Command::Verify(cmd) => cmd.run(&sh),
        flags::Command::Image(cmd) => cmd.run(&sh),
        flags::Command::Push(cmd) => cmd.run(&sh),
        flags::Command::Reproduce(cmd) => cmd.run(&sh),
        flags::Command::Setup(cmd) => cmd.run(&sh),
        flags::Command::E2e(cmd) => cmd.run(&sh),
        flags::Command::Bench(cmd) => cmd.run(&sh),
        flags::Command::Release(cmd) => cmd.run(&sh),
        flags::Command::Smoke(cmd) => cmd.run(&sh),
        flags::Command::Ci(cmd) => cmd.run(&sh),
        flags::Command::CiMatrix(cmd) => cmd.run(&sh),
    }
}
