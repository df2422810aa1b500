//! `cargo xtask push|release|reproduce`: xtask runs this binary with the command's
//! arguments (see xtask/src/programs.rs); it parses them, typed, and dispatches.

use anyhow::Result;
use xtask_publish::flags;

fn main() {
    xtask::main_with(try_main);
}

fn try_main() -> Result<()> {
    let flags: flags::Publish = xtask::parse_args()?;
    let sh = xtask::shell()?;
    match flags.command {
        flags::Command::Push(cmd) => cmd.run(&sh),
        flags::Command::Release(cmd) => cmd.run(&sh),
        flags::Command::Reproduce(cmd) => cmd.run(&sh),
    }
}
