//! `cargo xtask release --dry-run`: the release path end to end, pushed to a
//! docker-registry started on loopback, then each arch's SBOM found as a referrer.

use crate::e2e::registry::{Registry, PASSWORD};
use crate::flags;
use anyhow::Result;
use xshell::Shell;
use xtask_publish::release::BuiltRelease;

impl flags::Rehearse {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let release = BuiltRelease::new(sh, self.version, self.builder)?;
        let dir = sh.current_dir().join("target/publish-dry-run");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let registry = Registry::start(sh, &dir.join("registry"))?;
        let authfile = registry.authfile(PASSWORD)?;
        let to = format!("{}/pause", registry.host);
        release.push(&to.parse()?, &crate::e2e::registry::options(&authfile))?;
        crate::e2e::sboms_are_referrers(sh, &to, &release.assembled.arches)?;
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
