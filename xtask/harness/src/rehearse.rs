//! `cargo xtask release --dry-run`: the release path end to end, pushed to a
//! docker-registry started on loopback, then each arch's SBOM found as a referrer.

use crate::e2e::registry::{Registry, PASSWORD, USER};
use crate::flags;
use anyhow::{ensure, Context, Result};
use oci_spec::image::ImageIndex;
use xshell::{cmd, Shell};
use xtask_publish::release::Prepared;

impl flags::Rehearse {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let release = Prepared::new(sh, self.version, self.builder)?;
        let dir = sh.current_dir().join("target/publish-dry-run");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let registry = Registry::start(sh, &dir.join("registry"))?;
        let authfile = registry.authfile(PASSWORD)?;
        let to = format!("{}/pause", registry.host);
        release.push(&to.parse()?, &crate::e2e::registry::options(&authfile))?;
        check_referrers(sh, &to, &release)?;
        println!(
            "ok release dry run: {to}:{} {}; every arch's SBOM is a referrer",
            release.version, release.digest
        );
        println!(
            "skipped: cosign keyless signing (it needs GitHub's OIDC token; the release workflow signs {})",
            release.digest
        );
        release.print_assets();
        Ok(())
    }
}

/// Each arch manifest's referrers fallback tag lists its SBOM.
fn check_referrers(sh: &Shell, to: &str, release: &Prepared) -> Result<()> {
    let creds = format!("{USER}:{PASSWORD}");
    for arch in &release.assembled.arches {
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
