//! The `cross` builder: the same cargo invocation as `--builder zig`, inside a
//! container made from Debian packages, run by cross 0.2.5 with podman (or docker).
//!
//! cross mounts the project at /project, the target dir at /target and the host's
//! toolchain at /rust; xtask also mounts `target/tools` and zig's cache at their own
//! paths so the zig linker shim is the same file inside and out. Pitfalls met on this kind of machine
//! on this kind of machine: cross must be called with a toolchain that is not rustup's
//! active one (the pinned nightly, `tools::NIGHTLY`), CROSS_CUSTOM_TOOLCHAIN stops it
//! from running rustup, and `--pull=never --network=none` keeps it from reaching out.

use crate::platform::Platform;
use crate::tools;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

const CROSS_VERSION: &str = "0.2.5";
pub const BUILDER_DESCRIPTION: &str = "images/builder/builder.toml";

/// `images/builder/builder.toml`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderImage {
    pub tag: String,
    suite: String,
    variant: String,
    packages: Vec<String>,
}

impl BuilderImage {
    pub fn load(root: &Path) -> Result<BuilderImage> {
        let path = root.join(BUILDER_DESCRIPTION);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The engine cross will drive, with podman's private configuration when it is podman.
struct Engine {
    program: &'static str,
    conf_env: Vec<(&'static str, PathBuf)>,
}

impl Engine {
    fn find(sh: &Shell, root: &Path) -> Result<Engine> {
        // A working docker engine first (CI runners have one); else podman, configured here.
        if cmd!(sh, "docker info")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
        {
            return Ok(Engine {
                program: "docker",
                conf_env: Vec::new(),
            });
        }
        if tools::find_on_path(sh, "podman").is_some() {
            return Ok(Engine {
                program: "podman",
                conf_env: podman_config(&root.join("target/tools/podman"))?,
            });
        }
        bail!("--builder cross needs a container engine; install podman (`apt-get install podman`) or use --builder zig")
    }
}

/// A private podman configuration in `dir`, as the variables that point podman at it:
/// runc, cgroupfs, file events, the ulimits this VM allows (zig needs more than 1024
/// open files), and storage in `dir`; /etc/containers stays untouched. The cross
/// builder and the e2e's podman checks both run podman so.
pub fn podman_config(dir: &Path) -> Result<Vec<(&'static str, PathBuf)>> {
    crate::files::create_dir_all(dir)?;
    let conf = dir.join("containers.conf");
    // As many open files as this process may have: more needs CAP_SYS_RESOURCE.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    let nofile = hard.min(65_536);
    crate::files::write(
        &conf,
        format!(
            "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=4096:4096\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"
        ),
    )?;
    let storage = dir.join("storage.conf");
    crate::files::write(
        &storage,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("storage").display(),
            dir.join("run").display()
        ),
    )?;
    Ok(vec![
        ("CONTAINERS_CONF", conf),
        ("CONTAINERS_STORAGE_CONF", storage),
    ])
}

impl Engine {
    /// Points this shell's engine at its configuration (podman's private storage).
    fn configure<'a>(&self, sh: &'a Shell) -> Vec<xshell::PushEnv<'a>> {
        self.conf_env
            .iter()
            .map(|(k, v)| sh.push_env(k, v))
            .collect()
    }
}

/// Makes the builder image when the engine lacks it. `ci` runs this on a thread of
/// its own while other stages run; `build` finds the image made.
pub fn prepare_image(sh: &Shell, root: &Path) -> Result<()> {
    let engine = Engine::find(sh, root)?;
    let _conf = engine.configure(sh);
    ensure_image(sh, root, &engine, &BuilderImage::load(root)?)
}

/// The cross binary in `target/tools/cross`, installed from crates.io when missing.
fn ensure_cross(sh: &Shell, root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/tools/cross");
    let bin = dir.join("bin/cross");
    let stamp = dir.join("version.txt");
    if bin.is_file() && sh.read_file(&stamp).ok().as_deref() == Some(CROSS_VERSION) {
        return Ok(bin);
    }
    eprintln!("installing cross {CROSS_VERSION} from crates.io into {} (debug build: it only starts containers)", dir.display());
    cmd!(
        sh,
        "cargo install --quiet --locked --debug --root {dir} cross --version {CROSS_VERSION}"
    )
    .run()
    .with_context(|| {
        format!(
            "installing cross failed; run `cargo install cross --version {CROSS_VERSION} --locked`"
        )
    })?;
    sh.write_file(&stamp, CROSS_VERSION)?;
    Ok(bin)
}

