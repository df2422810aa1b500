//! The workspace's other programs, which `cargo xtask` runs with cargo rather than
//! links: the publishing crate (`xtask/publish`: push, release, reproduce, with its
//! HTTPS stack) and the test harness (`xtask/harness`: e2e, bench, the release dry
//! run, with its CRI client and Debian packages). The main job (`build`, `image`)
//! compiles neither. Their flags are their own: `cargo xtask push --help` shows them.

use crate::{flags, setup};
use anyhow::{Context, Result};
use xshell::Shell;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Program {
    Publish,
    Harness,
}

impl Program {
    fn package(self) -> &'static str {
        match self {
            Program::Publish => "xtask-publish",
            Program::Harness => "xtask-harness",
        }
    }

    /// Runs the program with `args` (its subcommand first). The harness needs the
    /// suite's packages (installed first, as root on Debian); publishing compiles
    /// from crates.io alone.
    pub fn run(self, sh: &Shell, args: &[String]) -> Result<()> {
        if self == Program::Harness {
            setup::ensure_packages(sh)?;
        }
        let (package, what) = (self.package(), args.first().map_or("", String::as_str));
        // Not quiet: the first run compiles the program, and that is progress to see.
        // (std's Command, not xshell's: we need the exit status, whatever it is.) In
        // the user's directory, as xtask runs: relative paths in `args` mean the same.
        let status = std::process::Command::new("cargo")
            .args(["run", "--locked", "-p", package, "--"])
            .args(args)
            .status()
            .with_context(|| format!("running cargo for {package}"))?;
        match status.code() {
            Some(0) => Ok(()),
            code => Err(ProgramFailed {
                what: format!("{package} {what}"),
                code: code.unwrap_or(1),
            }
            .into()),
        }
    }
}

/// A program (or cargo building it) failed and has said why on stderr, in its own one
/// line: `main_with` prints nothing more, unless a caller added context, and exits
/// with the program's status (reproduce's 1 and 2 mean different things).
#[derive(Debug)]
pub struct ProgramFailed {
    pub what: String,
    pub code: i32,
}

impl std::fmt::Display for ProgramFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed (its error is above)", self.what)
    }
}

impl std::error::Error for ProgramFailed {}

/// `cargo xtask NAME ARGS…` for a command another program carries out.
fn forward(sh: &Shell, program: Program, name: &str, args: &[String]) -> Result<()> {
    let args: Vec<String> = std::iter::once(name.to_string())
        .chain(args.iter().cloned())
        .collect();
    program.run(sh, &args)
}

impl flags::E2e {
    pub fn run(self, sh: &Shell) -> Result<()> {
        forward(sh, Program::Harness, "e2e", &self.args)
    }
}

impl flags::Bench {
    pub fn run(self, sh: &Shell) -> Result<()> {
        forward(sh, Program::Harness, "bench", &self.args)
    }
}

impl flags::Push {
    pub fn run(self, sh: &Shell) -> Result<()> {
        forward(sh, Program::Publish, "push", &self.args)
    }
}

impl flags::Release {
    pub fn run(self, sh: &Shell) -> Result<()> {
        forward(sh, Program::Publish, "release", &self.args)
    }
}

impl flags::Reproduce {
    pub fn run(self, sh: &Shell) -> Result<()> {
        forward(sh, Program::Publish, "reproduce", &self.args)
    }
}
