//! The command line of `cargo xtask`: one struct per command, run by its module.

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, verify, package and publish the pause image"
)]
pub(crate) struct Xtask {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    Build(Build),
    Verify(Verify),
    Image(Image),
    Push(Push),
    E2e(E2e),
    Bench(Bench),
    Release(Release),
    Smoke(Smoke),
    Ci(Ci),
    CiMatrix(CiMatrix),
}

/// Build static pause binaries into target/dist/pause-linux-<arch>.
#[derive(Parser)]
pub(crate) struct Build {
    /// Comma-separated architectures from the platform table, or `all`.
    #[arg(long, default_value = "all")]
    pub(crate) arch: String,
    /// The version `pause -v` prints and the image is tagged with (an OCI tag).
    /// Default: derived from `git describe` (see README).
    #[arg(long)]
    pub(crate) version: Option<String>,
    #[arg(long, value_enum, default_value_t = Builder::Auto)]
    pub(crate) builder: Builder,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub(crate) enum Builder {
    /// zig: it needs no container engine, and cross gives the same bytes anyway.
    Auto,
    /// nightly build-std, linked by zig: every arch, no container engine.
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
pub(crate) struct Image {
    /// The version (an OCI tag); default derived from git, as for `build`.
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// Architectures; default: the platforms in images/pause/image.toml.
    #[arg(long)]
    pub(crate) arch: Option<String>,
    /// Where the OCI layout goes.
    #[arg(long)]
    pub(crate) output: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value_t = Builder::Auto)]
    pub(crate) builder: Builder,
}

/// Push an image layout to a registry: blobs, manifests, index, tags, SBOM referrers.
#[derive(Parser)]
pub(crate) struct Push {
    /// The OCI layout to push (default target/oci/pause).
    #[arg(long)]
    pub(crate) layout: Option<std::path::PathBuf>,
    /// Where to: REGISTRY/REPO[:TAG]; the tag defaults to the layout's VERSION.
    #[arg(long)]
    pub(crate) to: String,
    /// Docker-format auth file; default REGISTRY_AUTH_FILE, then ~/.docker/config.json.
    #[arg(long)]
    pub(crate) authfile: Option<std::path::PathBuf>,
    /// Allow plain HTTP to a registry that is not on loopback.
    #[arg(long)]
    pub(crate) insecure: bool,
}

/// End-to-end checks with real components on loopback: registry, skopeo, umoci, runtimes.
#[derive(Parser)]
pub(crate) struct E2e {
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// Architectures; default: the platforms in images/pause/image.toml.
    #[arg(long)]
    pub(crate) arch: Option<String>,
}

/// Measure sizes, memory, stop latency, start-up and reaping, beside a baseline.
#[derive(Parser)]
pub(crate) struct Bench {
    /// A second pause binary (native), e.g. pause.c built with `gcc -Os -static`.
    #[arg(long)]
    pub(crate) baseline: Option<std::path::PathBuf>,
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// Fewer runs and smaller N: a smoke test that the bench still works.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Rewrite README.md's Performance section from this run.
    #[arg(long)]
    pub(crate) update_readme: bool,
}

/// Run each dist binary under qemu-user: -v, signals, reaping as PID 1.
#[derive(Parser)]
pub(crate) struct Verify {
    #[arg(long, default_value = "all")]
    pub(crate) arch: String,
}

/// The whole test suite: fmt, clippy, tests, macOS checks, every arch under qemu, e2e.
#[derive(Parser)]
pub(crate) struct Ci {
    /// Run one part only (the CI workflow splits the suite into jobs).
    #[arg(long, value_enum, default_value_t = Stage::All)]
    pub(crate) stage: Stage,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub(crate) enum Stage {
    /// fmt, clippy, unit and integration tests, macOS check, workflow linters.
    Checks,
    /// Build every arch, verify each under qemu, check reproducibility.
    Arches,
    /// e2e and the release dry run.
    E2e,
    All,
}

/// Build, assemble and push the release (what .github/workflows/release.yml runs).
#[derive(Parser)]
pub(crate) struct Release {
    /// REGISTRY/REPO to push to, e.g. ghcr.io/OWNER/pause.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Push to a registry started on loopback instead; skip signing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[arg(long)]
    pub(crate) version: Option<String>,
    #[arg(long, value_enum, default_value_t = Builder::Auto)]
    pub(crate) builder: Builder,
}

/// Build pause for this machine and run it: -v, then SIGTERM → exit 0 (macOS CI).
#[derive(Parser)]
pub(crate) struct Smoke {}

/// Print the CI build matrix (from the platform table) as JSON.
#[derive(Parser)]
pub(crate) struct CiMatrix {}
