//! The command line and plain signal behaviour, with pause as an ordinary child.

mod util;

use nix::sys::signal::Signal;
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;
use util::{pause_command, signal, spawn_pause, wait_exit, SUBREAPER_REFUSED, VERSION};
#[cfg(target_os = "linux")]
use util::{signal_raw, state_and_parent};

#[test]
fn version_flag_prints_one_line_in_every_form_and_position() {
    let expected = format!("{}{VERSION}\n", util::version::LINE_PREFIX);
    for args in [
        &["-v"][..],
        &["-V"],
        &["--version"],
        &["x", "-v"],
        &["--version", "y", "z"],
    ] {
        let out = pause_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pause");
        assert!(out.status.success(), "{args:?}: {}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?} wrote to stderr");
    }
}

fn stop_with(sig: Signal, name: &str) {
    let mut child = spawn_pause(&["--ignored", "argument"]);
    signal(child.id(), sig);
    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{sig} should exit 0");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    // qemu-user 7.2 refuses PR_SET_CHILD_SUBREAPER; pause says so and carries on.
    let stderr = match util::runner() {
        Some(_) => stderr.replacen(&format!("{SUBREAPER_REFUSED}\n"), "", 1),
        None => stderr,
    };
    assert_eq!(
        stderr,
        format!("Warning: pause should be the first process\nShutting down, got signal: {name}\n")
    );
}

#[test]
fn sigterm_exits_zero_with_its_log_line() {
    stop_with(Signal::SIGTERM, "Terminated");
}

#[test]
fn sigint_exits_zero_with_its_log_line() {
    stop_with(Signal::SIGINT, "Interrupt");
}

#[test]
fn every_other_catchable_signal_is_survived() {
    let mut child = spawn_pause(&[]);
    let pid = child.id();
    let named = [
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPIPE,
        Signal::SIGALRM,
        Signal::SIGCHLD,
        Signal::SIGCONT,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGURG,
        Signal::SIGXCPU,
        Signal::SIGXFSZ,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
        Signal::SIGWINCH,
        Signal::SIGIO,
    ];
    for sig in named {
        signal(pid, sig);
    }
    #[cfg(target_os = "linux")]
    {
        signal(pid, Signal::SIGSTKFLT);
        signal(pid, Signal::SIGPWR);
        // Real-time signals: their default action is to terminate. (Not 34 or 35:
        // qemu-user keeps the lowest host ones for itself, and they would kill it.)
        for signo in [40, 50, 64] {
            signal_raw(pid, signo);
        }
    }
    // Give a default action time to take effect before looking.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "pause died from an ignored signal"
    );
    #[cfg(target_os = "linux")]
    {
        let (state, _) = state_and_parent(pid).expect("pause is gone");
        assert!(
            state == 'S',
            "pause should sleep in its wait, but its state is {state:?} (T = stopped)"
        );
    }
    signal(pid, Signal::SIGTERM);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
}
