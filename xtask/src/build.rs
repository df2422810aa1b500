//! `cargo xtask build`: static pause binaries for every platform, in `target/dist/`.
//!
//! Builders:
//! - `zig` (the default, no container engine): nightly with `-Zbuild-std` and
//!   immediate-abort panics, linked against musl by zig. One toolchain for every arch.
//! - `cross`: the same cargo invocation inside a builder container (see `cross.rs`).
//! - `cargo`: plain stable cargo with rust-lld; only where rustup has a prebuilt musl std.

use crate::elf;
use crate::flags::{self, Builder};
use crate::platform::{self, Platform};
use crate::tools::{self, ToolVersions};
use crate::version::{self, Version};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;
use xshell::{cmd, Shell};

/// One built binary in `target/dist/`.
#[derive(Clone)]
pub struct DistBinary {
    pub platform: &'static Platform,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// What a dist binary was built from, written beside it as `<dist_name>.json`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct BuildRecord {
    pub version: String,
    pub target: String,
    pub builder: String,
    pub tools: ToolVersions,
    pub sha256: String,
}

impl flags::Build {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let args = self.build;
        let platforms = match args.arch {
            Some(arches) => arches.0,
            None => platform::PLATFORMS.iter().collect(),
        };
        let version = version::resolve(sh, args.version)?;
        build(sh, &platforms, &version, args.builder)?;
        Ok(())
    }
}

pub fn dist_dir(sh: &Shell) -> PathBuf {
    sh.current_dir().join("target/dist")
}

