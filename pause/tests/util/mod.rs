//! Helpers for the integration tests: start the built pause, watch it through /proc,
//! signal it and wait for it with a deadline.
//!
//! `PAUSE_BIN` overrides the binary under test: that is how a deliberately broken
//! build (one that does not reap, say) is checked to fail these tests, and how
//! `cargo xtask verify` runs them against each dist binary. `PAUSE_RUNNER` (e.g.
//! `qemu-s390x-static`) runs that binary under an emulator.

#![allow(dead_code)] // each test file uses its own part of the helpers

mod orphans;
mod procfs;

pub use procfs::children_of;
#[cfg(target_os = "linux")]
use procfs::has_signalfd;
#[cfg(target_os = "linux")]
pub use procfs::state_and_parent;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn pause_bin() -> PathBuf {
    match std::env::var_os("PAUSE_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_pause")),
    }
}

/// The emulator the binary runs under, if any.
pub fn runner() -> Option<PathBuf> {
    std::env::var_os("PAUSE_RUNNER").map(PathBuf::from)
}

/// A command that runs the binary under test (through the runner when one is set).
pub fn pause_command() -> Command {
    match runner() {
        Some(runner) => {
            let mut cmd = Command::new(runner);
            cmd.arg(pause_bin());
            cmd
        }
        None => Command::new(pause_bin()),
    }
}

/// The program and arguments that start the binary under test, for `unshare` and `sh`.
pub fn pause_argv() -> Vec<String> {
    let cmd = pause_command();
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect()
}

/// What /proc/PID/exe shows once it runs: the runner (found on PATH), else the binary.
fn expected_exe() -> Option<PathBuf> {
    let program = match runner() {
        Some(runner) if runner.components().count() == 1 => {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join(&runner))
                .find(|p| p.is_file())?
        }
        Some(runner) => runner,
        None => pause_bin(),
    };
    fs::canonicalize(program).ok()
}

/// The line pause prints when the kernel (or qemu-user 7.2) refuses PR_SET_CHILD_SUBREAPER.
pub const SUBREAPER_REFUSED: &str = "pause: becoming a child subreaper failed: Invalid argument; \
     orphans will be reaped by init instead";

pub const VERSION: &str = env!("PAUSE_BUILD_VERSION");

/// The `-v` line's prefix and the version grammar, as pause's build script has them.
#[path = "../../src/version.rs"]
#[allow(dead_code)]
pub mod version;

/// Polls `probe` every 10 ms until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to exit within `limit`; kills it and panics otherwise.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        sleep(Duration::from_millis(5));
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap_or_else(|err| panic!("kill -{sig} {pid}: {err}"));
}

/// Sends a raw signal number (real-time signals have no `Signal` name).
pub fn signal_raw(pid: u32, signo: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signo}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signo} {pid} failed");
}

/// True once `pid` runs the binary under test and is ready for signals.
#[cfg(target_os = "linux")]
pub fn pause_ready(pid: u32) -> bool {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
    exe.is_some() && exe == expected_exe() && has_signalfd(pid)
}

/// Elsewhere (macOS) there is no /proc to see the signal wait in: the process exists,
/// and has had 200 ms to block its signals, which takes it microseconds.
#[cfg(not(target_os = "linux"))]
pub fn pause_ready(pid: u32) -> bool {
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// Starts pause as a plain child (not PID 1) and waits until it is ready.
pub fn spawn_pause(args: &[&str]) -> Child {
    let child = pause_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pause");
    let pid = child.id();
    wait_for(
        "pause to block its signals",
        Duration::from_secs(10),
        || pause_ready(pid).then_some(()),
    );
    child
}

/// pause as PID 1 of a new PID namespace, started by `unshare --pid --fork --mount-proc`.
pub struct Pid1 {
    pub unshare: Child,
    /// pause's pid as seen from this (the parent) namespace.
    pub host_pid: u32,
}

impl Pid1 {
    /// `None`, with one skip line, when the tests do not run as root: a PID namespace
    /// needs it. Under CI (`CI=true`) that is a failure instead.
    pub fn start(test: &str) -> Option<Pid1> {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test} needs root (a PID namespace), and CI runs the tests as root"
            );
            // Past the harness's capture (it takes only print!/eprint!): a skip is seen.
            let line =
                format!("skip {test}: needs root (a PID namespace); run the tests as root\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            return None;
        }
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--"])
            .args(pause_argv())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn unshare (util-linux); tests must run as root");
        let unshare_pid = unshare.id();
        let host_pid = wait_for(
            "pause to start as PID 1 under unshare",
            Duration::from_secs(10),
            || {
                children_of(unshare_pid)
                    .into_iter()
                    .map(|(pid, _)| pid)
                    .find(|&pid| pause_ready(pid))
            },
        );
        Some(Pid1 { unshare, host_pid })
    }

    /// Runs `sh -c script` inside the namespace (so its orphans re-parent to pause),
    /// with `stdin` as its standard input, and waits for it.
    pub fn run_inside(&self, script: &str, stdin: Stdio) -> ExitStatus {
        Command::new("nsenter")
            .arg("--target")
            .arg(self.host_pid.to_string())
            .args(["--pid", "--", "sh", "-c", script])
            .stdin(stdin)
            .status()
            .expect("run nsenter")
    }
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        // Killing PID 1 ends the whole namespace, so nothing a test started outlives it.
        let _ = kill(Pid::from_raw(self.host_pid as i32), Signal::SIGKILL);
        let _ = self.unshare.wait();
    }
}

/// Starts `n` processes inside the namespace of `pid1` that all block on one pipe, then
/// lets their parent exit so they are orphans of pause. Dropping the returned writer
/// makes every one of them exit at once.
pub fn orphan_storm(pid1: &Pid1, n: usize) -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("pipe");
    let status = pid1.run_inside(&orphans::storm_script(n), Stdio::from(reader));
    assert!(
        status.success(),
        "starting {n} orphans in the namespace failed: {status}"
    );
    let orphans = wait_for(
        "the orphans to be re-parented to pause",
        Duration::from_secs(30),
        || {
            let count = children_of(pid1.host_pid).len();
            (count >= n).then_some(count)
        },
    );
    assert_eq!(
        orphans, n,
        "pause should have exactly the {n} orphans as children"
    );
    writer
}
