//! The signal loop: the whole of pause's behaviour once it is set up.
//!
//! Signals are taken synchronously (see `sys`), never in handlers, so the loop can log,
//! reap and decide without async-signal-safety rules. Shape after kubernetes'
//! `build/pause/linux/pause.c`, tini and catatonit: once this loop runs, nothing but
//! SIGINT/SIGTERM makes pause exit; errors are logged and the loop goes on.

use crate::sys::{Errno, SIGCHLD, SIGINT, SIGTERM};

/// What the loop needs from the operating system; `sys::Os` is the real one.
pub(crate) trait Os {
    /// Blocks until one of the blocked signals is pending and returns its number.
    fn next_signal(&mut self) -> Result<i32, Errno>;
    /// Reaps one exited child without blocking; `Ok(false)` when none is left to reap.
    fn reap_one(&mut self) -> Result<bool, Errno>;
    /// Takes SIGINT or SIGTERM if one is pending, without blocking.
    fn pending_shutdown(&mut self) -> Option<i32>;
    /// Writes one line to stderr; `parts` are concatenated.
    fn log(&mut self, parts: &[&[u8]]);
    /// Waits a little after an unexpected error so that a lasting one cannot spin a core.
    fn back_off(&mut self);
}

/// How many children to reap between looks for a pending SIGINT/SIGTERM.
const REAPS_PER_SHUTDOWN_CHECK: usize = 128;

/// Runs until SIGINT or SIGTERM and returns the exit code (always 0).
pub(crate) fn serve(os: &mut impl Os) -> i32 {
    // Children may have exited before the signal source existed; their SIGCHLD is
    // pending and will come too, but reaping now costs one syscall.
    if let Some(sig) = reap_all(os) {
        return shut_down(os, sig);
    }
    loop {
        match os.next_signal() {
            Ok(sig @ (SIGINT | SIGTERM)) => return shut_down(os, sig),
            // SIGCHLD coalesces: one delivery may stand for thousands of exits.
            Ok(SIGCHLD) => {
                if let Some(sig) = reap_all(os) {
                    return shut_down(os, sig);
                }
            }
            // Every other signal is ignored by design: it must not kill or stop pause.
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(err) => {
                os.log(&[
                    b"pause: waiting for signals failed: ",
                    err.desc().as_bytes(),
                ]);
                os.back_off();
            }
        }
    }
}

fn shut_down(os: &mut impl Os, sig: i32) -> i32 {
    let name: &[u8] = if sig == SIGINT {
        b"Interrupt"
    } else {
        b"Terminated"
    };
    os.log(&[b"Shutting down, got signal: ", name]);
    0
}

/// Reaps until no exited child is left (`waitpid(-1, WNOHANG)` until 0 or ECHILD).
/// A storm of thousands of zombies must not delay a shutdown (under emulation it can
/// take seconds), so every few reaps it looks for a pending SIGINT/SIGTERM and returns
/// it; the zombies left die with the namespace.
fn reap_all(os: &mut impl Os) -> Option<i32> {
    let mut reaped = 0usize;
    loop {
        match os.reap_one() {
            Ok(true) => {
                reaped += 1;
                if reaped.is_multiple_of(REAPS_PER_SHUTDOWN_CHECK) {
                    if let Some(sig) = os.pending_shutdown() {
                        return Some(sig);
                    }
                }
            }
            Err(Errno::EINTR) => {}
            Ok(false) => return None,
            Err(err) => {
                os.log(&[b"pause: reaping children failed: ", err.desc().as_bytes()]);
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{SIGHUP, SIGUSR1};
    use std::collections::VecDeque;

    /// A recording stand-in for the OS: scripted signals and zombies, logged lines kept.
    #[derive(Default)]
    struct FakeOs {
        signals: VecDeque<Result<i32, Errno>>,
        zombies: usize,
        reap_errors: VecDeque<Errno>,
        reaped: usize,
        lines: Vec<String>,
        back_offs: usize,
        /// A SIGTERM that becomes pending once this many children have been reaped.
        term_after_reaps: Option<usize>,
    }

    impl Os for FakeOs {
        fn next_signal(&mut self) -> Result<i32, Errno> {
            self.signals
                .pop_front()
                .expect("the loop asked for a signal after the script ended")
        }
        fn reap_one(&mut self) -> Result<bool, Errno> {
            if let Some(err) = self.reap_errors.pop_front() {
                return Err(err);
            }
            if self.zombies == 0 {
                return Ok(false);
            }
            self.zombies -= 1;
            self.reaped += 1;
            Ok(true)
        }
        fn pending_shutdown(&mut self) -> Option<i32> {
            self.term_after_reaps
                .filter(|&after| self.reaped >= after)
                .map(|_| SIGTERM)
        }
        fn log(&mut self, parts: &[&[u8]]) {
            self.lines.push(String::from_utf8(parts.concat()).unwrap());
        }
        fn back_off(&mut self) {
            self.back_offs += 1;
        }
    }

    fn os_with(signals: Vec<Result<i32, Errno>>) -> FakeOs {
        FakeOs {
            signals: signals.into(),
            ..FakeOs::default()
        }
    }

    #[test]
    fn sigterm_and_sigint_exit_zero_with_their_log_line() {
        for (sig, name) in [(SIGTERM, "Terminated"), (SIGINT, "Interrupt")] {
            let mut os = os_with(vec![Ok(sig)]);
            assert_eq!(serve(&mut os), 0);
            assert_eq!(os.lines, [format!("Shutting down, got signal: {name}")]);
        }
    }

    #[test]
    fn one_sigchld_reaps_every_exited_child() {
        let mut os = os_with(vec![Ok(SIGHUP), Ok(SIGCHLD), Ok(SIGTERM)]);
        os.zombies = 10_000;
        assert_eq!(serve(&mut os), 0);
        assert_eq!(os.reaped, 10_000);
        assert_eq!(os.zombies, 0);
    }

    #[test]
    fn sigterm_during_a_zombie_storm_stops_reaping_and_exits() {
        let mut os = os_with(vec![Ok(SIGCHLD)]);
        os.zombies = 10_000;
        os.term_after_reaps = Some(1_000);
        assert_eq!(serve(&mut os), 0);
        assert_eq!(os.lines, ["Shutting down, got signal: Terminated"]);
        assert!(
            os.reaped < 1_000 + REAPS_PER_SHUTDOWN_CHECK,
            "kept reaping {} after SIGTERM",
            os.reaped
        );
    }

    #[test]
    fn other_signals_and_errors_never_end_the_loop() {
        let mut os = os_with(vec![
            Ok(SIGHUP),
            Ok(SIGUSR1),
            Ok(40), // a real-time signal
            Err(Errno::EINTR),
            Err(Errno::EBADF),
            Ok(SIGCHLD),
            Ok(SIGTERM),
        ]);
        os.zombies = 2;
        os.reap_errors = [Errno::EINTR, Errno::EINVAL].into();
        assert_eq!(serve(&mut os), 0);
        assert_eq!(os.back_offs, 1, "only the unexpected error backs off");
        assert_eq!(
            os.lines,
            [
                format!("pause: reaping children failed: {}", Errno::EINVAL.desc()),
                format!("pause: waiting for signals failed: {}", Errno::EBADF.desc()),
                "Shutting down, got signal: Terminated".to_string(),
            ]
        );
        assert_eq!(
            os.reaped, 2,
            "the SIGCHLD after the failed reap still reaps"
        );
    }
}
