//! The publishing commands' flags (reached through `cargo xtask push|release|reproduce`):
//! each input typed where it enters, so commands never see an unparsed one.

use crate::registry::{self, Options, Target};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use xshell::Shell;
use xtask::flags::Builder;
use xtask::version::Version;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Publish the pause image and check published ones"
)]
pub struct Publish {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    Push(Push),
    Release(Release),
    Reproduce(Reproduce),
}

/// How to reach a registry: credentials, plain HTTP, the deadline of each request.
#[derive(Args, Clone)]
pub struct RegistryArgs {
    /// Docker-format auth file; default REGISTRY_AUTH_FILE, else
    /// $XDG_RUNTIME_DIR/containers/auth.json, then $DOCKER_CONFIG/config.json
    /// (~/.docker/config.json).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// Allow plain HTTP to a registry that is not on loopback.
    #[arg(long)]
    pub insecure: bool,
    /// Seconds one request may take, body and all, before it counts as failed.
    #[arg(long, value_name = "SECONDS", default_value_t = registry::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

impl RegistryArgs {
    pub fn options(&self, sh: &Shell) -> Options {
        Options {
            authfiles: registry::credentials::auth_files(sh, self.authfile.clone()),
            insecure: self.insecure,
            timeout: Duration::from_secs(self.timeout),
        }
    }
}

/// Push an image layout to a registry: blobs, manifests, SBOM referrers, per-arch
/// tags, then the VERSION tag.
#[derive(Parser)]
pub struct Push {
    /// The OCI layout to push (default target/oci/pause).
    #[arg(long)]
    pub layout: Option<PathBuf>,
    /// Where to: REGISTRY/REPO[:TAG]; the tag defaults to the layout's VERSION.
    #[arg(long)]
    pub to: Target,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Rebuild a published image from the revision and time it carries, and compare it
/// blob for blob: exit 0 identical, 1 differs, 2 could not run.
#[derive(Parser)]
pub struct Reproduce {
    /// REGISTRY/REPO:TAG, REGISTRY/REPO@sha256:…, oci:DIR[:TAG] or oci-archive:FILE[:NAME].
    #[arg(value_name = "REF")]
    pub reference: crate::reproduce::published::Location,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Build, assemble and push the release (what .github/workflows/release.yml runs).
#[derive(Parser)]
#[command(group = clap::ArgGroup::new("where").required(true).args(["to", "dry_run"]))]
pub struct Release {
    /// REGISTRY/REPO to push to, e.g. ghcr.io/OWNER/pause (tagged VERSION).
    #[arg(long)]
    pub to: Option<Target>,
    /// Push to a registry started on loopback instead (by the harness); skip signing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub version: Option<Version>,
    #[arg(long, value_enum, default_value_t = Builder::Zig)]
    pub builder: Builder,
    /// Seconds one registry request may take, body and all.
    #[arg(long, value_name = "SECONDS", default_value_t = registry::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}
