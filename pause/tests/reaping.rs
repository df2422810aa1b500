//! Reaping: as PID 1 of a new PID namespace, and as a subreaper when not PID 1.
//! These need root (unshare, nsenter); the test suite runs as root here and in CI.
//! Linux only: reaping and namespaces are what the macOS stub does not have.
#![cfg(target_os = "linux")]

mod util;

use nix::sys::signal::Signal;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::{children_of, pause_argv, signal, state_and_parent, wait_exit, wait_for, Pid1};

#[test]
fn ten_thousand_orphans_exiting_together_leave_no_zombie() {
    let Some(pid1) = Pid1::start("ten_thousand_orphans_exiting_together_leave_no_zombie") else {
        return;
    };
    let release = util::orphan_storm(&pid1, 10_000);
    drop(release);
    let left = wait_for("every orphan to be reaped", Duration::from_secs(60), || {
        let left = children_of(pid1.host_pid);
        left.is_empty().then_some(left)
    });
    assert!(left.is_empty());
    // pause itself is still running: only INT/TERM end it.
    assert_eq!(state_and_parent(pid1.host_pid).map(|(s, _)| s), Some('S'));
}

#[test]
fn sigterm_from_inside_the_namespace_stops_pid1_with_exit_zero() {
    let Some(mut pid1) = Pid1::start("sigterm_from_inside_the_namespace_stops_pid1_with_exit_zero")
    else {
        return;
    };
    // PID 1 ignores signals it neither handles nor blocks; pause blocks them and waits.
    // When PID 1 exits the kernel kills the rest of the namespace, this shell included,
    // so its own status may be SIGKILL; what counts is pause's.
    pid1.run_inside("kill -TERM 1", Stdio::null());
    let status = wait_exit(&mut pid1.unshare, Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "unshare reports pause's exit status"
    );
}

#[test]
fn sigterm_during_a_zombie_storm_still_exits_zero_promptly() {
    let Some(mut pid1) = Pid1::start("sigterm_during_a_zombie_storm_still_exits_zero_promptly")
    else {
        return;
    };
    let release = util::orphan_storm(&pid1, 10_000);
    drop(release);
    signal(pid1.host_pid, Signal::SIGTERM);
    let start = Instant::now();
    let status = wait_exit(&mut pid1.unshare, Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "stopped after {:?}",
        start.elapsed()
    );
}

#[test]
fn not_pid1_adopts_and_reaps_an_orphaned_grandchild() {
    let dir = std::env::temp_dir().join(format!("pause-grandchild-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pid_file = dir.join("grandchild.pid");
    // The shell starts a child, then becomes pause. The child waits until pause is set
    // up, starts a grandchild and exits: the grandchild is orphaned under pause.
    let script = format!(
        "sh -c 'sleep 0.5; sleep 1 & echo $! > {pid_file}' & exec {pause}",
        pid_file = pid_file.display(),
        pause = pause_argv().join(" ")
    );
    let mut pause = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let pause_pid = pause.id();
    let grandchild: u32 = wait_for("the grandchild's pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    let parent = wait_for(
        "the grandchild to be orphaned",
        Duration::from_secs(5),
        || {
            let (_, ppid) = state_and_parent(grandchild)?;
            // Until its parent shell exits, the grandchild's parent is that shell.
            (ppid == pause_pid || ppid == 1).then_some(ppid)
        },
    );
    assert_eq!(
        parent, pause_pid,
        "the orphan should be re-parented to pause, not to init"
    );
    wait_for(
        "the grandchild to be reaped (gone, not a zombie)",
        Duration::from_secs(10),
        || state_and_parent(grandchild).is_none().then_some(()),
    );
    assert!(
        children_of(pause_pid).is_empty(),
        "pause left children behind"
    );
    signal(pause_pid, Signal::SIGTERM);
    assert_eq!(
        wait_exit(&mut pause, Duration::from_secs(5)).code(),
        Some(0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
