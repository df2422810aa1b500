//! Other unix systems (macOS): the same command line and signal behaviour, with
//! sigwait(2) in place of signalfd. There is no subreaper and no namespace here: pause
//! reaps only its own children, which is all a developer's local run needs.

use super::{block_signals, SetupFailure};
use crate::supervisor;
use nix::errno::Errno;
use nix::sys::signal::SigSet;

pub(crate) struct Os {
    signals: SigSet,
}

impl Os {
    pub(crate) fn setup(_not_pid1: bool) -> Result<Os, SetupFailure> {
        Ok(Os {
            signals: block_signals()?,
        })
    }
}

impl supervisor::Os for Os {
    fn next_signal(&mut self) -> Result<i32, Errno> {
        // These systems have no real-time signals, so every number maps to a `Signal`.
        self.signals.wait().map(|sig| sig as i32)
    }
    fn reap_one(&mut self) -> Result<bool, Errno> {
        super::reap_one()
    }
    fn pending_shutdown(&mut self) -> Option<i32> {
        // No non-blocking signal read here (no signalfd, no sigtimedwait on macOS); the
        // stub reaps only its own children, so no storm delays a shutdown.
        None
    }
    fn log(&mut self, parts: &[&[u8]]) {
        super::write_stderr_line(parts);
    }
    fn back_off(&mut self) {
        super::back_off();
    }
}
