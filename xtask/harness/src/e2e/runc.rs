//! runc, the OCI runtime under containerd: our image as unpacked by umoci runs
//! `/pause` as PID 1 with uid/gid 65535, and `runc kill TERM` ends it with 0 in < 1 s.
//! The negative control runs a PID 1 that ignores SIGTERM and shows it outlives the bound.

use super::{ok, Fixtures};
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xshell::cmd;
use xtask::image::arch_tag;

/// How soon pause must exit after SIGTERM under runc (it takes milliseconds).
const STOP_BOUND: Duration = Duration::from_secs(1);

pub fn check(fixtures: &Fixtures) -> Result<()> {
    let host = fixtures.host_platform()?;
    let bundle = fixtures.work.join("runc/bundle");
    let layout = &fixtures.layout;
    let tag = arch_tag(&fixtures.version, host);
    cmd!(fixtures.sh, "umoci unpack --image {layout}:{tag} {bundle}")
        .quiet()
        .ignore_stderr()
        .run()?;
    let state = fixtures.work.join("runc/state");

    // pause: PID 1, uid/gid 65535, SIGTERM → exit 0 within the bound.
    edit_config(&bundle, |_| Ok(()))?;
    let mut container = start(&state, &bundle, "pause-e2e")?;
    let pid = wait_running(&state, "pause-e2e", &mut container, Ready::SignalFdOpen)?;
    super::check_pid1_as_65535(pid)?;
    let stopped = kill_and_time(&state, "pause-e2e", &mut container, STOP_BOUND * 5)?;
    let (elapsed, code) = stopped.context("pause did not exit after runc kill TERM")?;
    ensure!(
        code == Some(0),
        "pause exited with {code:?} after SIGTERM, not 0"
    );
    ensure!(
        elapsed < STOP_BOUND,
        "pause took {elapsed:?} to stop, over {STOP_BOUND:?}"
    );
    ok(format!(
        "runc: {tag} runs /pause as PID 1 uid=65535 gid=65535; runc kill TERM → exit 0 in {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    ));

    // Negative control: a PID 1 with default dispositions ignores SIGTERM (the kernel
    // drops it), so the same check must see it outlive the bound.
    edit_config(&bundle, |config| {
        config["process"]["args"] = serde_json::json!(["/bin/sleep", "30"]);
        let mounts = config["mounts"]
            .as_array_mut()
            .context("config.json has no mounts")?;
        for dir in ["/usr", "/bin", "/lib", "/lib64"] {
            if Path::new(dir).exists() {
                mounts.push(serde_json::json!({"destination": dir, "type": "bind", "source": dir, "options": ["rbind", "ro"]}));
            }
        }
        Ok(())
    })?;
    let mut control = start(&state, &bundle, "ignores-term")?;
    wait_running(&state, "ignores-term", &mut control, Ready::Running)?;
    let outcome = kill_and_time(&state, "ignores-term", &mut control, STOP_BOUND * 2)?;
    let _ = cmd!(fixtures.sh, "runc --root {state} kill ignores-term KILL")
        .quiet()
        .ignore_stderr()
        .ignore_status()
        .run();
    let _ = control.wait();
    let _ = cmd!(fixtures.sh, "runc --root {state} delete -f ignores-term")
        .quiet()
        .ignore_stderr()
        .ignore_status()
        .run();
    if let Some((elapsed, code)) = outcome {
        bail!("negative control failed: a SIGTERM-ignoring PID 1 stopped in {elapsed:?} with {code:?}, so the check cannot tell");
    }
    ok(format!("runc negative control: a PID 1 that ignores SIGTERM (sleep) still ran {:?} after runc kill TERM", STOP_BOUND * 2));
    Ok(())
}

/// umoci's config.json, made to run detached (`terminal: false`), then `edit`ed.
fn edit_config(
    bundle: &Path,
    edit: impl FnOnce(&mut serde_json::Value) -> Result<()>,
) -> Result<()> {
    let path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    config["process"]["terminal"] = serde_json::Value::Bool(false);
    edit(&mut config)?;
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

/// `runc run` in the foreground of a child process, so its exit status is pause's.
fn start(state: &Path, bundle: &Path, id: &str) -> Result<Child> {
    Command::new("runc")
        .arg("--root")
        .arg(state)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting runc")
}

/// What `wait_running` waits for beyond runc's word.
#[derive(Clone, Copy, PartialEq)]
enum Ready {
    /// Running, as runc reports it.
    Running,
    /// Running, and the process has opened its signalfd (pause is ready for signals).
    SignalFdOpen,
}

/// Waits until runc reports `id` running (and `ready` holds) and returns its host PID.
fn wait_running(state: &Path, id: &str, child: &mut Child, ready: Ready) -> Result<u32> {
    let what = format!("runc to report {id} running");
    xtask::wait::until(
        &what,
        Duration::from_secs(15),
        Duration::from_millis(20),
        || {
            if let Some(status) = child.try_wait()? {
                bail!("runc run {id} exited early with {status}");
            }
            let out = Command::new("runc")
                .arg("--root")
                .arg(state)
                .args(["state", id])
                .output()?;
            if !out.status.success() {
                return Ok(None);
            }
            let state: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            if state["status"] != "running" {
                return Ok(None);
            }
            let pid = state["pid"].as_u64().context("runc state has no pid")? as u32;
            let ready = ready == Ready::Running || crate::procfs::has_signalfd(pid);
            Ok(ready.then_some(pid))
        },
    )
}

/// `runc kill id TERM`, then waits up to `limit`: `Some((elapsed, exit code))` if it exited.
fn kill_and_time(
    state: &Path,
    id: &str,
    child: &mut Child,
    limit: Duration,
) -> Result<Option<(Duration, Option<i32>)>> {
    let sent = Instant::now();
    let status = Command::new("runc")
        .arg("--root")
        .arg(state)
        .args(["kill", id, "TERM"])
        .status()?;
    ensure!(status.success(), "runc kill {id} TERM failed");
    xtask::wait::within(limit, Duration::from_micros(500), || {
        Ok(child
            .try_wait()?
            .map(|status| (sent.elapsed(), status.code())))
    })
}
