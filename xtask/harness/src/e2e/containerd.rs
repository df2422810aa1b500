//! containerd through its CRI, the way kubelet runs every pod: the sandbox image is our
//! image in a loopback registry, containerd pulls it itself, and pause is PID 1 of
//! the pod. Facts this needs on this kind of machine: `restrict_oom_score_adj`, runc
//! with cgroupfs, an empty hostname for a hostNetwork pod, and no StopPodSandbox for
//! SIGTERM (it sends SIGKILL): that is shown with StopContainer.

use super::cri::CriClient;
use super::registry::{Registry, PASSWORD, USER};
use super::{ok, Fixtures, ORPHANS};
use crate::procfs::{children_of, has_signalfd};
use anyhow::{ensure, Context, Result};
use flate2::{Compression, GzBuilder};
use k8s_cri::v1 as cri;
use oci_spec::image::{self as oci, MediaType};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xshell::cmd;

struct Containerd {
    child: Child,
    socket: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn check(fixtures: &Fixtures) -> Result<()> {
    let dir = fixtures.work.join("containerd");
    let registry = fixtures.registry()?;
    let sandbox_image = fixtures.pushed()?.by_tag.clone();
    let workload_image = fixtures.workload_image()?.to_string();
    let containerd = start(&dir, Some(registry), &sandbox_image)?;
    xtask_publish::runtime()?.block_on(async {
        let mut cri = connect(&containerd.socket).await?;
        let version = cri.version().await?;
        ok(format!(
            "containerd: CRI {} via {} {}",
            version.runtime_api_version, version.runtime_name, version.runtime_version
        ));
        pod_checks(fixtures, &mut cri, &dir, &sandbox_image, &workload_image).await
    })
}

async fn connect(socket: &Path) -> Result<CriClient> {
    let what = format!("containerd's CRI to answer on {}", socket.display());
    until_async(
        &what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            if !socket.exists() {
                return Ok(None);
            }
            let Ok(mut client) = CriClient::connect(socket).await else {
                return Ok(None);
            };
            Ok(client.version().await.is_ok().then_some(client))
        },
    )
    .await
}

async fn pod_checks(
    fixtures: &Fixtures<'_>,
    cri: &mut CriClient,
    dir: &Path,
    sandbox_image: &str,
    workload_image: &str,
) -> Result<()> {
    let pod = run_sandbox(cri, dir).await?;
    let pulled = cri
        .image_status(sandbox_image)
        .await?
        .context("containerd has no sandbox image after RunPodSandbox")?;
    let digest = pulled.repo_digests.first().cloned().unwrap_or_default();
    let ours = fixtures.image.index.digest().to_string();
    ensure!(
        digest.ends_with(&ours),
        "containerd pulled {digest}, not our index {ours}"
    );
    ok(format!(
        "containerd: RunPodSandbox pulled {sandbox_image} ({ours}) pid1 uid=65535 args [\"/pause\"]"
    ));
    orphans_are_reaped(cri, &pod, workload_image).await?;
    stops_as_a_workload(cri, &pod, sandbox_image).await?;
    tear_down(cri, &pod).await
}

/// A running pod sandbox, and its pause.
struct Pod {
    id: String,
    config: cri::PodSandboxConfig,
    namespaces: cri::NamespaceOption,
    pause_pid: u32,
}

/// RunPodSandbox of a hostNetwork pod (no CNI needed) whose containers share its PID
/// namespace: pause is PID 1, uid 65535, `/pause`.
async fn run_sandbox(cri: &mut CriClient, dir: &Path) -> Result<Pod> {
    let namespaces = cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    };
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "pause-e2e".into(),
            uid: "pause-e2e-uid".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: dir.join("pods").display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = cri.run_pod_sandbox(&config).await?;
    let pause_pid = cri.pod_sandbox_pid(&id).await?;
    wait_until(
        "pause to open its signalfd",
        Duration::from_secs(10),
        || has_signalfd(pause_pid),
    )
    .await?;
    super::check_pid1_as_65535(pause_pid)?;
    let cmdline = std::fs::read(format!("/proc/{pause_pid}/cmdline"))?;
    ensure!(
        cmdline == b"/pause\0",
        "the sandbox runs {:?}, not [\"/pause\"]",
        String::from_utf8_lossy(&cmdline)
    );
    Ok(Pod {
        id,
        config,
        namespaces,
        pause_pid,
    })
}

