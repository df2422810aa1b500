//! The command line of `cargo xtask`: one struct per command, run by its module.

use crate::platform::{self, Platform};
use crate::version::Version;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, verify, package and publish the pause image"
)]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    Build(Build),
    Verify(Verify),
    Image(Image),
    Push(Push),
    Reproduce(Reproduce),
    Setup(Setup),
    E2e(E2e),
    Bench(Bench),
    Release(Release),
    Smoke(Smoke),
    Ci(Ci),
    CiMatrix(CiMatrix),
}

/// Build static pause binaries into target/dist/pause-linux-<arch>.
#[derive(Parser)]
pub struct Build {
    #[command(flatten)]
    pub build: BuildArgs,
}

/// What every command that builds takes.
#[derive(Args)]
pub struct BuildArgs {
    /// Comma-separated architectures from the platform table, or `all`. Default: all
    /// for build, the platforms in images/pause/image.toml for image.
    #[arg(long)]
    pub arch: Option<Arches>,
    /// The version `pause -v` prints and the image is tagged with (an OCI tag).
    /// Default: derived from `git describe` (see README).
    #[arg(long)]
    pub version: Option<Version>,
    #[arg(long, value_enum, default_value_t = Builder::Zig)]
    pub builder: Builder,
}

/// `--arch`: rows of the platform table, in table order.
#[derive(Clone, Debug)]
pub struct Arches(pub Vec<&'static Platform>);

impl std::str::FromStr for Arches {
    type Err = anyhow::Error;

    fn from_str(spec: &str) -> anyhow::Result<Arches> {
        platform::select(spec).map(Arches)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Builder {
    /// nightly build-std, linked by zig: every arch, no container engine (the
    /// default; `auto` is the same).
    #[value(alias = "auto")]
    Zig,
    /// the zig build inside a Debian container, run by cross with podman or docker.
    Cross,
    /// plain stable cargo with rust-lld: only arches with a prebuilt musl std.
    Cargo,
}

impl std::fmt::Display for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            self.to_possible_value()
                .expect("no skipped variants")
                .get_name(),
        )
    }
}

/// Assemble the multi-arch OCI image layout (builds the binaries first).
#[derive(Parser)]
pub struct Image {
    #[command(flatten)]
    pub build: BuildArgs,
    /// Where the OCI layout goes.
    #[arg(long)]
    pub output: Option<std::path::PathBuf>,
    /// Also write the image as one OCI archive here, for `ctr images import`,
    /// `podman load` and `skopeo copy oci-archive:` on nodes with no registry.
    #[arg(long, value_name = "FILE")]
    pub archive: Option<std::path::PathBuf>,
    /// The full reference the archive names the image (what the runtime's sandbox
    /// image setting must say, character for character). Default: localhost/pause:VERSION.
    #[arg(long, value_name = "REF", requires = "archive")]
    pub name: Option<crate::image::archive::ImageName>,
}

/// Push an image layout to a registry: blobs, manifests, SBOM referrers, per-arch
/// tags, then the VERSION tag (run by the publishing crate).
#[derive(Parser)]
#[command(disable_help_flag = true)]
pub struct Push {
    /// Passed on: --to REGISTRY/REPO[:TAG] [--layout DIR] [--authfile F] [--insecure]
    /// [--timeout SECONDS]; `--help` shows them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Rebuild a published image from the revision and time it carries, and compare it
/// blob for blob: exit 0 identical, 1 differs, 2 could not run (run by the
/// publishing crate).
#[derive(Parser)]
#[command(disable_help_flag = true)]
pub struct Reproduce {
    /// Passed on: REF [--authfile F] [--insecure] [--timeout SECONDS]; `--help` shows them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Install what the test suite needs: Debian packages (as root, with apt-get), the
/// pinned toolchain, rustup components and targets, zig.
#[derive(Parser)]
pub struct Setup {}

/// End-to-end checks with real components on loopback (run by the harness crate).
#[derive(Parser)]
#[command(disable_help_flag = true)]
pub struct E2e {
    /// Passed to the harness: [--version V] [--arch LIST] [--check NAMES] [--list];
    /// `--help` shows them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Measure sizes, memory, stop latency, start-up and reaping (run by the harness crate).
#[derive(Parser)]
#[command(disable_help_flag = true)]
pub struct Bench {
    /// Passed to the harness: [--baseline NAME=COMMAND]… [--version V] [--quick]
    /// [--update-readme]; `--help` shows them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Run each dist binary under qemu-user: -v, signals, reaping as PID 1.
#[derive(Parser)]
pub struct Verify {
    /// Comma-separated architectures from the platform table, or `all` (the default).
    #[arg(long)]
    pub arch: Option<Arches>,
}

/// The whole test suite, each stage once: set-up, fmt, clippy, tests, macOS check,
/// workflow lint, every arch built and verified under qemu, cross, e2e, release dry
/// run, bench.
#[derive(Parser)]
pub struct Ci {
    /// Run one part only (the CI workflow splits the suite into jobs).
    #[arg(long, value_enum, default_value_t = Stage::All)]
    pub stage: Stage,
    /// With the arches stage: only these (the CI matrix runs one job per arch).
    #[arg(long)]
    pub arch: Option<Arches>,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum Stage {
    /// fmt, clippy, unit and integration tests, macOS check, workflow linters.
    Checks,
    /// Build every arch, verify each under qemu, check reproducibility.
    Arches,
    /// e2e, the release dry run and the quick bench (beside catatonit).
    E2e,
    All,
}

/// Build, assemble and push the release, what .github/workflows/release.yml runs
/// (run by the publishing crate).
#[derive(Parser)]
#[command(disable_help_flag = true)]
pub struct Release {
    /// Passed on: (--to REGISTRY/REPO | --dry-run) [--version V] [--builder B]
    /// [--timeout SECONDS]; `--help` shows them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Build pause for this machine and run it: -v, then SIGTERM → exit 0 (macOS CI).
#[derive(Parser)]
pub struct Smoke {}

/// Print the CI build matrix (from the platform table) as JSON.
#[derive(Parser)]
pub struct CiMatrix {}
