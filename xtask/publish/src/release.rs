//! `cargo xtask release`: what the release workflow does, minus signing.
//!
//! Build every described arch, assemble the image, lay out the release assets
//! (binaries, SBOMs and SHA256SUMS in `target/publish/`, the index digest in
//! `target/publish/digest` for cosign), push it with per-arch tags and SBOM referrers,
//! and check the digest the registry serves. (Not `target/release/`: that is cargo's
//! own, and clearing it would throw away every build script and force full rebuilds.)
//! `--dry-run` is the harness's: it pushes to a docker-registry it starts on loopback.

use crate::registry::Options;
use crate::registry::Target;
use crate::{flags, push};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use xshell::Shell;
use xtask::build;
use xtask::image::description::ImageDescription;
use xtask::image::{self, Assembled};
use xtask::version::{self, Version};

impl flags::Release {
    pub fn run(self, sh: &Shell) -> Result<()> {
        if self.dry_run {
            let mut args = vec![
                "rehearse".to_string(),
                "--builder".to_string(),
                self.builder.to_string(),
            ];
            if let Some(version) = self.version {
                args.extend(["--version".to_string(), version.to_string()]);
            }
            return xtask::programs::Program::Harness.run(sh, &args);
        }
        let Some(to) = self.to else {
            bail!("release needs --to REGISTRY/REPO, or --dry-run")
        };
        let release = BuiltRelease::new(sh, self.version, self.builder)?;
        let options = Options {
            authfiles: crate::registry::credentials::auth_files(sh, None),
            insecure: false,
            timeout: Duration::from_secs(self.timeout),
        };
        release.push(&to, &options)?;
        println!("released {to}:{} {}", release.version, release.digest);
        release.print_assets();
        Ok(())
    }
}

/// A release built, assembled and laid out in `target/publish/`, ready to push.
pub struct BuiltRelease {
    pub version: Version,
    pub layout: PathBuf,
    pub assembled: Assembled,
    pub digest: String,
    pub out: PathBuf,
}

impl BuiltRelease {
    pub fn new(
        sh: &Shell,
        version: Option<Version>,
        builder: xtask::flags::Builder,
    ) -> Result<BuiltRelease> {
        let root = sh.current_dir();
        let description = ImageDescription::load(&root)?;
        let version = version::resolve(sh, version)?;
        let binaries = build::build(sh, &description.platforms()?, &version, builder)?;
        let layout = image::default_output(&root, &description);
        let sources = image::Sources::of_tree(sh, &description, &binaries, &version)?;
        let assembled = image::assemble(sh, &sources, &layout)?;
        let out = root.join("target/publish");
        if out.exists() {
            std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
        }
        let assets = out.join("assets");
        xtask::files::create_dir_all(&assets)?;

        // Binaries, SBOMs and their checksums: what the GitHub release carries.
        let mut sums = String::new();
        for bin in &binaries {
            let name = bin.platform.dist_name;
            let arch = assembled
                .arches
                .iter()
                .find(|a| a.arch == bin.platform.arch)
                .with_context(|| format!("the image has no {} entry", bin.platform.arch))?;
            xtask::files::copy(&bin.path, assets.join(name))?;
            sums.push_str(&format!("{}  {name}\n", bin.sha256));
            let sbom = sbom_bytes(&layout, &arch.sbom)?;
            let sbom_name = format!("{name}.spdx.json");
            sums.push_str(&format!("{}  {sbom_name}\n", build::sha256_hex(&sbom)));
            xtask::files::write(assets.join(sbom_name), sbom)?;
        }
        xtask::files::write(out.join("SHA256SUMS"), &sums)?;
        xtask::files::write(assets.join("SHA256SUMS"), &sums)?;
        let digest = assembled.index.digest().to_string();
        xtask::files::write(out.join("digest"), &digest)?;
        Ok(BuiltRelease {
            version,
            layout,
            assembled,
            digest,
            out,
        })
    }

    /// Pushes the layout to `to` and checks that the registry holds the same index.
    pub fn push(&self, to: &Target, options: &Options) -> Result<()> {
        let pushed = crate::runtime()?.block_on(push::push(&self.layout, to, options))?;
        ensure!(
            pushed == self.digest,
            "pushed {pushed}, layout has {}",
            self.digest
        );
        Ok(())
    }

    pub fn print_assets(&self) {
        println!(
            "assets in {} (SHA256SUMS, binaries, SBOMs); digest in {}",
            self.out.join("assets").display(),
            self.out.join("digest").display()
        );
    }
}

fn sbom_bytes(layout: &Path, sbom_manifest: &oci_spec::image::Descriptor) -> Result<Vec<u8>> {
    let read = |digest: &str| xtask::image::layout::read_blob(layout, digest);
    let manifest: oci_spec::image::ImageManifest =
        serde_json::from_slice(&read(sbom_manifest.digest().as_ref())?)?;
    let layer = manifest
        .layers()
        .first()
        .context("the SBOM artifact has no layer")?;
    read(layer.digest().as_ref())
}
