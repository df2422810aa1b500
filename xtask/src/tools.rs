//! The toolchain the build needs, installed on demand with a message for each step.
//!
//! Pinned here, and only here, so that the same source gives the same bytes on any
//! machine on any day: the nightly toolchain by date (build-std, immediate-abort
//! panics; a newer nightly makes a different binary), and zig (the musl linker for
//! every arch) with cargo-zigbuild, both from PyPI into `target/tools/venv`. A test
//! fails when another file names a different nightly.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

/// The toolchain that builds the release binaries (it must have `rust-src`):
/// rustc 1.97.0-nightly (e50aa6fba 2026-05-19).
pub const NIGHTLY: &str = "nightly-2026-05-20";
/// PyPI pins: zig 0.15.1 links musl for every arch in the platform table.
const ZIG_VERSION: &str = "0.15.1";
const ZIGLANG: &str = "ziglang==0.15.1";
const CARGO_ZIGBUILD: &str = "cargo-zigbuild==0.24.1";

/// What built a binary, recorded beside it for the SBOM and for re-deriving digests.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ToolVersions {
    /// The rustup toolchain's name, [`NIGHTLY`] for the zig and cross builders.
    pub toolchain: String,
    pub rustc: String,
    pub linker: String,
}

/// Fails with the install command when `tool` is not on PATH.
pub fn require(sh: &Shell, tool: &str, install: &str) -> Result<()> {
    if find_on_path(sh, tool).is_none() {
        bail!("{tool} not found; install it with `{install}`");
    }
    Ok(())
}

