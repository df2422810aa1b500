//! The toolchain the build needs, installed on demand with a message for each step.
//!
//! Pinned here so that the same source gives the same bytes on any machine: the
//! nightly toolchain (build-std, immediate-abort panics) and zig (the musl linker for
//! every arch) with cargo-zigbuild, both from PyPI into `target/tools/venv`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

/// The toolchain that builds the release binaries (it must have `rust-src`).
pub(crate) const NIGHTLY: &str = "nightly";
/// PyPI pins: zig 0.15.1 links musl for every arch in the platform table.
const ZIG_VERSION: &str = "0.15.1";
const ZIGLANG: &str = "ziglang==0.15.1";
const CARGO_ZIGBUILD: &str = "cargo-zigbuild==0.24.1";

/// What built a binary, recorded beside it for the SBOM and for re-deriving digests.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct ToolVersions {
    pub(crate) rustc: String,
    pub(crate) linker: String,
}

/// Fails with the install command when `tool` is not on PATH.
pub(crate) fn require(sh: &Shell, tool: &str, install: &str) -> Result<()> {
    if find_on_path(sh, tool).is_none() {
        bail!("{tool} not found; install it with `{install}`");
    }
    Ok(())
}

pub(crate) fn find_on_path(sh: &Shell, tool: &str) -> Option<PathBuf> {
    let path = sh.var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Makes sure the nightly toolchain and its `rust-src` are there.
pub(crate) fn ensure_nightly(sh: &Shell) -> Result<String> {
    let toolchain = NIGHTLY;
    let rustc = cmd!(sh, "rustup run {toolchain} rustc -V").quiet().ignore_stderr().read().with_context(|| {
        format!("the {toolchain} toolchain is missing; install it with `rustup toolchain install {toolchain} --component rust-src`")
    })?;
    let installed = cmd!(
        sh,
        "rustup component list --toolchain {toolchain} --installed"
    )
    .quiet()
    .read()?;
    if !installed.lines().any(|line| line.starts_with("rust-src")) {
        eprintln!("installing rust-src for {toolchain} (build-std needs std's source)");
        cmd!(sh, "rustup component add rust-src --toolchain {toolchain}")
            .run()
            .with_context(|| format!("installing rust-src failed; run `rustup component add rust-src --toolchain {toolchain}`"))?;
    }
    Ok(rustc)
}

/// Makes sure a rustup target's prebuilt std is installed for `toolchain`.
pub(crate) fn ensure_target(sh: &Shell, toolchain: &str, triple: &str) -> Result<()> {
    let installed = cmd!(sh, "rustup target list --installed --toolchain {toolchain}")
        .quiet()
        .read()?;
    if !installed.lines().any(|line| line == triple) {
        eprintln!("installing the {triple} target for {toolchain}");
        cmd!(sh, "rustup target add --toolchain {toolchain} {triple}").run().with_context(|| {
            format!("rustup has no prebuilt std for {triple} on {toolchain}; use --builder zig, which builds std itself")
        })?;
    }
    Ok(())
}

/// The project-local Python venv holding zig and cargo-zigbuild; returns its bin dir.
pub(crate) fn ensure_zig(sh: &Shell, root: &Path) -> Result<PathBuf> {
    ensure_venv(sh, root, "venv", &[ZIGLANG, CARGO_ZIGBUILD])
}

/// A venv `target/tools/<name>` with exactly `pins` from PyPI; returns its bin dir.
/// A stamp file of the pins makes the second call free.
pub(crate) fn ensure_venv(sh: &Shell, root: &Path, name: &str, pins: &[&str]) -> Result<PathBuf> {
    let venv = root.join("target/tools").join(name);
    let bin = venv.join("bin");
    let stamp = venv.join("pins.txt");
    let wanted = pins.join("\n");
    if sh.read_file(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(bin);
    }
    require(sh, "python3", "apt-get install python3 python3-venv")?;
    eprintln!(
        "installing {} from PyPI into {}",
        pins.join(" "),
        venv.display()
    );
    cmd!(sh, "python3 -m venv {venv}")
        .run()
        .context("creating a venv failed; install it with `apt-get install python3-venv`")?;
    let pip = bin.join("pip");
    cmd!(
        sh,
        "{pip} install --quiet --disable-pip-version-check {pins...}"
    )
    .run()
    .with_context(|| {
        format!(
            "installing {} from PyPI failed; check the network",
            pins.join(" ")
        )
    })?;
    sh.write_file(&stamp, wanted)?;
    Ok(bin)
}

/// Writes the linker shim for `p`: `cargo-zigbuild zig cc` (which fixes up rustc's
/// arguments for zig) with zig's target and CPU from the platform table. Both builders
/// link through it, the cross builder from inside its container (the project is
/// mounted there), so both give the same bytes. Both programs are static binaries.
pub(crate) fn zig_linker(
    root: &Path,
    venv_bin: &Path,
    p: &crate::platform::Platform,
) -> Result<PathBuf> {
    let zig = find_zig(&venv_bin.join(".."))?;
    let shim_dir = root.join("target/tools/linkers");
    std::fs::create_dir_all(&shim_dir)?;
    let shim = shim_dir.join(format!("zigcc-{}", p.triple));
    let cpu = p
        .zig_cpu
        .map(|cpu| format!(" '-mcpu={cpu}'"))
        .unwrap_or_default();
    let text = format!(
        "#!/bin/sh\n# Generated by cargo xtask (tools.rs): the linker for {triple}, shared by every builder.\n\
         export CARGO_ZIGBUILD_ZIG_VERSION={ZIG_VERSION}\nexport CARGO_ZIGBUILD_ZIG_COMMAND='{zig}'\n\
         export ZIG_GLOBAL_CACHE_DIR='{cache}'\n\
         exec '{zigbuild}' zig cc -- -g '-fno-sanitize=all'{cpu} -target {target} \"$@\"\n",
        triple = p.triple,
        zig = zig.display(),
        zigbuild = venv_bin.join("cargo-zigbuild").display(),
        target = p.zig_target,
        // One cache (musl's libc.a per target) for every builder, inside or outside a container.
        cache = root.join("target/tools/zig-cache").display(),
    );
    std::fs::write(&shim, text).with_context(|| format!("writing {}", shim.display()))?;
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(shim)
}

/// The zig binary that the `ziglang` wheel ships inside the venv.
fn find_zig(venv: &Path) -> Result<PathBuf> {
    let lib = venv.join("lib");
    for python in std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
    {
        let zig = python.path().join("site-packages/ziglang/zig");
        if zig.is_file() {
            return Ok(std::fs::canonicalize(zig)?);
        }
    }
    bail!(
        "no zig binary under {}; delete target/tools/venv and run again",
        lib.display()
    )
}

/// `zig version` from the venv, for the build record.
pub(crate) fn zig_version(sh: &Shell, venv_bin: &Path) -> Result<String> {
    let zig = venv_bin.join("python-zig");
    Ok(format!("zig {}", cmd!(sh, "{zig} version").quiet().read()?))
}