/// A workload in the shared PID namespace leaves orphans: they must become pause's
/// children and, once they exit, be reaped.
async fn orphans_are_reaped(cri: &mut CriClient, pod: &Pod, workload_image: &str) -> Result<()> {
    let auth = cri::AuthConfig {
        username: USER.into(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    cri.pull_image(workload_image, Some(auth)).await?;
    let script = super::orphan_maker();
    let workload = container(
        "orphan-maker",
        workload_image,
        vec!["/bin/sh".into(), "-c".into(), script],
        &pod.namespaces,
    );
    let maker = cri.create_container(&pod.id, workload, &pod.config).await?;
    cri.start_container(&maker).await?;
    let pause_pid = pod.pause_pid;
    let what = format!("the {ORPHANS} orphans to be re-parented to pause");
    let adopted = wait_for(&what, Duration::from_secs(15), || {
        let n = children_of(pause_pid).len();
        (n >= ORPHANS).then_some(n)
    })
    .await?;
    wait_until("every orphan to be reaped", Duration::from_secs(20), || {
        children_of(pause_pid).is_empty()
    })
    .await?;
    ok(format!("containerd: {adopted} orphans in the shared PID namespace were adopted by pause; 0 zombies remain"));
    cri.stop_container(&maker, 5).await?;
    cri.remove_container(&maker).await
}

/// pause as a workload container: StopContainer sends SIGTERM and it exits 0, well
/// inside the grace period.
async fn stops_as_a_workload(cri: &mut CriClient, pod: &Pod, sandbox_image: &str) -> Result<()> {
    let as_workload = container("pause-workload", sandbox_image, Vec::new(), &pod.namespaces);
    let id = cri
        .create_container(&pod.id, as_workload, &pod.config)
        .await?;
    cri.start_container(&id).await?;
    let what = "pause as a workload container to get ready (its signalfd open)";
    until_async(
        what,
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let (mut cri, id) = (cri.clone(), id.clone());
            async move {
                let (_, pid) = cri.container_status(&id).await?;
                Ok(pid.filter(|pid| has_signalfd(*pid)))
            }
        },
    )
    .await?;
    let grace = 10;
    let sent = Instant::now();
    cri.stop_container(&id, grace).await?;
    let took = sent.elapsed();
    let (status, _) = cri.container_status(&id).await?;
    ensure!(
        status.exit_code == 0,
        "pause exited {} ({}) on StopContainer, not 0",
        status.exit_code,
        status.reason
    );
    ensure!(
        took < Duration::from_secs(grace as u64 / 2),
        "StopContainer took {took:?}: pause waited for the SIGKILL after the grace period"
    );
    ok(format!("containerd: StopContainer on pause as a workload → SIGTERM → exit 0 in {:.0} ms (grace {grace} s)", took.as_secs_f64() * 1e3));
    cri.remove_container(&id).await
}

/// StopPodSandbox and RemovePodSandbox leave no sandbox, container or process.
async fn tear_down(cri: &mut CriClient, pod: &Pod) -> Result<()> {
    cri.stop_pod_sandbox(&pod.id).await?;
    cri.remove_pod_sandbox(&pod.id).await?;
    ensure!(
        cri.list_pod_sandboxes().await?.is_empty(),
        "a pod sandbox is left after RemovePodSandbox"
    );
    ensure!(
        cri.list_containers().await?.is_empty(),
        "containers are left after RemovePodSandbox"
    );
    let pause_pid = pod.pause_pid;
    ensure!(
        std::fs::metadata(format!("/proc/{pause_pid}")).is_err(),
        "pause (pid {pause_pid}) still runs after StopPodSandbox"
    );
    ok("containerd: StopPodSandbox and RemovePodSandbox left no sandbox, container or process");
    Ok(())
}

/// A container in the pod: `command` empty means the image's entrypoint. Its log goes
/// under the pod's log directory as `<name>.log`.
fn container(
    name: &str,
    image: &str,
    command: Vec<String>,
    namespaces: &cri::NamespaceOption,
) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command,
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Waits on the runtime for `done`, checked every 20 ms.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    wait_for(what, limit, || done().then_some(())).await
}

async fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    until_async(what, limit, Duration::from_millis(20), || {
        std::future::ready(Ok(probe()))
    })
    .await
}

/// containerd on a private socket, root and state under `dir`, pulling from `registry`.
/// Starts containerd in `dir` with `sandbox_image`, pulling from `registry`; with no
/// registry (an air-gapped node), logging at debug level, where a pull would show.
fn start(dir: &Path, registry: Option<&Registry>, sandbox_image: &str) -> Result<Containerd> {
    xtask::files::create_dir_all(dir)?;
    let pulls = match registry {
        Some(registry) => registry_config(dir, registry)?,
        None => "[debug]\n  level = \"debug\"\n".to_string(),
    };
    let socket = dir.join("containerd.sock");
    let config = format!(
        r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}/bin"
    conf_dir = "{cni}/conf"
{pulls}"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        socket = socket.display(),
        cni = dir.join("cni").display(),
    );
    let config_path = dir.join("config.toml");
    xtask::files::write(&config_path, config)?;
    let child = Command::new("containerd")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("containerd.log"))?)
        .spawn()
        .context("starting containerd")?;
    Ok(Containerd { child, socket })
}

