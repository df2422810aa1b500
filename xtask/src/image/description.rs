//! `images/pause/image.toml`: what the image is, read by `image` and checked against the
//! Containerfile.

use crate::platform::{self, Platform};
use anyhow::{bail, Context, Result};
use std::path::Path;

pub const DESCRIPTION: &str = "images/pause/image.toml";
pub const CONTAINERFILE: &str = "images/pause/Containerfile";

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDescription {
    pub name: String,
    pub user: String,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub platforms: Vec<String>,
    pub annotations: DescribedAnnotations,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescribedAnnotations {
    pub title: String,
    pub description: String,
    pub licenses: String,
    pub source: String,
}

impl ImageDescription {
    pub fn load(root: &Path) -> Result<ImageDescription> {
        let path = root.join(DESCRIPTION);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let desc: ImageDescription =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        desc.platforms()?;
        Ok(desc)
    }

    /// The described platforms, as table rows.
    pub fn platforms(&self) -> Result<Vec<&'static Platform>> {
        self.platforms
            .iter()
            .map(|name| {
                platform::by_arch(name).with_context(|| {
                    format!("{DESCRIPTION} names platform {name:?}, which is not in the platform table ({})", platform::known())
                })
            })
            .collect()
    }

    /// Fails when the Containerfile says something other than this description.
    pub fn check_containerfile(&self, containerfile: &str) -> Result<()> {
        let instruction = |name: &str| {
            containerfile.lines().map(str::trim).find_map(|line| {
                line.strip_prefix(name)
                    .filter(|rest| rest.starts_with(' '))
                    .map(str::trim)
            })
        };
        let entrypoint = serde_json::to_string(&self.entrypoint)?;
        let expected = [
            ("FROM", "scratch"),
            ("USER", self.user.as_str()),
            ("WORKDIR", &self.working_dir),
            ("ENTRYPOINT", &entrypoint),
        ];
        for (name, want) in expected {
            let found = instruction(name);
            // JSON arrays compare as values, so spacing does not matter.
            let same = match (name, found) {
                ("ENTRYPOINT", Some(got)) => {
                    serde_json::from_str::<Vec<String>>(got).ok().as_ref() == Some(&self.entrypoint)
                }
                (_, Some(got)) => got == want,
                (_, None) => false,
            };
            if !same {
                bail!("{CONTAINERFILE} has {name} {found:?} but {DESCRIPTION} says {want:?}; make them agree");
            }
        }
        let binary = self.entrypoint.first().context("the entrypoint is empty")?;
        if !containerfile.lines().any(|line| {
            line.starts_with("ADD")
                && line.contains("--chmod=0755")
                && line.trim_end().ends_with(binary.as_str())
        }) {
            bail!("{CONTAINERFILE} must ADD the binary to {binary} with --chmod=0755");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> &'static Path {
        crate::project_root()
    }

    #[test]
    fn the_containerfile_agrees_with_the_description() {
        let desc = ImageDescription::load(root()).unwrap();
        let containerfile = std::fs::read_to_string(root().join(CONTAINERFILE)).unwrap();
        desc.check_containerfile(&containerfile).unwrap();
    }

    #[test]
    fn a_containerfile_that_drifts_is_caught() {
        let desc = ImageDescription::load(root()).unwrap();
        let containerfile = std::fs::read_to_string(root().join(CONTAINERFILE)).unwrap();
        for (from, to) in [
            ("USER 65535:65535", "USER 0:0"),
            ("[\"/pause\"]", "[\"/bin/pause\"]"),
            ("--chmod=0755 ", ""),
        ] {
            let drifted = containerfile.replace(from, to);
            assert_ne!(drifted, containerfile, "{from} not found");
            assert!(
                desc.check_containerfile(&drifted).is_err(),
                "{from} -> {to} went unnoticed"
            );
        }
    }

    #[test]
    fn every_described_platform_is_in_the_table_and_the_required_are_described() {
        let desc = ImageDescription::load(root()).unwrap();
        let described = desc.platforms().unwrap();
        for p in platform::PLATFORMS.iter().filter(|p| p.required) {
            assert!(
                described.iter().any(|d| d.arch == p.arch),
                "{} is required but not in the image",
                p.arch
            );
        }
    }
}
