//! The macOS stub, proven further than `cargo check`: zig (through cargo-zigbuild)
//! links pause for both macOS targets here, with no Apple SDK, and each result must be
//! a Mach-O executable of the right CPU. (Running it needs a Mac: the macOS CI job
//! runs `cargo xtask smoke` there.)

use crate::{setup, tools};
use anyhow::{bail, Context, Result};
use object::{Architecture, BinaryFormat, Object, ObjectKind};
use xshell::{cmd, Shell};

/// Links pause for every macOS target and checks each binary's header; returns a line
/// per target.
pub fn link(sh: &Shell) -> Result<Vec<String>> {
    let root = sh.current_dir();
    let venv_bin = tools::ensure_zig(sh, &root)?;
    let zigbuild = venv_bin.join("cargo-zigbuild");
    let mut lines = Vec::new();
    for triple in setup::MACOS_TARGETS {
        // zig's SDK-less link warns that it cannot run xcrun; the header check below
        // is what decides.
        cmd!(
            sh,
            "{zigbuild} zigbuild +stable --locked -q --release -p pause --target {triple}"
        )
        .env("PATH", path_with(&venv_bin)?)
        .quiet()
        .ignore_stderr()
        .run()
        .with_context(|| format!("zig could not link pause for {triple}"))?;
        let binary = root.join("target").join(triple).join("release/pause");
        let bytes =
            std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
        lines.push(format!("{triple}: {}", check(&bytes, triple)?));
    }
    Ok(lines)
}

/// The CPU a macOS target's binary must be for.
fn architecture(triple: &str) -> Result<Architecture> {
    match triple.split('-').next() {
        Some("x86_64") => Ok(Architecture::X86_64),
        Some("aarch64") => Ok(Architecture::Aarch64),
        _ => bail!("no CPU known for macOS target {triple}"),
    }
}

/// `bytes` is a Mach-O executable for `triple`'s CPU; says so in a few words.
fn check(bytes: &[u8], triple: &str) -> Result<String> {
    let file =
        object::File::parse(bytes).with_context(|| format!("parsing the {triple} binary"))?;
    let wanted = architecture(triple)?;
    if file.format() != BinaryFormat::MachO
        || file.kind() != ObjectKind::Executable
        || file.architecture() != wanted
    {
        bail!(
            "the {triple} binary is a {:?} {:?} for {:?}, not a Mach-O executable for {wanted:?}",
            file.format(),
            file.kind(),
            file.architecture()
        );
    }
    Ok(format!(
        "Mach-O executable, {wanted:?}, {} bytes",
        bytes.len()
    ))
}

/// PATH with the venv first: cargo-zigbuild finds `python-zig`/`zig` there.
fn path_with(venv_bin: &std::path::Path) -> Result<std::ffi::OsString> {
    let mut paths = vec![venv_bin.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).context("a venv path that cannot be in PATH")
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_elf_is_no_mach_o() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = super::check(&me, "x86_64-apple-darwin")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Mach-O executable"), "{err}");
        assert!(super::architecture("riscv64gc-apple-darwin").is_err());
    }
}