/// A one-layer image with Debian's static busybox as /bin/sh and friends: the workload
/// that makes orphans. Written with our layout code, pushed with skopeo.
/// The CRI's registry section for `registry`: plain HTTP, our credentials.
fn registry_config(dir: &Path, registry: &Registry) -> Result<String> {
    let host = &registry.host;
    let certs = dir.join("certs.d").join(host);
    std::fs::create_dir_all(&certs)?;
    std::fs::write(
        certs.join("hosts.toml"),
        format!("server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
    )?;
    Ok(format!(
        r#"  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs_d}"
    [plugins."io.containerd.grpc.v1.cri".registry.configs."{host}".auth]
      username = "{USER}"
      password = "{PASSWORD}"
"#,
        certs_d = dir.join("certs.d").display(),
    ))
}

/// An air-gapped node: no registry anywhere; the archive imported with `ctr`, the
/// CRI's sandbox image set to its name, and a pod sandbox started through the CRI
/// with pause as PID 1, uid 65535, and no pull in containerd's (debug) log.
pub fn air_gapped(fixtures: &Fixtures, archive: &Path, name: &str) -> Result<()> {
    let dir = fixtures.work.join("containerd-airgap");
    let containerd = start(&dir, None, name)?;
    let socket = containerd.socket.clone();
    xtask_publish::runtime()?.block_on(async {
        let mut cri = connect(&socket).await?;
        let imported = cmd!(fixtures.sh, "ctr -a {socket} -n k8s.io images import {archive}")
            .quiet()
            .read()
            .context("ctr images import")?;
        let status = cri
            .image_status(name)
            .await?
            .with_context(|| format!("the CRI does not know {name} after `ctr images import`"))?;
        ensure!(
            status.repo_tags.iter().any(|t| t == name),
            "the CRI knows the import as {:?}, not {name}",
            status.repo_tags
        );
        let pod = run_sandbox(&mut cri, &dir).await?;
        let pulls = pull_lines(&dir)?;
        ensure!(pulls.is_empty(), "containerd tried to pull: {pulls:?}");
        ok(format!(
            "air gap: containerd imported {name} from the archive ({}), RunPodSandbox with no registry: pause PID 1 uid=65535, no pull in its debug log (where a pull tried as a control shows)",
            imported.lines().last().unwrap_or_default().trim()
        ));
        tear_down(&mut cri, &pod).await?;
        // The control: a pull that is tried leaves lines the check above looks for.
        let absent = "registry.example/pause:never-imported";
        ensure!(
            cri.pull_image(absent, None).await.is_err(),
            "containerd pulled {absent} with no registry anywhere"
        );
        ensure!(
            !pull_lines(&dir)?.is_empty(),
            "a pull of {absent} left no line in containerd's log: the no-pull check proves nothing"
        );
        Ok(())
    })
}

/// The lines of containerd's (debug) log that a pull leaves.
fn pull_lines(dir: &Path) -> Result<Vec<String>> {
    let log = std::fs::read_to_string(dir.join("containerd.log"))?;
    Ok(log
        .lines()
        .filter(|l| l.contains("PullImage") || l.contains("msg=resolving"))
        .map(str::to_string)
        .collect())
}

pub(super) fn push_workload_image(fixtures: &Fixtures, reference: &str) -> Result<()> {
    let busybox = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (apt-get install busybox-static)")?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(busybox.len() as u64);
    header.set_mode(0o755);
    tar.append_data(&mut header, "bin/busybox", &busybox[..])?;
    for applet in ["sh", "sleep"] {
        let mut link = tar::Header::new_ustar();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        tar.append_link(&mut link, format!("bin/{applet}"), "busybox")?;
    }
    let tar = tar.into_inner()?;
    let diff_id = format!("sha256:{}", xtask::build::sha256_hex(&tar));
    let mut gz = GzBuilder::new().write(Vec::new(), Compression::fast());
    std::io::Write::write_all(&mut gz, &tar)?;
    let gz = gz.finish()?;

    let layout_dir = fixtures.work.join("busybox-layout");
    let writer = xtask::image::layout::LayoutWriter::create(&layout_dir)?;
    let layer = writer.blob(MediaType::ImageLayerGzip, &gz)?;
    let host = xtask::platform::host()?;
    let config = oci::ImageConfigurationBuilder::default()
        .architecture(oci::Arch::from(host.oci_arch))
        .os(oci::Os::from(host.oci_os))
        .rootfs(
            oci::RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id])
                .build()?,
        )
        .build()?;
    let config = writer.json_blob(MediaType::ImageConfig, &config)?;
    let manifest = oci::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(vec![layer])
        .build()?;
    let mut manifest = writer.json_blob(MediaType::ImageManifest, &manifest)?;
    manifest.set_annotations(Some(
        [(oci::ANNOTATION_REF_NAME.to_string(), "e2e".to_string())].into(),
    ));
    let index = oci::ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![manifest])
        .build()?;
    writer.commit(&index)?;
    let creds = format!("{USER}:{PASSWORD}");
    cmd!(fixtures.sh, "skopeo copy -q --dest-tls-verify=false --dest-creds {creds} oci:{layout_dir}:e2e docker://{reference}").quiet().run()?;
    Ok(())
}

/// `xtask::wait::until` for an async probe (the CRI's), sleeping on the runtime rather
/// than the thread.
async fn until_async<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut probe: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if started.elapsed() >= limit {
            anyhow::bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}
