//! The image being checked, as it was published: from a registry or an OCI layout,
//! each digest that reproduce compares, and the annotations that say how to rebuild it.

use crate::registry::referrers::Referrers;
use crate::registry::{self, Access, Session};
use anyhow::{bail, Context, Result};
use oci_spec::distribution::Reference;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use xtask::image::layout::{self, Layout};
use xtask::platform::{self, Platform};

/// Where the published image is: `REGISTRY/REPO:TAG`, `REGISTRY/REPO@sha256:…`,
/// `oci:DIR[:TAG]`, or `oci-archive:FILE[:NAME]` (what `image --archive` writes).
#[derive(Clone, Debug)]
pub enum Location {
    Registry(Reference),
    Layout { dir: PathBuf, tag: Option<String> },
    Archive { file: PathBuf, name: Option<String> },
}

impl std::str::FromStr for Location {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Location> {
        Location::parse(text)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (prefix, path, name) = match self {
            Location::Registry(reference) => return write!(f, "{reference}"),
            Location::Layout { dir, tag } => ("oci", dir, tag),
            Location::Archive { file, name } => ("oci-archive", file, name),
        };
        write!(f, "{prefix}:{}", path.display())?;
        match name {
            Some(name) => write!(f, ":{name}"),
            None => Ok(()),
        }
    }
}

impl Location {
    pub fn parse(text: &str) -> Result<Location> {
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            // The name is a reference with colons of its own: the file ends at the
            // first colon, as skopeo reads `oci-archive:`.
            let (file, name) = match rest.split_once(':') {
                Some((file, name)) => (file, Some(name.to_string())),
                None => (rest, None),
            };
            if file.is_empty() || name.as_deref() == Some("") {
                bail!("invalid reference {text:?}: expected oci-archive:FILE[:NAME]");
            }
            return Ok(Location::Archive {
                file: PathBuf::from(file),
                name,
            });
        }
        let Some(rest) = text.strip_prefix("oci:") else {
            return Ok(Location::Registry(registry::parse_reference(text)?));
        };
        let (dir, tag) = registry::split_tag(rest);
        let tag = tag.map(str::to_string);
        if dir.is_empty() {
            bail!("invalid reference {text:?}: expected oci:DIR[:TAG]");
        }
        if let Some(tag) = &tag {
            xtask::version::validate(tag).with_context(|| format!("invalid reference {text:?}"))?;
        }
        Ok(Location::Layout {
            dir: PathBuf::from(dir),
            tag,
        })
    }
}

/// The image named `name` (or the only one) in the OCI archive `file`, unpacked for
/// the reading into `scratch` (removed after).
pub fn from_archive(file: &Path, name: Option<&str>, scratch: &Path) -> Result<PublishedImage> {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)
            .with_context(|| format!("clearing {}", scratch.display()))?;
    }
    let image = xtask::image::archive::unpack(file, scratch)
        .and_then(|()| from_layout(scratch, name))
        .with_context(|| format!("oci-archive:{}", file.display()));
    let _ = std::fs::remove_dir_all(scratch);
    image
}

/// One published image, digest for digest.
pub struct PublishedImage {
    pub index: String,
    pub annotations: HashMap<String, String>,
    pub platforms: Vec<PublishedPlatform>,
}

pub struct PublishedPlatform {
    pub platform: &'static Platform,
    pub manifest: String,
    pub config: String,
    pub layers: Vec<String>,
    /// The SBOM artifact whose subject is this manifest, where one is published.
    pub sbom: Option<String>,
}

/// The image tagged `tag` (or the only one) in the layout at `dir`.
pub fn from_layout(dir: &std::path::Path, tag: Option<&str>) -> Result<PublishedImage> {
    let layout = Layout::read(dir, tag)?;
    let index: ImageIndex = layout.json(&layout.index)?;
    let mut platforms = Vec::new();
    for desc in index.manifests() {
        let bytes = layout.blob(desc.digest().as_ref())?;
        let sbom = layout.sbom_of(desc)?.map(|d| d.digest().to_string());
        platforms.push(platform_image(desc, &bytes, sbom)?);
    }
    Ok(PublishedImage {
        index: layout.index.digest().to_string(),
        annotations: index.annotations().clone().unwrap_or_default(),
        platforms,
    })
}

