//! `cargo xtask smoke`: build pause for this machine and run it: `-v`, then SIGTERM →
//! exit 0. The CI job on macOS uses it, where the stub is what runs.

use crate::flags;
use anyhow::{ensure, Context, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xshell::{cmd, Shell};

impl flags::Smoke {
    pub fn run(self, sh: &Shell) -> Result<()> {
        cmd!(sh, "cargo build --locked --release -p pause").run()?;
        let bin = sh.current_dir().join("target/release/pause");
        let version = cmd!(sh, "{bin} -v").read()?;
        ensure!(
            version.starts_with(crate::version::LINE_PREFIX),
            "pause -v printed {version:?}"
        );
        println!("ok -v: {version}");
        let mut child = Command::new(&bin)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running pause")?;
        // The warning line is written once the signals are blocked: then it is ready.
        let mut stderr = child.stderr.take().context("no stderr")?;
        let mut first = [0u8; 7];
        std::io::Read::read_exact(&mut stderr, &mut first)
            .context("pause wrote no warning line")?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let sent = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let status = crate::wait::until(
            "pause to exit after SIGTERM",
            Duration::from_secs(5),
            Duration::from_millis(5),
            || Ok(child.try_wait()?),
        )?;
        ensure!(
            status.code() == Some(0),
            "pause exited with {status} after SIGTERM"
        );
        println!(
            "ok SIGTERM: exit 0 after {:.1} ms",
            sent.elapsed().as_secs_f64() * 1e3
        );
        Ok(())
    }
}
