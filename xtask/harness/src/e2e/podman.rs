//! podman (Debian's 4.3, with runc and a private config and storage), as operators
//! run pods with it: our image as a pod's infra container sharing the PID namespace
//! with a workload that leaves orphans; as a hardened container; pulled per arch.

use super::registry::{PASSWORD, USER};
use super::{ok, Fixtures, ORPHANS};
use crate::procfs::{children_of, has_signalfd, status_field};
use anyhow::{ensure, Context, Result};
use oci_spec::image::ImageManifest;
use std::time::{Duration, Instant};
use xshell::{cmd, Shell};
use xtask::wait;

pub fn check(fixtures: &Fixtures) -> Result<()> {
    let sh = fixtures.sh;
    let image = fixtures.pushed()?.by_digest.clone();
    let workload_image = fixtures.workload_image()?;
    let config = xtask::cross::podman_config(&fixtures.work.join("podman"))?;
    let _env: Vec<_> = config.iter().map(|(k, v)| sh.push_env(k, v)).collect();
    let creds = format!("{USER}:{PASSWORD}");
    for reference in [image.as_str(), workload_image] {
        cmd!(
            sh,
            "podman pull -q --tls-verify=false --creds {creds} {reference}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("podman pull {reference}"))?;
    }
    let result = pod(fixtures, &image, workload_image).and_then(|()| hardened(fixtures, &image));
    let result = result.and_then(|()| every_arch(fixtures, &image, &creds));
    // Whatever happened, leave no container running in this namespace.
    let _ = cmd!(sh, "podman rm -a -f -t 0")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    let _ = cmd!(sh, "podman pod rm -a -f")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    result
}

fn inspect(sh: &Shell, what: &str, format: &str) -> Result<String> {
    Ok(cmd!(sh, "podman inspect --format {format} {what}")
        .quiet()
        .read()?
        .trim()
        .to_string())
}

/// The host PID of container `name` once pause in it has its signalfd open.
fn ready_pid(sh: &Shell, name: &str) -> Result<u32> {
    let what = format!("pause in {name} to be ready");
    wait::until(
        &what,
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let pid: u32 = inspect(sh, name, "{{.State.Pid}}")?.parse().unwrap_or(0);
            Ok((pid != 0 && has_signalfd(pid)).then_some(pid))
        },
    )
}

/// A pod's infra container: its id, and the host PID of its pause.
struct Infra {
    id: String,
    pause: u32,
}

/// Creates and starts pod `pod` with `image` as its infra container (sharing PID, IPC
/// and UTS, on the host's network), whose pause, once ready, must be PID 1 of the pod.
fn infra_pid1(sh: &Shell, pod: &str, image: &str) -> Result<Infra> {
    cmd!(
        sh,
        "podman pod create --name {pod} --infra-image {image} --share pid,ipc,uts --network host"
    )
    .quiet()
    .ignore_stdout()
    .run()?;
    cmd!(sh, "podman pod start {pod}")
        .quiet()
        .ignore_stdout()
        .run()?;
    let format = "{{.InfraContainerID}}";
    let infra = cmd!(sh, "podman pod inspect --format {format} {pod}")
        .quiet()
        .read()?;
    let pause = ready_pid(sh, infra.trim())?;
    let nspid = status_field(pause, "NSpid:");
    ensure!(
        nspid.last().map(String::as_str) == Some("1"),
        "{image}'s pause is not PID 1 of pod {pod}: NSpid {nspid:?}"
    );
    Ok(Infra {
        id: infra.trim().to_string(),
        pause,
    })
}

/// A pod whose infra container is our image: pause is PID 1 of the pod's PID
/// namespace, reaps the workload's orphans, and `podman pod stop` ends it with exit 0.
fn pod(fixtures: &Fixtures, image: &str, workload_image: &str) -> Result<()> {
    let sh = fixtures.sh;
    let infra = infra_pid1(sh, "pause-e2e", image)?;
    let pause = infra.pause;
    let script = super::orphan_maker();
    cmd!(
        sh,
        "podman run -d --pod pause-e2e --name orphan-maker {workload_image} /bin/sh -c {script}"
    )
    .quiet()
    .ignore_stdout()
    .run()?;
    let what = format!("the {ORPHANS} orphans to be re-parented to pause");
    let adopted = wait::until(
        &what,
        Duration::from_secs(15),
        Duration::from_millis(20),
        || {
            let n = children_of(pause).len();
            Ok((n >= ORPHANS).then_some(n))
        },
    )?;
    wait::until(
        "every orphan to be reaped",
        Duration::from_secs(20),
        Duration::from_millis(20),
        || Ok(children_of(pause).is_empty().then_some(())),
    )?;
    ok(format!("podman pod: {image} as infra is PID 1; {adopted} orphans of a workload adopted and reaped, 0 zombies"));
    let grace = 10;
    let grace_text = grace.to_string();
    let sent = Instant::now();
    cmd!(sh, "podman pod stop -t {grace_text} pause-e2e")
        .quiet()
        .ignore_stdout()
        .run()?;
    let took = sent.elapsed();
    let code = inspect(sh, &infra.id, "{{.State.ExitCode}}")?;
    ensure!(
        code == "0",
        "pause as infra exited {code} on `podman pod stop`, not 0"
    );
    ensure!(
        took < Duration::from_secs(grace / 2),
        "podman pod stop took {took:?}: pause waited for the SIGKILL"
    );
    ok(format!(
        "podman pod: `pod stop` → pause exit 0 in {:.0} ms (grace {grace} s)",
        took.as_secs_f64() * 1e3
    ));
    cmd!(sh, "podman pod rm -f pause-e2e")
        .quiet()
        .ignore_stdout()
        .run()?;
    Ok(())
}

