//! `cargo xtask release`: what the release workflow does, minus signing.
//!
//! Build every described arch, assemble the image, push it (with per-arch tags and
//! SBOM referrers), check what the registry serves, and lay out the release assets:
//! binaries, SBOMs and SHA256SUMS in `target/publish/`, the index digest in
//! `target/publish/digest` for cosign. (Not `target/release/`: that is cargo's own, and
//! clearing it would throw away every build script and force full rebuilds.) `--dry-run` pushes to a docker-registry it starts
//! on loopback instead and says that signing is skipped.

use crate::image::description::ImageDescription;
use crate::{build, flags, image, push, version};
use anyhow::{bail, ensure, Context, Result};
use oci_spec::image::ImageIndex;
use xshell::{cmd, Shell};

impl flags::Release {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        let root = sh.current_dir();
        let desc = ImageDescription::load(&root)?;
        let version = version::resolve(sh, self.version)?;
        let platforms = desc.platforms()?;
        let binaries = build::build(sh, &platforms, &version, self.builder)?;
        let layout = image::default_output(&root, &desc);
        let assembled = image::assemble(sh, &desc, &binaries, &version, &layout, &mut || Ok(()))?;
        let out = root.join("target/publish");
        if out.exists() {
            std::fs::remove_dir_all(&out)?;
        }
        let assets = out.join("assets");
        std::fs::create_dir_all(&assets)?;

        // Binaries, SBOMs and their checksums: what the GitHub release carries.
        let mut sums = String::new();
        for (bin, arch) in binaries.iter().zip(&assembled.arches) {
            let name = bin.platform.dist_name;
            std::fs::copy(&bin.path, assets.join(name))?;
            sums.push_str(&format!("{}  {name}\n", bin.sha256));
            let sbom = sbom_bytes(&layout, &arch.sbom)?;
            let sbom_name = format!("{name}.spdx.json");
            sums.push_str(&format!("{}  {sbom_name}\n", build::sha256_hex(&sbom)));
            std::fs::write(assets.join(sbom_name), sbom)?;
        }
        std::fs::write(out.join("SHA256SUMS"), &sums)?;
        std::fs::write(assets.join("SHA256SUMS"), &sums)?;
        let digest = assembled.index.digest().to_string();
        std::fs::write(out.join("digest"), &digest)?;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        if self.dry_run {
            let dir = root.join("target/publish-dry-run");
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            let registry = crate::e2e::registry::Registry::start(sh, &dir.join("registry"))?;
            let authfile = registry.authfile(crate::e2e::registry::PASSWORD)?;
            let to = format!("{}/pause", registry.host);
            let pushed = rt.block_on(push::push(&layout, &to, Some(&authfile), false, None))?;
            ensure!(pushed == digest, "pushed {pushed}, layout has {digest}");
            check_referrers(sh, &to, &registry, &assembled)?;
            println!(
                "ok release dry run: {to}:{version} {digest}; every arch's SBOM is a referrer"
            );
            println!("skipped: cosign keyless signing (it needs GitHub's OIDC token; the release workflow signs {digest})");
        } else {
            let Some(to) = self.to else {
                bail!("release needs --to REGISTRY/REPO, or --dry-run")
            };
            let authfile = sh
                .var_os("REGISTRY_AUTH_FILE")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    sh.var_os("HOME")
                        .map(|h| std::path::Path::new(&h).join(".docker/config.json"))
                        .filter(|p| p.is_file())
                });
            let pushed = rt.block_on(push::push(&layout, &to, authfile.as_deref(), false, None))?;
            ensure!(pushed == digest, "pushed {pushed}, layout has {digest}");
            println!("released {to}:{version} {digest}");
        }
        println!(
            "assets in {} (SHA256SUMS, binaries, SBOMs); digest in {}",
            assets.display(),
            out.join("digest").display()
        );
        Ok(())
    }
}

fn sbom_bytes(
    layout: &std::path::Path,
    sbom_manifest: &oci_spec::image::Descriptor,
) -> Result<Vec<u8>> {
    let read = |digest: &str| crate::image::layout::read_blob(layout, digest);
    let manifest: oci_spec::image::ImageManifest =
        serde_json::from_slice(&read(sbom_manifest.digest().as_ref())?)?;
    let layer = manifest
        .layers()
        .first()
        .context("the SBOM artifact has no layer")?;
    read(layer.digest().as_ref())
}

/// Each arch manifest's referrers fallback tag lists its SBOM.
fn check_referrers(
    sh: &Shell,
    to: &str,
    registry: &crate::e2e::registry::Registry,
    assembled: &image::Assembled,
) -> Result<()> {
    let creds = format!(
        "{}:{}",
        crate::e2e::registry::USER,
        crate::e2e::registry::PASSWORD
    );
    let _ = registry;
    for arch in &assembled.arches {
        let fallback = arch.manifest.digest().to_string().replace(':', "-");
        let raw = cmd!(
            sh,
            "skopeo inspect --raw --tls-verify=false --creds {creds} docker://{to}:{fallback}"
        )
        .quiet()
        .output()?
        .stdout;
        let index: ImageIndex =
            serde_json::from_slice(&raw).with_context(|| format!("{fallback} is not an index"))?;
        ensure!(
            index
                .manifests()
                .iter()
                .any(|d| d.digest() == arch.sbom.digest()),
            "{fallback} does not list the {} SBOM",
            arch.arch
        );
    }
    Ok(())
}
