//! One sample of each figure, for one candidate.
//!
//! Nothing here spins: the bench shares two cores with what it measures. Waiting for
//! a state is a sleeping poll with a 1 µs timer slack (`prctl(PR_SET_TIMERSLACK)`), so
//! a 20 µs sleep is about 20 µs, and the poller costs the candidate next to nothing.
//! Where a figure is a cost, it is the candidate's own CPU time (/proc/PID/schedstat).

use super::Candidate;
use crate::procfs;
use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The poll interval while waiting for a process to block.
const POLL: Duration = Duration::from_micros(20);

/// Makes this thread's sleeps as short as asked (the default slack is 50 µs).
pub fn tighten_timer_slack() -> Result<()> {
    nix::sys::prctl::set_timerslack(1).context("prctl(PR_SET_TIMERSLACK)")
}

fn spawn(argv: &[String]) -> Result<Child> {
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {}", argv.join(" ")))
}

/// Waits until `pid` sleeps (state S): it is blocked in its signal wait. std's spawn
/// returns after the exec, so the state is the new program's.
fn wait_blocked(pid: u32) -> Result<()> {
    let started = Instant::now();
    loop {
        match procfs::state_and_parent(pid) {
            Some(('S', _)) => return Ok(()),
            Some(('Z' | 'X', _)) | None => bail!("pid {pid} exited before it blocked"),
            _ => {}
        }
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "pid {pid} never blocked"
        );
        std::thread::sleep(POLL);
    }
}

/// A running candidate, blocked in its wait, and how long it took to get there.
pub struct Started {
    child: Child,
    pub startup: Duration,
}

impl Started {
    pub fn new(c: &Candidate) -> Result<Started> {
        let started = Instant::now();
        let child = spawn(&c.argv)?;
        wait_blocked(child.id())?;
        Ok(Started {
            startup: started.elapsed(),
            child,
        })
    }

    /// VmRSS and Pss, in kB.
    pub fn memory_kb(&self) -> Result<(u64, u64)> {
        let pid = self.child.id();
        let rss = procfs::kb_field(pid, "status", "VmRSS:").context("reading VmRSS")?;
        let pss = procfs::kb_field(pid, "smaps_rollup", "Pss:").context("reading Pss")?;
        Ok((rss, pss))
    }

    /// SIGTERM, and the time until it has exited (waitpid blocks; nothing polls).
    pub fn stop(mut self) -> Result<Duration> {
        let sent = Instant::now();
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)?;
        let status = self.child.wait()?;
        let took = sent.elapsed();
        ensure!(status.success(), "{status} after SIGTERM");
        Ok(took)
    }
}

/// exec → exit of `argv[0] flag` (the version flag), when it exits 0.
pub fn version_exit(c: &Candidate, flag: &str) -> Result<Duration> {
    let started = Instant::now();
    let status = spawn(&[c.argv[0].clone(), flag.to_string()])?.wait()?;
    let took = started.elapsed();
    ensure!(status.success(), "{} {flag}: {status}", c.argv[0]);
    Ok(took)
}

/// The flag (`-v`, else `-V`) that makes the candidate print its version and exit 0.
pub fn version_flag(c: &Candidate) -> Option<&'static str> {
    ["-v", "-V"]
        .into_iter()
        .find(|flag| version_exit(c, flag).is_ok())
}

/// One storm: the candidate as PID 1 of a new PID namespace, `n` orphans that exit at
/// once, and what reaping them cost.
pub struct Storm {
    /// PID 1's CPU time from the orphans' release until none is left, per orphan.
    pub cpu_ns_per_reap: f64,
    /// Wall time from the release until the kernel lists no child of PID 1.
    pub wall_s: f64,
    /// Children still there when the bench gave up (0 unless something is wrong).
    pub left: usize,
}

pub fn storm(c: &Candidate, n: usize) -> Result<Storm> {
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--"])
        .args(&c.argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("unshare (run the bench as root)")?;
    let result = storm_in(c, n, unshare.id());
    // unshare --fork waits for its child; killing PID 1 ends the namespace.
    if let Some(pid1) = procfs::kernel_children(unshare.id()).and_then(|c| c.first().copied()) {
        let _ = kill(Pid::from_raw(pid1 as i32), Signal::SIGKILL);
    }
    let _ = unshare.wait();
    result
}

fn storm_in(c: &Candidate, n: usize, unshare: u32) -> Result<Storm> {
    let started = Instant::now();
    let pid1 = loop {
        if let Some(&pid) = procfs::kernel_children(unshare).unwrap_or_default().first() {
            if std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() == Some(&c.binary) {
                break pid;
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "{} did not start under unshare",
            c.name
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    wait_blocked(pid1)?;
    // n readers of one pipe, started by a shell that exits at once: they are orphans,
    // adopted by PID 1, and all exit when the pipe's writer closes.
    let (reader, writer) = std::io::pipe()?;
    let script = crate::orphans::storm_script(n);
    let status = Command::new("nsenter")
        .arg("-t")
        .arg(pid1.to_string())
        .args(["-p", "--", "sh", "-c", &script])
        .stdin(reader)
        .status()?;
    ensure!(status.success(), "starting {n} orphans failed");
    let children = || procfs::kernel_children(pid1).map_or(0, |c| c.len());
    let adopted = Instant::now();
    while children() < n {
        ensure!(
            adopted.elapsed() < Duration::from_secs(60),
            "{n} orphans were not adopted by {}",
            c.name
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu_before = procfs::cpu_time_ns(pid1).context("reading PID 1's schedstat")?;
    let released = Instant::now();
    drop(writer);
    let mut left = children();
    while left > 0 && released.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
        left = children();
    }
    let wall_s = released.elapsed().as_secs_f64();
    let cpu_after = procfs::cpu_time_ns(pid1).context("reading PID 1's schedstat")?;
    Ok(Storm {
        cpu_ns_per_reap: (cpu_after - cpu_before) as f64 / n as f64,
        wall_s,
        left,
    })
}