/// `podman run` with everything taken away: read-only root, no capabilities, no new
/// privileges, podman's default seccomp profile. pause runs as 65535, answers `-v`
/// through exec, and stops with exit 0.
fn hardened(fixtures: &Fixtures, image: &str) -> Result<()> {
    let sh = fixtures.sh;
    cmd!(sh, "podman run -d --name hardened --read-only --cap-drop=all --security-opt no-new-privileges {image}")
        .quiet()
        .ignore_stdout()
        .run()?;
    let pid = ready_pid(sh, "hardened")?;
    super::check_pid1_as_65535(pid)?;
    let (seccomp, no_new_privs, caps) = (
        status_field(pid, "Seccomp:"),
        status_field(pid, "NoNewPrivs:"),
        status_field(pid, "CapEff:"),
    );
    ensure!(
        seccomp == ["2"] && no_new_privs == ["1"] && caps == ["0000000000000000"],
        "the hardened container runs with Seccomp {seccomp:?}, NoNewPrivs {no_new_privs:?}, CapEff {caps:?}"
    );
    let said = cmd!(sh, "podman exec hardened /pause -v").quiet().read()?;
    ensure!(
        said == xtask::version::line(&fixtures.version),
        "podman exec hardened /pause -v said {said:?}"
    );
    let sent = Instant::now();
    cmd!(sh, "podman stop -t 10 hardened")
        .quiet()
        .ignore_stdout()
        .run()?;
    let took = sent.elapsed();
    let code = inspect(sh, "hardened", "{{.State.ExitCode}}")?;
    ensure!(
        code == "0",
        "the hardened pause exited {code} on podman stop, not 0"
    );
    ok(format!(
        "podman run --read-only --cap-drop=all --security-opt no-new-privileges (seccomp filter on): uid 65535, exec -v {said:?}, stop → exit 0 in {:.0} ms",
        took.as_secs_f64() * 1e3
    ));
    cmd!(sh, "podman rm hardened")
        .quiet()
        .ignore_stdout()
        .run()?;
    Ok(())
}

/// `podman pull --arch` picks each arch's manifest: the image it stores is that
/// arch's config.
fn every_arch(fixtures: &Fixtures, image: &str, creds: &str) -> Result<()> {
    let sh = fixtures.sh;
    let mut picked = Vec::new();
    for arch in &fixtures.image.arches {
        let p = xtask::platform::by_arch(arch.arch).context("arch not in the table")?;
        let manifest: ImageManifest = serde_json::from_slice(&xtask::image::layout::read_blob(
            &fixtures.layout,
            arch.manifest.digest().as_ref(),
        )?)?;
        let config = manifest.config().digest().to_string();
        let oci_arch = p.oci_arch;
        let variant: Vec<String> = p
            .oci_variant
            .map(|v| vec!["--variant".to_string(), v.to_string()])
            .unwrap_or_default();
        let id = cmd!(sh, "podman pull -q --tls-verify=false --creds {creds} --arch {oci_arch} {variant...} {image}")
            .quiet()
            .read()?;
        ensure!(
            config.ends_with(id.trim()),
            "podman pull --arch {oci_arch} stored image {id}, not the {} config {config}",
            p.arch
        );
        picked.push(p.arch);
    }
    ok(format!(
        "podman pull --arch picks each arch's manifest: {}",
        picked.join(", ")
    ));
    Ok(())
}

/// An air-gapped node: `podman load` of the archive into storage of its own, then a
/// pod whose infra image is the archive's name: pause is the pod's PID 1.
pub fn air_gapped(fixtures: &Fixtures, archive: &std::path::Path, name: &str) -> Result<()> {
    let sh = fixtures.sh;
    let config = xtask::cross::podman_config(&fixtures.work.join("podman-airgap"))?;
    let _env: Vec<_> = config.iter().map(|(k, v)| sh.push_env(k, v)).collect();
    let loaded = cmd!(sh, "podman load -i {archive}")
        .quiet()
        .read()
        .context("podman load")?;
    ensure!(
        loaded
            .lines()
            .any(|l| l.trim() == format!("Loaded image: {name}")),
        "podman load named the image {loaded:?}, not {name}"
    );
    let result = (|| -> Result<()> {
        let pause = infra_pid1(sh, "pause-airgap", name)?.pause;
        // podman runs a pod's infra container as root, whatever the image's USER.
        let uid = status_field(pause, "Uid:")
            .first()
            .cloned()
            .unwrap_or_default();
        ok(format!(
            "air gap: podman load named the archive {name}; as a pod's infra image it is the pod's PID 1 (uid {uid}: podman runs infra containers as root)"
        ));
        Ok(())
    })();
    let _ = cmd!(sh, "podman pod rm -a -f -t 0")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    result
}
