//! The main job of the pause workspace, as a library: build → verify → image, and the
//! suite's orchestration (`setup`, `ci`).
//!
//! `cargo xtask` (`main.rs`) runs these as commands, and runs the two other programs
//! of the workspace for the rest (`programs.rs`): publishing (`xtask/publish`: push,
//! release, reproduce) and the test harness (`xtask/harness`). Both call this library
//! to build and assemble. Dependencies point one way: nothing here uses their code,
//! and everything here compiles from crates.io alone, with no HTTPS stack, no system
//! library and no code generator.

pub mod build;
pub mod ci;
pub mod cross;
pub mod elf;
pub mod files;
pub mod flags;
pub mod image;
pub mod macos;
pub mod platform;
pub mod programs;
pub mod setup;
pub mod smoke;
pub mod tools;
pub mod verify;
pub mod version;
pub mod wait;

use std::path::Path;
use xshell::Shell;

/// What both binaries' `main` do: forget `cargo run`'s variables, run, and on error
/// print one line a cause (what failed, then, innermost, how to fix it) and exit 1.
pub fn main_with(run: impl FnOnce() -> anyhow::Result<()>) {
    forget_cargo_run_env();
    if let Err(err) = run() {
        if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
            std::process::exit(*code);
        }
        let failed = err.downcast_ref::<programs::ProgramFailed>();
        let said = err.chain().count() == 1 && failed.is_some();
        if !said {
            eprintln!("error: {err:#}");
        }
        std::process::exit(failed.map_or(1, |f| f.code));
    }
}

/// The command line, parsed by clap into `T`. Bad input is one line, as every other
/// error of ours (clap's first paragraph, joined: its usage and `--help` hint follow a
/// blank line), with clap's exit status 2; `--help` prints as clap prints it.
pub fn parse_args<T: clap::Parser>() -> anyhow::Result<T> {
    match T::try_parse() {
        Ok(flags) => Ok(flags),
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            let rendered = err.render().to_string();
            let paragraph: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("{}", paragraph.join(" "));
            Err(Exit(2).into())
        }
    }
}

/// A command's end that it has already reported, with the exit status it promises
/// (reproduce: 1 for a difference, 2 for could not run).
#[derive(Debug)]
pub struct Exit(pub i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// The shell every command runs its tools in, at the project root.
pub fn shell() -> anyhow::Result<Shell> {
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    Ok(sh)
}

/// Drops the variables `cargo run` set for this process (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, …) so that no tool we run sees them. Build scripts watch some
/// of them (ring's does): a nested cargo that saw them would rebuild what the outer
/// one had just built. Called first in `main`, while there is only one thread.
fn forget_cargo_run_env() {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let per_package = name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if per_package {
            std::env::remove_var(name);
        }
    }
}

/// The workspace root: xtask lives one level below it.
pub fn project_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
}