/// Makes the builder image when the engine does not have it yet.
fn ensure_image(sh: &Shell, root: &Path, engine: &Engine, image: &BuilderImage) -> Result<()> {
    let program = engine.program;
    let tag = &image.tag;
    if cmd!(sh, "{program} image inspect {tag}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
    {
        return Ok(());
    }
    tools::require(sh, "debootstrap", "apt-get install debootstrap")?;
    let rootfs = root.join("target/tools/builder-rootfs");
    if rootfs.exists() {
        crate::files::remove_dir_all(&rootfs)?;
    }
    let mirror = debian_mirror();
    let include = image.packages.join(",");
    let (suite, variant) = (&image.suite, &image.variant);
    eprintln!(
        "making the builder image {tag}: debootstrap {suite} from {mirror} (a few minutes, once)"
    );
    cmd!(
        sh,
        "debootstrap --variant={variant} --include={include} {suite} {rootfs} {mirror}"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .context("debootstrap failed; check that Debian's mirror is reachable")?;
    let tarball = root.join("target/tools/builder-rootfs.tar");
    cmd!(sh, "tar -C {rootfs} -cf {tarball} .").run()?;
    cmd!(sh, "{program} import {tarball} {tag}")
        .quiet()
        .run()
        .with_context(|| format!("importing {tag} into {program}"))?;
    crate::files::remove_file(&tarball)?;
    crate::files::remove_dir_all(&rootfs)?;
    Ok(())
}

/// The Debian mirror this machine's apt uses (debootstrap needs one), else Debian's CDN.
fn debian_mirror() -> String {
    let sources = [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ];
    for path in sources {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            let url = line.strip_prefix("URIs:").map(str::trim).or_else(|| {
                line.strip_prefix("deb ")
                    .and_then(|rest| rest.split_whitespace().find(|w| w.starts_with("http")))
            });
            if let Some(url) = url.filter(|u| u.ends_with("/debian") || u.ends_with("/debian/")) {
                return url.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// Builds `p` with cross and returns the path of the binary (in `target/cross/`).
pub fn build(sh: &Shell, root: &Path, p: &Platform, config: &[String]) -> Result<PathBuf> {
    let engine = Engine::find(sh, root)?;
    // Before anything talks to the engine: podman's private storage holds the image.
    let _conf = engine.configure(sh);
    let cross = ensure_cross(sh, root)?;
    let image = BuilderImage::load(root)?;
    ensure_image(sh, root, &engine, &image)?;
    let tools_dir = root.join("target/tools");
    let zig_cache = tools::zig_cache_dir()?;
    crate::files::create_dir_all(&zig_cache)?;
    let _engine = sh.push_env("CROSS_CONTAINER_ENGINE", engine.program);
    let _toolchain = sh.push_env("CROSS_CUSTOM_TOOLCHAIN", "1");
    // The linker shim and zig (target/tools) and zig's cache, each at its own path.
    let opts = format!(
        "--network=none --pull=never -v {0}:{0} -v {1}:{1}",
        tools_dir.display(),
        zig_cache.display()
    );
    let _opts = sh.push_env("CROSS_CONTAINER_OPTS", opts);
    let triple = p.triple;
    let toolchain = format!("+{}", tools::NIGHTLY);
    // Its own target dir: a clean build in other paths (/project, /target) than zig's.
    let target_dir = root.join("target/cross");
    cmd!(sh, "{cross} {toolchain} build --locked --release -p pause --target {triple} --target-dir {target_dir} -Zbuild-std=std,panic_abort {config...}")
        .run()
        .context("cross failed")?;
    Ok(target_dir.join(triple).join("release/pause"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_toml_passes_the_version_into_the_container() {
        let root = crate::project_root();
        let cross_toml: toml::Table =
            toml::from_str(&std::fs::read_to_string(root.join("Cross.toml")).unwrap()).unwrap();
        let passthrough = cross_toml["build"]["env"]["passthrough"]
            .as_array()
            .unwrap();
        assert!(passthrough
            .iter()
            .any(|v| v.as_str() == Some("PAUSE_VERSION")));
    }

    #[test]
    fn cross_toml_names_the_builder_image_for_every_platform() {
        let root = crate::project_root();
        let image = BuilderImage::load(root).unwrap();
        let cross_toml: toml::Table =
            toml::from_str(&std::fs::read_to_string(root.join("Cross.toml")).unwrap()).unwrap();
        for p in crate::platform::PLATFORMS {
            let named = cross_toml["target"][p.triple]["image"].as_str();
            assert_eq!(
                named,
                Some(image.tag.as_str()),
                "Cross.toml's image for {}",
                p.triple
            );
        }
    }
}
