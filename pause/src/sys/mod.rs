//! The syscall boundary: everything pause asks of the operating system.
//!
//! `linux` is the real implementation (signalfd, subreaper); `stub` serves macOS and
//! other unix systems with the same signal behaviour. cfg-if picks one, so the rest of
//! the crate is platform-free.

pub(crate) use nix::errno::Errno;
use nix::sys::signal::Signal;

pub(crate) const SIGINT: i32 = Signal::SIGINT as i32;
pub(crate) const SIGTERM: i32 = Signal::SIGTERM as i32;
pub(crate) const SIGCHLD: i32 = Signal::SIGCHLD as i32;
#[cfg(test)]
pub(crate) const SIGHUP: i32 = Signal::SIGHUP as i32;
#[cfg(test)]
pub(crate) const SIGUSR1: i32 = Signal::SIGUSR1 as i32;

cfg_if::cfg_if! {
    if #[cfg(any(target_os = "linux", target_os = "android"))] {
        mod linux;
        pub(crate) use linux::Os;
    } else if #[cfg(unix)] {
        mod stub;
        pub(crate) use stub::Os;
    } else {
        compile_error!("pause needs a unix system: signals and waitpid are its whole job");
    }
}

/// A set-up step that failed: pause exits with `exit_code` (1 or 2, as upstream's steps).
pub(crate) struct SetupFailure {
    pub(crate) step: &'static str,
    pub(crate) reason: &'static str,
    pub(crate) exit_code: i32,
}

impl SetupFailure {
    fn new(step: &'static str, err: Errno, exit_code: i32) -> Self {
        SetupFailure {
            step,
            reason: err.desc(),
            exit_code,
        }
    }
}

/// Signals that keep their default action: a fault must still kill and dump.
const FAULT_SIGNALS: [Signal; 7] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGILL,
    Signal::SIGFPE,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

/// Every signal pause takes synchronously: all but the fault signals. SIGKILL and
/// SIGSTOP cannot be blocked; the kernel leaves them out itself.
fn blocked_signals() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::all();
    for sig in FAULT_SIGNALS {
        set.remove(sig);
    }
    set
}

/// SIGINT and SIGTERM: the signals that end pause.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn shutdown_signals() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// Blocks `blocked_signals()` for the process (single-threaded, so the thread mask is it).
fn block_signals() -> Result<nix::sys::signal::SigSet, SetupFailure> {
    let set = blocked_signals();
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|err| SetupFailure::new("blocking signals", err, 1))?;
    Ok(set)
}

/// The process entry point, called by the C runtime (crt1) with the real argv.
#[cfg(not(test))]
// SAFETY: exporting `main` is what `#![no_main]` requires; no other object in the
// link defines it, since std's `lang_start` is not used.
#[unsafe(no_mangle)]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    let argc = usize::try_from(argc).unwrap_or(0);
    let args = (1..argc).map(|idx| {
        // SAFETY: the C runtime passes `argc` valid pointers to NUL-terminated strings
        // in `argv`, which live, unchanged by us, for the whole process.
        unsafe { std::ffi::CStr::from_ptr(*argv.add(idx)) }.to_bytes()
    });
    // Returning lets libc's exit() end the process; std::process::exit would pull in
    // std's runtime clean-up (flushing std's stdout buffer), which pause has no use
    // for: its writes go straight to the fds.
    crate::run(args)
}

pub(crate) fn is_pid1() -> bool {
    nix::unistd::getpid().as_raw() == 1
}

/// Writes all of `bytes` to fd 1, not through std's line buffer: the `Stdout` handle
/// is asked only for its fd. Getting it does make std allocate its `LineWriter` buffer
/// on the heap, once, unused: `-v` is the binary's one allocation. A failed write is
/// dropped (nowhere to report it).
pub(crate) fn write_stdout(bytes: &[u8]) {
    write_all(std::io::stdout(), bytes);
}

/// Writes one line made of `parts` to stderr, with one write so lines do not interleave.
/// The line is built on the stack and cut at 255 bytes, and std's stderr has no
/// buffer: the signal path allocates nothing.
pub(crate) fn write_stderr_line(parts: &[&[u8]]) {
    let mut line = [0u8; 256];
    let mut len = 0;
    for part in parts {
        let take = part.len().min(line.len() - 1 - len);
        line[len..len + take].copy_from_slice(&part[..take]);
        len += take;
    }
    line[len] = b'\n';
    write_all(std::io::stderr(), &line[..=len]);
}

fn write_all(fd: impl std::os::fd::AsFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match nix::unistd::write(&fd, bytes) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// `waitpid(-1, WNOHANG)` once: `Ok(true)` when a child was reaped.
fn reap_one() -> Result<bool, Errno> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => Ok(false),
        Ok(_) => Ok(true),
        Err(err) => Err(err),
    }
}

fn back_off() {
    std::thread::sleep(std::time::Duration::from_millis(100));
}
