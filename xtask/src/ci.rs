//! `cargo xtask ci`: the whole test suite, as CI runs it; and `ci-matrix`.

use crate::{build, flags, platform, verify, version};
use anyhow::{Context, Result};
use xshell::{cmd, Shell};

/// macOS targets: the stub must compile (no linker needed for `cargo check`).
const MACOS_TARGETS: [&str; 2] = ["x86_64-apple-darwin", "aarch64-apple-darwin"];

impl flags::Ci {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        step("cargo fmt --check");
        cmd!(sh, "cargo fmt --all -- --check")
            .run()
            .context("code is not formatted; run `cargo fmt --all`")?;
        step("cargo clippy");
        cmd!(sh, "cargo clippy --locked --all-targets -- -D warnings")
            .run()
            .context("clippy found problems")?;
        step("cargo test (unit and pause integration tests)");
        cmd!(sh, "cargo test --locked --workspace")
            .run()
            .context("tests failed")?;
        step("cargo check for macOS (the stub)");
        for triple in MACOS_TARGETS {
            crate::tools::ensure_target(sh, "stable", triple)?;
            cmd!(sh, "cargo check --locked -q -p pause --target {triple}").run()?;
        }
        let version = version::resolve(sh, None)?;
        step(&format!("build every arch (version {version})"));
        let all: Vec<_> = platform::PLATFORMS.iter().collect();
        build::build(sh, &all, &version, flags::Builder::Zig)?;
        step("verify every arch under qemu");
        verify::verify(sh, &all)?;
        step("e2e: image, registry, skopeo, umoci, runtimes");
        flags::E2e {
            version: Some(version.clone()),
            arch: None,
        }
        .run(sh)?;
        eprintln!("ci: all steps passed");
        Ok(())
    }
}

fn step(name: &str) {
    eprintln!("\n==> {name}");
}

impl flags::CiMatrix {
    pub(crate) fn run(self, _sh: &Shell) -> Result<()> {
        let include: Vec<_> = platform::PLATFORMS
            .iter()
            .map(|p| serde_json::json!({ "arch": p.arch, "target": p.triple, "qemu": p.qemu, "required": p.required }))
            .collect();
        println!("{}", serde_json::json!({ "include": include }));
        Ok(())
    }
}