pub fn find_on_path(sh: &Shell, tool: &str) -> Option<PathBuf> {
    let path = sh.var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Makes sure the pinned nightly and its `rust-src` are there, installing what is
/// missing; returns `rustc -V`.
pub fn ensure_nightly(sh: &Shell) -> Result<String> {
    let toolchain = NIGHTLY;
    if !installed_toolchains(sh)?
        .iter()
        .any(|t| t.starts_with(toolchain))
    {
        eprintln!("installing the pinned toolchain {toolchain} with rust-src (build-std needs std's source)");
        cmd!(
            sh,
            "rustup toolchain install {toolchain} --profile minimal --component rust-src"
        )
        .run()
        .with_context(|| format!("installing {toolchain} failed; check the network, or run `rustup toolchain install {toolchain} --profile minimal --component rust-src`"))?;
    }
    ensure_component(sh, toolchain, "rust-src")?;
    // No auto-install here: the toolchain is there now, and a failure must say so.
    let _no_install = sh.push_env("RUSTUP_AUTO_INSTALL", "0");
    cmd!(sh, "rustup run {toolchain} rustc -V")
        .quiet()
        .read()
        .with_context(|| format!("running rustc from {toolchain}; reinstall it with `rustup toolchain install {toolchain} --profile minimal --component rust-src`"))
}

fn installed_toolchains(sh: &Shell) -> Result<Vec<String>> {
    let list = cmd!(sh, "rustup toolchain list")
        .quiet()
        .read()
        .context("rustup is needed to build pause; install it from https://rustup.rs")?;
    Ok(list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Makes sure a rustup component (rustfmt, clippy, rust-src) is installed for `toolchain`.
pub fn ensure_component(sh: &Shell, toolchain: &str, component: &str) -> Result<()> {
    let installed = cmd!(
        sh,
        "rustup component list --toolchain {toolchain} --installed"
    )
    .quiet()
    .read()
    .with_context(|| format!("listing the components of {toolchain}"))?;
    if !installed.lines().any(|line| line.starts_with(component)) {
        eprintln!("installing the {component} component for {toolchain}");
        cmd!(sh, "rustup component add --toolchain {toolchain} {component}")
            .run()
            .with_context(|| format!("installing {component} failed; run `rustup component add --toolchain {toolchain} {component}`"))?;
    }
    Ok(())
}

/// Makes sure a rustup target's prebuilt std is installed for `toolchain`.
pub fn ensure_target(sh: &Shell, toolchain: &str, triple: &str) -> Result<()> {
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
pub fn ensure_zig(sh: &Shell, root: &Path) -> Result<PathBuf> {
    ensure_venv(sh, root, "venv", &[ZIGLANG, CARGO_ZIGBUILD])
}

/// A venv `target/tools/<name>` with exactly `pins` from PyPI; returns its bin dir.
/// A stamp file of the pins makes the second call free.
pub fn ensure_venv(sh: &Shell, root: &Path, name: &str, pins: &[&str]) -> Result<PathBuf> {
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

/// `text` in single quotes, as the linker shim (sh) and cargo's `--config` (TOML
/// literal strings) both read them. Neither can hold a `'` there (TOML has no escape
/// in a literal string) nor a line break: such a path is one line saying so, never a
/// build that breaks further on.
pub fn single_quoted(text: &str) -> Result<String> {
    if text.contains('\'') || text.contains('\n') {
        bail!(
            "{text:?} holds a quote or a line break, which the linker shim and cargo's --config cannot quote; move the project (or CARGO_HOME, or the toolchain) to a path without one"
        );
    }
    Ok(format!("'{text}'"))
}

/// Writes the linker shim for `p`: `cargo-zigbuild zig cc` (which fixes up rustc's
/// arguments for zig) with zig's target and CPU from the platform table. Both builders
/// link through it, the cross builder from inside its container (the project is
/// mounted there), so both give the same bytes. Both programs are static binaries.
pub fn zig_linker(root: &Path, venv_bin: &Path, p: &crate::platform::Platform) -> Result<PathBuf> {
    let zig = find_zig(&venv_bin.join(".."))?;
    let shim_dir = root.join("target/tools/linkers");
    crate::files::create_dir_all(&shim_dir)?;
    let shim = shim_dir.join(format!("zigcc-{}", p.triple));
    let cpu = p
        .zig_cpu
        .map(|cpu| format!(" '-mcpu={cpu}'"))
        .unwrap_or_default();
    let text = format!(
        "#!/bin/sh\n# Generated by cargo xtask (tools.rs): the linker for {triple}, shared by every builder.\n\
         export CARGO_ZIGBUILD_ZIG_VERSION={ZIG_VERSION}\nexport CARGO_ZIGBUILD_ZIG_COMMAND={zig}\n\
         export ZIG_GLOBAL_CACHE_DIR={cache}\n\
         exec {zigbuild} zig cc -- -g '-fno-sanitize=all'{cpu} -target {target} \"$@\"\n",
        triple = p.triple,
        zig = single_quoted(&zig.display().to_string())?,
        zigbuild = single_quoted(&venv_bin.join("cargo-zigbuild").display().to_string())?,
        target = p.zig_target,
        // One cache (musl's libc.a per target) for every builder, inside or outside a container.
        cache = single_quoted(&zig_cache_dir()?.display().to_string())?,
    );
    std::fs::write(&shim, text).with_context(|| format!("writing {}", shim.display()))?;
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(shim)
}

/// zig's global cache, where it keeps musl's libc.a for each target it links: zig's
/// own default place, `$XDG_CACHE_HOME/zig` or `~/.cache/zig`. Building that libc is
/// most of a cold build (about a CPU-minute per target), and it depends only on zig's
/// version, the target and the flags, so every clone on the machine shares it. The
/// cross builder mounts it at the same path.
pub fn zig_cache_dir() -> Result<PathBuf> {
    let cache_home = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set; zig needs a cache directory")?;
    Ok(cache_home.join("zig"))
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
pub fn zig_version(sh: &Shell, venv_bin: &Path) -> Result<String> {
    let zig = venv_bin.join("python-zig");
    Ok(format!("zig {}", cmd!(sh, "{zig} version").quiet().read()?))
}

/// The toolchain names in `text` that are not the pin: another dated nightly, or an
/// undated one where a toolchain is chosen (after `+`, `toolchain install`, `--toolchain`).
pub fn other_toolchains(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (idx, _) in text.match_indices("nightly") {
        let rest = &text[idx..];
        let dated = rest.get(..18).filter(|name| {
            name.as_bytes()[7] == b'-'
                && name[8..].bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                })
        });
        if let Some(name) = dated {
            if name != NIGHTLY {
                found.push(name.to_string());
            }
            continue;
        }
        let before = &text[..idx];
        let chooses = ["+", "toolchain install ", "--toolchain ", "channel = \""]
            .iter()
            .any(|prefix| before.ends_with(prefix));
        if chooses {
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let line_end = rest.find('\n').map_or(text.len(), |i| idx + i);
            found.push(text[line_start..line_end].trim().to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_single_quoted_or_refused() {
        assert_eq!(super::single_quoted("/work/main").unwrap(), "'/work/main'");
        for bad in ["/home/o'brien/pause", "/a\nb"] {
            let err = super::single_quoted(bad).unwrap_err().to_string();
            assert!(err.contains("cannot quote"), "{err}");
        }
    }

    use super::*;

    #[test]
    fn no_other_file_names_another_toolchain() {
        let root = crate::project_root();
        let files = std::process::Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(root)
            .output()
            .expect("git ls-files");
        assert!(files.status.success(), "git ls-files failed");
        let mut offenders = Vec::new();
        for name in files.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let name = String::from_utf8_lossy(name);
            let Ok(text) = std::fs::read_to_string(root.join(&*name)) else {
                continue;
            };
            for other in other_toolchains(&text) {
                offenders.push(format!("{name}: {other}"));
            }
        }
        assert!(
            offenders.is_empty(),
            "the toolchain is pinned in xtask/src/tools.rs ({NIGHTLY}); these name another: {offenders:#?}"
        );
    }

    #[test]
    fn other_dates_and_undated_choices_are_found() {
        // Spelled in pieces, so that this file does not name them itself.
        let other = concat!("night", "ly-2020-01-01");
        assert_eq!(other_toolchains(&format!("cargo +{other} build")), [other]);
        let undated = concat!("rustup toolchain install night", "ly --profile minimal");
        assert_eq!(other_toolchains(undated), [undated]);
        let plus = concat!("cargo +night", "ly build");
        assert_eq!(other_toolchains(plus), [plus]);
        assert!(other_toolchains(&format!("cargo +{NIGHTLY} build")).is_empty());
        assert!(other_toolchains("built by the nightly toolchain, nightly Rust").is_empty());
    }
}
