//! The release path of the pause workspace, as a library: build → verify → image →
//! push → release, and the suite's orchestration (`setup`, `ci`).
//!
//! `cargo xtask` (`main.rs`) runs these as commands; the test harness crate
//! (`xtask/harness`) calls them to build and assemble what it tests. Dependencies
//! point one way: nothing here uses the harness's code, and everything here compiles
//! from crates.io alone (no system library, no code generator).

pub mod build;
pub mod ci;
pub mod cross;
pub mod elf;
pub mod flags;
pub mod harness;
pub mod image;
pub mod platform;
pub mod push;
pub mod registry;
pub mod release;
pub mod reproduce;
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
        let said = err.chain().count() == 1 && err.is::<harness::HarnessFailed>();
        if !said {
            eprintln!("error: {err:#}");
        }
        std::process::exit(1);
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

/// The async runtime a command drives a client on (registry, CRI): one thread is
/// enough for one request at a time.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The workspace root: xtask lives one level below it.
pub fn project_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
}
