//! pause: the process that holds a pod's namespaces.
//!
//! It is PID 1 of the pod sandbox: it exits 0 on SIGINT/SIGTERM, reaps every zombie
//! re-parented to it, ignores every other catchable signal and otherwise sleeps.
//! All platform code lives in `sys`; this file and `supervisor` hold the behaviour,
//! which is the same on every platform.
//!
//! There is no Rust `main`: `sys` exports the C `main` and calls `run`, which keeps
//! std's runtime set-up and clean-up out of the binary (one pause runs in every pod on
//! every node, so bytes count). Output goes straight to fds 1 and 2 (see `sys`).

#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), no_main)]
// Under the test harness the C `main` is left out, so `run` and what it alone uses are
// unreached there; the normal build still checks them for dead code.
#![cfg_attr(test, allow(dead_code))]

mod args;
mod supervisor;
// The only module allowed `unsafe`: the C entry point and nothing else (see ARCHITECTURE.md).
#[allow(unsafe_code)]
mod sys;

/// `pause.rs VERSION`, made by build.rs from `PAUSE_VERSION` and src/version.rs.
const VERSION_LINE: &str = concat!(env!("PAUSE_VERSION_LINE"), "\n");

/// The whole program; `args` excludes the program name. Returns the exit code.
fn run<'a>(args: impl Iterator<Item = &'a [u8]>) -> i32 {
    if args::wants_version(args) {
        sys::write_stdout(VERSION_LINE.as_bytes());
        return 0;
    }
    let not_pid1 = !sys::is_pid1();
    match sys::Os::setup(not_pid1) {
        Ok(mut os) => {
            if not_pid1 {
                // Not an error: pause sees use outside of infra containers (upstream).
                sys::write_stderr_line(&[b"Warning: pause should be the first process"]);
            }
            supervisor::serve(&mut os)
        }
        Err(failure) => {
            let step = failure.step.as_bytes();
            sys::write_stderr_line(&[b"pause: ", step, b" failed: ", failure.reason.as_bytes()]);
            failure.exit_code
        }
    }
}