/// Builds `platforms` in table order and returns the dist binaries.
pub fn build(
    sh: &Shell,
    platforms: &[&'static Platform],
    version: &Version,
    builder: Builder,
) -> Result<Vec<DistBinary>> {
    let root = sh.current_dir();
    let dist = dist_dir(sh);
    sh.create_dir(&dist)?;
    let toolchain = Toolchain::prepare(sh, &root, builder)?;
    let total = Instant::now();
    let names: Vec<&str> = platforms.iter().map(|p| p.arch).collect();
    eprintln!(
        "building {} arch(es) with {builder} (version {version}): {}",
        platforms.len(),
        names.join(" ")
    );
    // A failed build must not leave an older binary where a new one belongs.
    for p in platforms {
        let dist_path = dist.join(p.dist_name);
        remove_if_exists(&dist_path)?;
        remove_if_exists(&record_path(&dist_path))?;
    }
    let outputs = toolchain
        .build(sh, &root, platforms, version)
        .with_context(|| format!("building pause for {}", names.join(", ")))?;
    let mut built = Vec::new();
    for (idx, (p, out)) in platforms.iter().zip(outputs).enumerate() {
        let dist_path = dist.join(p.dist_name);
        let (size, sha256) = install(&out, &dist_path)?;
        let bin = DistBinary {
            platform: p,
            path: dist_path.clone(),
            size,
            sha256,
        };
        elf::check_static(&bin.path, p)?;
        let record = BuildRecord {
            version: version.to_string(),
            target: p.triple.to_string(),
            builder: builder.to_string(),
            tools: toolchain.versions.clone(),
            sha256: bin.sha256.clone(),
        };
        sh.write_file(
            record_path(&dist_path),
            serde_json::to_string_pretty(&record)?,
        )?;
        eprintln!(
            "[{}/{}] {}: {} {} bytes sha256:{}",
            idx + 1,
            platforms.len(),
            p.arch,
            bin.path.display(),
            bin.size,
            bin.sha256
        );
        built.push(bin);
    }
    eprintln!(
        "built {} binaries in {:.1}s:",
        built.len(),
        total.elapsed().as_secs_f64()
    );
    for bin in &built {
        let (arch, size, sha, path) =
            (bin.platform.arch, bin.size, &bin.sha256, bin.path.display());
        println!("{arch:<8} {size:>7} bytes  sha256:{sha}  {path}");
    }
    Ok(built)
}

pub fn record_path(dist_path: &Path) -> PathBuf {
    dist_path.with_extension("json")
}

pub fn read_record(dist_path: &Path) -> Result<BuildRecord> {
    let path = record_path(dist_path);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}; run `cargo xtask build` first", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Copies the cargo output to its dist path through a temporary file and a rename,
/// so the dist path holds either nothing or a whole binary. Returns size and sha256.
fn install(out: &Path, dist_path: &Path) -> Result<(u64, String)> {
    let bytes = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    let tmp = dist_path.with_extension("partial");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    // World-executable: the image runs it as USER 65535.
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .with_context(|| format!("making {} executable", tmp.display()))?;
    std::fs::rename(&tmp, dist_path)
        .with_context(|| format!("moving {} into place", dist_path.display()))?;
    Ok((bytes.len() as u64, sha256_hex(&bytes)))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A prepared builder: tools installed, versions known.
struct Toolchain {
    builder: Builder,
    versions: ToolVersions,
    /// The venv with zig and cargo-zigbuild (zig and cross builders).
    venv_bin: Option<PathBuf>,
}

impl Toolchain {
    fn prepare(sh: &Shell, root: &Path, builder: Builder) -> Result<Toolchain> {
        match builder {
            Builder::Zig | Builder::Cross => {
                // Both are downloads on a new machine: fetch them side by side.
                let (rustc, venv_bin) = std::thread::scope(|scope| {
                    let zig = scope.spawn(|| tools::ensure_zig(&crate::shell()?, root));
                    let rustc = tools::ensure_nightly(sh);
                    let venv_bin = zig
                        .join()
                        .map_err(|_| anyhow::anyhow!("installing zig panicked"))?;
                    Ok::<_, anyhow::Error>((rustc?, venv_bin?))
                })?;
                let linker = tools::zig_version(sh, &venv_bin)?;
                Ok(Toolchain {
                    builder,
                    versions: ToolVersions {
                        toolchain: tools::NIGHTLY.to_string(),
                        rustc,
                        linker,
                    },
                    venv_bin: Some(venv_bin),
                })
            }
            Builder::Cargo => {
                let rustc = cmd!(sh, "rustc +stable -V").quiet().read()?;
                let linker = "rust-lld (self-contained musl)".to_string();
                Ok(Toolchain {
                    builder,
                    versions: ToolVersions {
                        toolchain: "stable".to_string(),
                        rustc,
                        linker,
                    },
                    venv_bin: None,
                })
            }
        }
    }

    /// The linker shim for `p` (zig through cargo-zigbuild).
    fn linker(&self, root: &Path, p: &Platform) -> Result<PathBuf> {
        let venv_bin = self
            .venv_bin
            .as_deref()
            .context("this builder has no zig")?;
        tools::zig_linker(root, venv_bin, p)
    }

    /// Builds every platform and returns the paths of the binaries, in `platforms` order.
    /// The zig builder does it in one cargo invocation, so the targets' std builds and
    /// LTO share the cores; cross and cargo go one target at a time.
    fn build(
        &self,
        sh: &Shell,
        root: &Path,
        platforms: &[&'static Platform],
        version: &str,
    ) -> Result<Vec<PathBuf>> {
        let _env = sh.push_env("PAUSE_VERSION", version);
        let out = |p: &Platform| root.join("target").join(p.triple).join("release/pause");
        match self.builder {
            Builder::Zig => {
                let mut args = Vec::new();
                for p in platforms {
                    args.extend(["--target".to_string(), p.triple.to_string()]);
                    args.extend(release_config(sh, root, p, &self.linker(root, p)?)?);
                }
                let toolchain = format!("+{}", tools::NIGHTLY);
                // Not echoed: six targets' flags are kilobytes; cargo shows its progress.
                cmd!(sh, "cargo {toolchain} build --locked --release -p pause -Zbuild-std=std,panic_abort {args...}")
                    .quiet()
                    .run()?;
            }
            Builder::Cross => {
                return platforms
                    .iter()
                    .map(|p| {
                        let config = release_config(sh, root, p, &self.linker(root, p)?)?;
                        crate::cross::build(sh, root, p, &config)
                    })
                    .collect();
            }
            Builder::Cargo => {
                for p in platforms {
                    let triple = p.triple;
                    tools::ensure_target(sh, "stable", triple)?;
                    let linker = format!("target.{triple}.linker=\"rust-lld\"");
                    let flags = format!(
                        "target.{triple}.rustflags=['-Clink-self-contained=yes','-Ctarget-feature=+crt-static','--remap-path-prefix={}=/pause']",
                        root.display()
                    );
                    cmd!(sh, "cargo +stable build --locked --release -p pause --target {triple} --config {linker} --config {flags}")
                        .run()?;
                }
            }
        }
        platforms
            .iter()
            .map(|p| {
                let path = out(p);
                if !path.is_file() {
                    bail!("cargo finished but {} is missing", path.display());
                }
                Ok(path)
            })
            .collect()
    }
}

/// The `--config` arguments shared by the zig and cross builders: the linker shim, size
/// flags, and path remapping so the build directory, cargo home and toolchain leave no
/// trace.
pub fn release_config(sh: &Shell, root: &Path, p: &Platform, linker: &Path) -> Result<Vec<String>> {
    let triple = p.triple;
    let cargo_home = sh
        .var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", sh.var("HOME").unwrap_or_default()));
    let toolchain = tools::NIGHTLY;
    let sysroot = cmd!(sh, "rustc +{toolchain} --print sysroot")
        .quiet()
        .read()?;
    let rustflags = [
        "-Zunstable-options".to_string(),
        // No unwinding, no panic messages: std's panic machinery stays out.
        "-Cpanic=immediate-abort".to_string(),
        // zig supplies crt1.o and libc.a; rustc's own copies exist for few targets.
        "-Clink-self-contained=no".to_string(),
        // zig's lld warns about rustc's empty self-contained dir on every link.
        "-Alinker-messages".to_string(),
        // Host paths, and the ones cross mounts them at: the flags (and so the bytes)
        // are the same whichever builder runs.
        format!("--remap-path-prefix={}=/pause", root.display()),
        "--remap-path-prefix=/project=/pause".to_string(),
        format!("--remap-path-prefix={cargo_home}=/cargo"),
        format!("--remap-path-prefix={sysroot}=/rustc"),
        "--remap-path-prefix=/rust=/rustc".to_string(),
    ];
    let list = rustflags
        .iter()
        .map(|flag| crate::tools::single_quoted(flag))
        .collect::<Result<Vec<_>>>()?
        .join(",");
    let linker = crate::tools::single_quoted(&linker.display().to_string())?;
    Ok(vec![
        "--config".to_string(),
        format!("target.{triple}.linker={linker}"),
        "--config".to_string(),
        format!("target.{triple}.rustflags=[{list}]"),
    ])
}
