//! Linux: signals through signalfd(2), orphans adopted through PR_SET_CHILD_SUBREAPER.
//!
//! signalfd returns the raw signal number, so real-time signals (which `Signal` cannot
//! name) are read and ignored like any other.

use super::{block_signals, SetupFailure};
use crate::supervisor;
use nix::errno::Errno;
use nix::sys::signalfd::{SfdFlags, SignalFd};

pub(crate) struct Os {
    signals: SignalFd,
    /// Non-blocking, INT and TERM only: lets a long reap look for a shutdown.
    shutdown: SignalFd,
}

impl Os {
    /// Blocks signals, opens the signal source and, when pause is not PID 1, makes it a
    /// subreaper so orphaned descendants are re-parented to it and reaped (catatonit
    /// does this; upstream pause.c does not).
    pub(crate) fn setup(not_pid1: bool) -> Result<Os, SetupFailure> {
        let set = block_signals()?;
        let signals =
            SignalFd::new(&set).map_err(|err| SetupFailure::new("opening a signalfd", err, 2))?;
        let shutdown = SignalFd::with_flags(&super::shutdown_signals(), SfdFlags::SFD_NONBLOCK)
            .map_err(|err| SetupFailure::new("opening a signalfd", err, 2))?;
        // Subreaping is an addition over upstream that matters only outside a sandbox, so
        // a kernel or emulator that refuses it (qemu-user 7.2 answers EINVAL) gets a
        // warning, not a pause that will not start.
        if not_pid1 {
            if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
                super::write_stderr_line(&[
                    b"pause: becoming a child subreaper failed: ",
                    err.desc().as_bytes(),
                    b"; orphans will be reaped by init instead",
                ]);
            }
        }
        Ok(Os { signals, shutdown })
    }
}

impl supervisor::Os for Os {
    fn next_signal(&mut self) -> Result<i32, Errno> {
        loop {
            // A blocking signalfd never returns Ok(None); loop rather than assume it.
            if let Some(info) = self.signals.read_signal()? {
                return Ok(info.ssi_signo as i32);
            }
        }
    }
    fn reap_one(&mut self) -> Result<bool, Errno> {
        super::reap_one()
    }
    fn pending_shutdown(&mut self) -> Option<i32> {
        // Ok(None) is "nothing pending" (EAGAIN); an error is treated the same: the
        // signal, if any, still waits in the main signalfd.
        self.shutdown
            .read_signal()
            .ok()
            .flatten()
            .map(|info| info.ssi_signo as i32)
    }
    fn log(&mut self, parts: &[&[u8]]) {
        super::write_stderr_line(parts);
    }
    fn back_off(&mut self) {
        super::back_off();
    }
}
