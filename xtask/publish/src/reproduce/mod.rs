//! `cargo xtask reproduce REF`: rebuild a published image from the revision, version
//! and creation time it carries, and compare it with what was published, blob for blob.
//!
//! Prints one line per platform and a verdict; exits 0 when everything is identical,
//! 1 on any difference, 2 when it could not run (with one line saying why).

pub mod published;
pub mod rebuild;

use crate::flags;
use crate::registry::Session;
use anyhow::Result;
use published::{Location, PublishedImage, PublishedPlatform};
use rebuild::Provenance;
use xshell::Shell;

impl flags::Reproduce {
    pub fn run(self, sh: &Shell) -> Result<()> {
        match self.reproduce(sh) {
            Ok(true) => Ok(()),
            Ok(false) => Err(xtask::Exit(1).into()),
            Err(err) => {
                eprintln!("error: {err:#}");
                Err(xtask::Exit(2).into())
            }
        }
    }

    /// True when the rebuild is identical to the published image.
    fn reproduce(&self, sh: &Shell) -> Result<bool> {
        let published = match self.reference.clone() {
            Location::Layout { dir, tag } => published::from_layout(&dir, tag.as_deref())?,
            Location::Archive { file, name } => {
                let scratch = sh
                    .current_dir()
                    .join(format!("target/reproduce/archive-{}", std::process::id()));
                published::from_archive(&file, name.as_deref(), &scratch)?
            }
            Location::Registry(reference) => {
                let session = Session::new(reference, &self.registry.options(sh))?;
                crate::runtime()?.block_on(published::from_registry(&session))?
            }
        };
        let provenance = Provenance::of(&published.annotations)?;
        eprintln!(
            "{} is {}: version {}, revision {}",
            self.reference, published.index, provenance.version, provenance.revision
        );
        let platforms: Vec<_> = published.platforms.iter().map(|p| p.platform).collect();
        let layout = rebuild::rebuild(sh, &provenance, &platforms)?;
        let rebuilt = published::from_layout(&layout, Some(&provenance.version))?;
        Ok(report(&published, &rebuilt, &provenance))
    }
}

/// Prints a line per platform and the verdict; true when all is identical.
fn report(published: &PublishedImage, rebuilt: &PublishedImage, provenance: &Provenance) -> bool {
    let mut differing = 0;
    for theirs in &published.platforms {
        let arch = theirs.platform.arch;
        let Some(ours) = rebuilt.platforms.iter().find(|r| r.platform.arch == arch) else {
            println!("{arch} missing from the rebuild");
            differing += 1;
            continue;
        };
        match platform_line(theirs, ours) {
            Ok(line) => println!("{line}"),
            Err(line) => {
                println!("{line}");
                differing += 1;
            }
        }
    }
    let (theirs, ours, rev) = (&published.index, &rebuilt.index, &provenance.revision);
    let total = published.platforms.len();
    if differing == 0 && theirs == ours {
        println!("identical: {theirs} is what {rev} builds, for all {total} platforms");
        return true;
    }
    if differing == 0 {
        println!("differs: the index (published {theirs} rebuilt {ours}); every platform is identical, so its annotations differ");
    } else {
        println!(
            "differs: {differing} of {total} platforms; index published {theirs} rebuilt {ours}"
        );
    }
    false
}

/// `amd64 identical …`, or (as the error) `amd64 layer differs: …` naming the first
/// part that differs, from the layer up, and then the others that do.
fn platform_line(theirs: &PublishedPlatform, ours: &PublishedPlatform) -> Result<String, String> {
    let arch = theirs.platform.arch;
    let none = || "none".to_string();
    let parts = [
        ("layer", theirs.layers.join(","), ours.layers.join(",")),
        ("config", theirs.config.clone(), ours.config.clone()),
        ("manifest", theirs.manifest.clone(), ours.manifest.clone()),
        (
            "sbom",
            theirs.sbom.clone().unwrap_or_else(none),
            ours.sbom.clone().unwrap_or_else(none),
        ),
    ];
    let unpublished_sbom = theirs.sbom.is_none();
    let differ: Vec<_> = parts
        .iter()
        .filter(|(name, a, b)| a != b && !(*name == "sbom" && unpublished_sbom))
        .collect();
    let Some(((name, a, b), rest)) = differ.split_first() else {
        let note = if unpublished_sbom {
            " (no SBOM published to compare)"
        } else {
            ""
        };
        return Ok(format!("{arch} identical {}{note}", theirs.manifest));
    };
    let also = if rest.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = rest.iter().map(|(n, _, _)| *n).collect();
        format!("; so do its {}", names.join(", "))
    };
    Err(format!(
        "{arch} {name} differs: published {a} rebuilt {b}{also}"
    ))
}
