//! The harness's command line (reached through `cargo xtask e2e|bench|release --dry-run`).

use clap::{Parser, Subcommand};
use xtask::flags::{Arches, Builder};
use xtask::version::Version;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "The pause test harness"
)]
pub struct Harness {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    E2e(E2e),
    #[command(hide = true)]
    E2eInside(E2eInside),
    Bench(Bench),
    Rehearse(Rehearse),
    #[command(hide = true)]
    MaxRss(MaxRss),
}

/// Runs COMMAND and writes the peak resident memory of it and everything it waited
/// for (getrusage's RUSAGE_CHILDREN maxrss, as wait4 reports it, in KiB) to `--out`;
/// exits with COMMAND's status. A process of its own, so that no other child counts.
#[derive(Parser)]
pub struct MaxRss {
    #[arg(long)]
    pub out: std::path::PathBuf,
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<String>,
}

/// End-to-end checks with real components on loopback: registry, skopeo, umoci, runtimes.
#[derive(Parser)]
pub struct E2e {
    #[arg(long)]
    pub version: Option<Version>,
    /// Architectures; default: the platforms in images/pause/image.toml.
    #[arg(long)]
    pub arch: Option<Arches>,
    /// Run only these checks (comma-separated or repeated); `--list` names them.
    #[arg(long, value_delimiter = ',')]
    pub check: Vec<String>,
    /// Name every check and what it proves, and run none.
    #[arg(long)]
    pub list: bool,
}

/// The e2e checks proper, inside the private namespaces that `e2e` made.
#[derive(Parser)]
pub struct E2eInside {
    #[arg(long)]
    pub version: Version,
    /// Comma-separated architectures from the platform table.
    #[arg(long)]
    pub arch: Arches,
    /// The checks to run (all when none is named).
    #[arg(long, value_delimiter = ',')]
    pub check: Vec<String>,
}

/// Measure sizes, memory, start-up, stop latency and reaping, beside real peers.
#[derive(Parser)]
pub struct Bench {
    /// A peer as NAME=COMMAND (the command split on spaces), measured in the same run;
    /// repeatable: `--baseline upstream=/path/pause --baseline 'catatonit=/usr/bin/catatonit -P'`.
    #[arg(long, value_name = "NAME=COMMAND")]
    pub baseline: Vec<String>,
    #[arg(long)]
    pub version: Option<Version>,
    /// Fewer samples and smaller N: a smoke test that the bench still works.
    #[arg(long)]
    pub quick: bool,
    /// Rewrite README.md's Performance section from this run.
    #[arg(long)]
    pub update_readme: bool,
}

/// The release, pushed to a registry started on loopback; signing skipped.
#[derive(Parser)]
pub struct Rehearse {
    #[arg(long)]
    pub version: Option<Version>,
    #[arg(long, value_enum, default_value_t = Builder::Zig)]
    pub builder: Builder,
}

impl MaxRss {
    pub fn run(self) -> anyhow::Result<()> {
        use anyhow::Context;
        use nix::sys::resource::{getrusage, UsageWho};
        let (program, args) = self.command.split_first().context("no command")?;
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .with_context(|| format!("running {program}"))?;
        let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
        std::fs::write(&self.out, usage.max_rss().to_string())
            .with_context(|| format!("writing {}", self.out.display()))?;
        match status.code() {
            Some(0) => Ok(()),
            code => Err(xtask::Exit(code.unwrap_or(1)).into()),
        }
    }
}