/// The image `session.target` names, read from its registry.
pub async fn from_registry(session: &Session) -> Result<PublishedImage> {
    session.login(Access::Read).await?;
    let target = &session.target;
    let tag_or_digest = target.digest().or(target.tag()).unwrap_or("latest");
    let (bytes, digest) = pull(session, tag_or_digest).await?;
    let index: ImageIndex = serde_json::from_slice(&bytes).with_context(|| {
        format!("{target} is not an image index; reproduce checks multi-arch images")
    })?;
    let mut platforms = Vec::new();
    for desc in index.manifests() {
        let (bytes, _) = pull(session, desc.digest().as_ref()).await?;
        let sbom = sbom_of(session, desc).await?;
        platforms.push(platform_image(desc, &bytes, sbom)?);
    }
    Ok(PublishedImage {
        index: digest,
        annotations: index.annotations().clone().unwrap_or_default(),
        platforms,
    })
}

/// A manifest or index as the registry serves it, with the digest of those bytes
/// (checked against the digest asked for, if one was). Retried as push's requests are.
async fn pull(session: &Session, tag_or_digest: &str) -> Result<(Vec<u8>, String)> {
    let shown = session.at(tag_or_digest);
    let bytes = session
        .read(&format!("reading {shown}"), || {
            session.manifest(tag_or_digest)
        })
        .await?
        .with_context(|| format!("{} has no {shown}", session.host))?;
    // Our own digest of what came: the comparison must not trust the registry's word.
    let digest = format!("sha256:{}", xtask::build::sha256_hex(&bytes));
    if tag_or_digest.starts_with("sha256:") && tag_or_digest != digest {
        bail!("{} served bytes of {digest} for {shown}", session.host);
    }
    Ok((bytes, digest))
}

/// The SBOM listed under the referrers fallback tag of `manifest`. `None` only when
/// the registry says there is no such tag: no SBOM was published. Any other failure,
/// or a body that is no index, is an error (reproduce cannot say "identical").
async fn sbom_of(session: &Session, manifest: &Descriptor) -> Result<Option<String>> {
    let fallback = layout::referrers_tag(manifest);
    let Some(referrers) = Referrers::fetch(session, &fallback).await? else {
        return Ok(None);
    };
    let sbom_type = MediaType::Other(xtask::image::sbom::MEDIA_TYPE.to_string());
    Ok(referrers
        .descriptors()
        .iter()
        .find(|d| d.artifact_type().as_ref() == Some(&sbom_type))
        .map(|d| d.digest().to_string()))
}

/// One platform's digests: `desc` from the index, `bytes` its manifest.
fn platform_image(
    desc: &Descriptor,
    bytes: &[u8],
    sbom: Option<String>,
) -> Result<PublishedPlatform> {
    let named = desc
        .platform()
        .as_ref()
        .with_context(|| format!("index entry {} names no platform", desc.digest()))?;
    let (os, arch) = (named.os().to_string(), named.architecture().to_string());
    let variant = named.variant().as_deref();
    let platform = platform::by_oci(&os, &arch, variant).with_context(|| {
            let variant = variant.map(|v| format!("/{v}")).unwrap_or_default();
            format!(
                "the image has a {os}/{arch}{variant} entry, which the platform table does not know (known: {})",
                platform::known()
            )
        })?;
    let manifest: ImageManifest = serde_json::from_slice(bytes)
        .with_context(|| format!("parsing manifest {}", desc.digest()))?;
    Ok(PublishedPlatform {
        platform,
        manifest: desc.digest().to_string(),
        config: manifest.config().digest().to_string(),
        layers: manifest
            .layers()
            .iter()
            .map(|l| l.digest().to_string())
            .collect(),
        sbom,
    })
}

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn references_name_a_registry_or_a_layout() {
        match Location::parse("oci:target/oci/pause:3.10").unwrap() {
            Location::Layout { dir, tag } => {
                assert_eq!(dir.to_str(), Some("target/oci/pause"));
                assert_eq!(tag.as_deref(), Some("3.10"));
            }
            _ => panic!("a layout"),
        }
        match Location::parse("oci-archive:pause.tar:registry.example/pause:3.10").unwrap() {
            Location::Archive { file, name } => {
                assert_eq!(file.to_str(), Some("pause.tar"));
                assert_eq!(name.as_deref(), Some("registry.example/pause:3.10"));
            }
            _ => panic!("an archive"),
        }
        assert!(matches!(
            Location::parse("oci-archive:pause.tar").unwrap(),
            Location::Archive { name: None, .. }
        ));
        match Location::parse("oci:/tmp/x/pause").unwrap() {
            Location::Layout { tag, .. } => assert_eq!(tag, None),
            _ => panic!("a layout"),
        }
        assert!(matches!(
            Location::parse("ghcr.io/o/pause@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap(),
            Location::Registry(r) if r.digest().is_some()
        ));
        for bad in [
            "oci:",
            "oci:dir:bad tag",
            "Bad Ref",
            "pause",
            "oci-archive:",
            "oci-archive:f:",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }
}
