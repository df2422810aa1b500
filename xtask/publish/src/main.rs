//! `cargo xtask push|release|reproduce`: xtask runs this binary with the command's
//! arguments (see xtask/src/programs.rs); it parses them, typed, and dispatches.

use anyhow::Result;
use clap::Parser as _;
use xtask_publish::flags;

fn main() {
    xtask::main_with(try_main);
}

fn try_main() -> Result<()> {
    let flags = match flags::Publish::try_parse() {
        Ok(flags) => flags,
        Err(err) if !err.use_stderr() => err.exit(), // --help: clap prints it
        Err(err) => {
            // Bad input is one line, as every other error here: clap's first
            // paragraph, joined (its usage and `--help` hint follow a blank line).
            let rendered = err.render().to_string();
            let paragraph: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("{}", paragraph.join(" "));
            return Err(xtask::Exit(2).into());
        }
    };
    let sh = xtask::shell()?;
    match flags.command {
        flags::Command::Push(cmd) => cmd.run(&sh),
        flags::Command::Release(cmd) => cmd.run(&sh),
        flags::Command::Reproduce(cmd) => cmd.run(&sh),
    }
}
