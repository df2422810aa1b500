//! The macOS stub, proven further than `cargo check`: zig (through cargo-zigbuild)
//! links pause for both macOS targets here, with no Apple SDK, and each result must be
//! a Mach-O executable of the right CPU. (Running it needs a Mac: the macOS CI job
//! runs `cargo xtask smoke` there.)

use crate::{setup, tools};
use anyhow::{bail, Context, Result};
use object::macho;
use object::read::macho::MachHeader;
use object::Endianness;
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
        // is what decides. Stable: the toolchain with the Mac targets' std (setup).
        let out = cmd!(
            sh,
            "{zigbuild} zigbuild --locked -q --release -p pause --target {triple}"
        )
        .env("PATH", path_with(&venv_bin)?)
        .env("RUSTUP_TOOLCHAIN", "stable")
        .quiet()
        .ignore_status()
        .output()?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
            bail!(
                "zig could not link pause for {triple} ({}): {}",
                out.status,
                errors.join("; ")
            );
        }
        let binary = root.join("target").join(triple).join("release/pause");
        let bytes =
            std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
        lines.push(format!("{triple}: {}", check(&bytes, triple)?));
    }
    Ok(lines)
}

/// The Mach-O CPU type a macOS target's binary must have, and its name.
fn cpu_type(triple: &str) -> Result<(u32, &'static str)> {
    match triple.split('-').next() {
        Some("x86_64") => Ok((macho::CPU_TYPE_X86_64, "x86_64")),
        Some("aarch64") => Ok((macho::CPU_TYPE_ARM64, "arm64")),
        _ => bail!("no CPU known for macOS target {triple}"),
    }
}

/// `bytes` is a Mach-O executable for `triple`'s CPU (its header says so: magic,
/// `cputype`, `filetype`); says so in a few words. The header alone: object 0.37's
/// full parser stops at the section table zig writes here ("Invalid Mach-O number of
/// sections"); whether macOS runs it is the macOS CI job's `smoke` to say.
fn check(bytes: &[u8], triple: &str) -> Result<String> {
    let (wanted, cpu) = cpu_type(triple)?;
    let header = macho::MachHeader64::<Endianness>::parse(bytes, 0)
        .map_err(|err| anyhow::anyhow!("the {triple} binary is no 64-bit Mach-O: {err}"))?;
    let endian = header
        .endian()
        .map_err(|err| anyhow::anyhow!("the {triple} binary's Mach-O header: {err}"))?;
    let (cputype, filetype) = (header.cputype(endian), header.filetype(endian));
    if cputype != wanted || filetype != macho::MH_EXECUTE {
        bail!(
            "the {triple} binary is Mach-O cputype {cputype:#x} filetype {filetype}, not an executable ({}) for {cpu} ({wanted:#x})",
            macho::MH_EXECUTE
        );
    }
    Ok(format!(
        "Mach-O executable for {cpu}, {} bytes",
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
        assert!(err.contains("no 64-bit Mach-O"), "{err}");
        assert!(super::cpu_type("riscv64gc-apple-darwin").is_err());
    }
}
