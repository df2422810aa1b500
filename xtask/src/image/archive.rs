//! The image as one OCI archive (`--archive FILE`): the tar of a layout that holds
//! just the image, under the name the nodes will know it by, for air-gapped nodes
//! (`ctr -n k8s.io images import`, `podman load`, `skopeo copy oci-archive:`).
//!
//! What the runtimes need, as tried with them (containerd 1.6, podman 4.3):
//! - `index.json` lists exactly one entry, the image index. podman refuses an archive
//!   that lists more (the SBOM artifacts, named or not), and containerd registers each
//!   extra entry as an image of its own. The SBOMs stay in the layout and the registry.
//! - The name is in `org.opencontainers.image.ref.name` (podman, skopeo, and containerd
//!   for a full reference) and `io.containerd.image.name` (containerd), both the full
//!   reference. Neither runtime normalises a short name the way the other does:
//!   containerd stores `pause:3.10` as it is, while its CRI looks the sandbox image up
//!   as `docker.io/library/pause:3.10`, and podman stores it as `localhost/pause:3.10`.
//!   So only full references are taken, and the default is `localhost/pause:VERSION`.
//!
//! The bytes are reproducible: entries sorted, fixed metadata (mode, owner, the
//! SOURCE_DATE_EPOCH mtime), canonical JSON. The file appears whole or not at all.

use super::layout::{canonical_json, read_blob, Layout};
use anyhow::{bail, Context, Result};
use oci_spec::distribution::Reference;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType, ANNOTATION_REF_NAME};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// containerd's name annotation, which `ctr images import` reads.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A full image reference with a tag (`registry.example/pause:3.10.2`), written as
/// the runtimes will compare it.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageName(String);

impl ImageName {
    /// `localhost/pause:VERSION`: a full reference that names no registry anyone could
    /// pull from by accident.
    pub fn local(version: &str) -> Result<ImageName> {
        format!("localhost/pause:{version}").parse()
    }
}

impl std::str::FromStr for ImageName {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<ImageName> {
        let reference: Reference = text.parse().map_err(|err| {
            anyhow::anyhow!("invalid image name {text:?}: {err}; expected REGISTRY/REPO:TAG")
        })?;
        if reference.digest().is_some() {
            bail!("invalid image name {text:?}: name it by tag (REGISTRY/REPO:TAG), not by digest");
        }
        let full = reference.whole();
        if full == format!("{text}:latest") {
            bail!(
                "image name {text:?} has no tag: write it as REGISTRY/REPO:TAG, e.g. {text}:3.10.2"
            );
        }
        if full != text {
            bail!(
                "image name {text:?} is not a full reference, and runtimes differ on what it means (containerd's CRI looks up {full}, podman stores {}); write it as REGISTRY/REPO:TAG, e.g. {}",
                suggestion(&reference),
                suggestion(&reference)
            );
        }
        Ok(ImageName(text.to_string()))
    }
}

/// A full reference to write instead of a short one.
fn suggestion(reference: &Reference) -> String {
    let repo = reference.repository().trim_start_matches("library/");
    format!("localhost/{repo}:{}", reference.tag().unwrap_or("TAG"))
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Writes the image `layout` holds as an archive at `file`, named `name`, with every
/// entry's mtime `epoch`. Returns the archive's sha256.
pub fn write(layout: &Layout, name: &ImageName, epoch: i64, file: &Path) -> Result<String> {
    let bytes = archive(layout, name, epoch)?;
    write_whole(file, &bytes)?;
    Ok(crate::build::sha256_hex(&bytes))
}

/// The archive's bytes: `oci-layout`, `index.json`, then each blob of the image (the
/// index, its manifests, their configs and layers), in path order.
pub fn archive(layout: &Layout, name: &ImageName, epoch: i64) -> Result<Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert(
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    );
    let mut named = layout.index.clone();
    let mut annotations = HashMap::new();
    annotations.insert(ANNOTATION_REF_NAME.to_string(), name.to_string());
    annotations.insert(CONTAINERD_NAME.to_string(), name.to_string());
    named.set_annotations(Some(annotations));
    let top = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageIndex.to_string(),
        "manifests": [named],
    });
    files.insert("index.json".into(), canonical_json(&top)?);
    for digest in image_blobs(layout)? {
        let hex = digest.trim_start_matches("sha256:");
        files.insert(
            format!("blobs/sha256/{hex}"),
            read_blob(&layout.dir, &digest)?,
        );
    }
    let mtime = u64::try_from(epoch).context("SOURCE_DATE_EPOCH is negative")?;
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = header(tar::EntryType::Directory, 0, 0o755, mtime);
        tar.append_data(&mut header, dir, std::io::empty())?;
    }
    for (path, bytes) in &files {
        let mut header = header(tar::EntryType::Regular, bytes.len() as u64, 0o644, mtime);
        tar.append_data(&mut header, path, bytes.as_slice())?;
    }
    Ok(tar.into_inner()?)
}

/// Every blob the image index reaches: itself, its manifests, their configs and layers.
fn image_blobs(layout: &Layout) -> Result<Vec<String>> {
    let mut blobs = vec![layout.index.digest().to_string()];
    let index: ImageIndex = layout.json(&layout.index)?;
    for manifest in index.manifests() {
        blobs.push(manifest.digest().to_string());
        let manifest: ImageManifest = layout.json(manifest)?;
        let parts = std::iter::once(manifest.config()).chain(manifest.layers());
        blobs.extend(parts.map(|d: &Descriptor| d.digest().to_string()));
    }
    blobs.sort();
    blobs.dedup();
    Ok(blobs)
}

/// The most an archive may unpack to: far more than any pause image, far less than a
/// disk.
const UNPACKED_LIMIT: u64 = 1 << 30;

/// Unpacks the OCI archive `file` into `dir` (which must not exist): only what a
/// layout holds (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), regular files and
/// directories, at most `UNPACKED_LIMIT` bytes. Anything else, or a truncated archive,
/// is one line. Blob digests are checked where they are read (`read_blob`).
pub fn unpack(file: &Path, dir: &Path) -> Result<()> {
    let what = || format!("reading the archive {}", file.display());
    let reader = std::fs::File::open(file).with_context(what)?;
    std::fs::create_dir_all(dir.join("blobs/sha256"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut total = 0u64;
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().with_context(what)? {
        let mut entry = entry.with_context(what)?;
        let path = entry
            .path()
            .with_context(what)?
            .to_string_lossy()
            .into_owned();
        let path = path.trim_start_matches("./").to_string();
        let kind = entry.header().entry_type();
        if kind.is_dir()
            && matches!(
                path.as_str(),
                "blobs" | "blobs/" | "blobs/sha256" | "blobs/sha256/"
            )
        {
            continue;
        }
        let is_blob = path
            .strip_prefix("blobs/sha256/")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !kind.is_file() || !(is_blob || path == "oci-layout" || path == "index.json") {
            bail!(
                "{} is not an OCI archive of an image: it holds {path:?}",
                file.display()
            );
        }
        total += entry.header().size().with_context(what)?;
        if total > UNPACKED_LIMIT {
            bail!(
                "{} unpacks to more than 1 GiB; no pause image is that large",
                file.display()
            );
        }
        let mut out = std::fs::File::create(dir.join(&path))
            .with_context(|| format!("unpacking {path} from {}", file.display()))?;
        std::io::copy(&mut entry, &mut out).with_context(what)?;
    }
    Ok(())
}

fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header
}

/// Writes `bytes` to `file` through a sibling that is renamed over it once complete,
/// so `file` holds the old archive or the new one, never part of one; on any error the
/// sibling is removed.
fn write_whole(file: &Path, bytes: &[u8]) -> Result<()> {
    let name = file
        .file_name()
        .with_context(|| format!("archive path {} names no file", file.display()))?
        .to_string_lossy();
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let partial = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut out = std::fs::File::create(&partial)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        std::fs::rename(&partial, file)
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&partial);
        bail!("writing the archive {}: {err}", file.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layout::LayoutWriter;
    use oci_spec::image::{ImageIndexBuilder, ImageManifestBuilder};

    #[test]
    fn names_are_full_references_with_a_tag() {
        for good in [
            "registry.example/pause:3.10.2",
            "localhost/pause:3.10.2",
            "docker.io/library/pause:3.10",
            "127.0.0.1:5000/k8s/pause:1",
        ] {
            assert_eq!(good.parse::<ImageName>().unwrap().to_string(), good);
        }
        let short = "pause:3.10".parse::<ImageName>().unwrap_err().to_string();
        assert!(
            short.contains("docker.io/library/pause:3.10")
                && short.contains("localhost/pause:3.10"),
            "{short}"
        );
        let untagged = "registry.example/pause".parse::<ImageName>().unwrap_err();
        assert!(untagged.to_string().contains("has no tag"), "{untagged}");
        let digest = format!("registry.example/pause@sha256:{}", "a".repeat(64));
        assert!(digest.parse::<ImageName>().is_err());
        assert!("Registry.example/Pause:x".parse::<ImageName>().is_err());
        assert_eq!(
            ImageName::local("3.10.2").unwrap().to_string(),
            "localhost/pause:3.10.2"
        );
    }

    /// A layout as `image` writes one: an index of one image, and its SBOM beside it.
    fn layout(dir: &Path) -> Result<Layout> {
        let writer = LayoutWriter::create(dir)?;
        let config = writer.blob(MediaType::ImageConfig, br#"{"os":"linux"}"#)?;
        let layer = writer.blob(MediaType::ImageLayerGzip, b"layer")?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(vec![layer])
            .build()?;
        let manifest = writer.json_blob(MediaType::ImageManifest, &manifest)?;
        let sbom = writer.blob(MediaType::ImageManifest, b"an sbom artifact")?;
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest])
            .build()?;
        let mut index = writer.json_blob(MediaType::ImageIndex, &index)?;
        let named = |mut d: Descriptor, name: &str| {
            d.set_annotations(Some(HashMap::from([(
                ANNOTATION_REF_NAME.to_string(),
                name.to_string(),
            )])));
            d
        };
        index = named(index, "1.0");
        writer.commit(
            &ImageIndexBuilder::default()
                .schema_version(2u32)
                .manifests(vec![index, named(sbom, "1.0.sbom")])
                .build()?,
        )?;
        Layout::read(dir, Some("1.0"))
    }

    #[test]
    fn an_archive_holds_the_image_alone_under_its_name_the_same_every_time() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-archive-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = layout(&dir.join("layout"))?;
        let name: ImageName = "registry.example/pause:1.0".parse()?;
        let file = dir.join("pause.tar");
        let first = write(&layout, &name, 42, &file)?;
        let bytes = std::fs::read(&file)?;
        assert_eq!(write(&layout, &name, 42, &file)?, first, "not reproducible");
        assert_ne!(
            archive(&layout, &name, 43)?,
            bytes,
            "the epoch is not the mtime"
        );

        let mut tar = tar::Archive::new(bytes.as_slice());
        let mut paths = Vec::new();
        let mut top = None;
        for entry in tar.entries()? {
            let mut entry = entry?;
            assert_eq!(entry.header().mtime()?, 42);
            assert_eq!(entry.header().uid()?, 0);
            let path = entry.path()?.to_string_lossy().into_owned();
            if path == "index.json" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text)?;
                top = Some(serde_json::from_str::<serde_json::Value>(&text)?);
            }
            paths.push(path);
        }
        // The index, its manifest, config and layer: not the SBOM.
        assert_eq!(paths.len(), 2 + 2 + 4, "{paths:?}");
        let top = top.context("no index.json")?;
        let entries = top["manifests"].as_array().context("no manifests")?;
        assert_eq!(entries.len(), 1, "{top}");
        assert_eq!(entries[0]["digest"], layout.index.digest().to_string());
        for key in [ANNOTATION_REF_NAME, CONTAINERD_NAME] {
            assert_eq!(entries[0]["annotations"][key], "registry.example/pause:1.0");
        }

        // It unpacks to a layout that reads back as the same image; a truncated copy
        // or one with a stray entry is one line.
        let unpacked = dir.join("unpacked");
        unpack(&file, &unpacked)?;
        let back = Layout::read(&unpacked, Some(&name.to_string()))?;
        assert_eq!(back.index.digest(), layout.index.digest());
        let truncated = dir.join("truncated.tar");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2 + 100])?;
        assert!(unpack(&truncated, &dir.join("t")).is_err());
        let mut stray = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Regular, 2, 0o644, 0);
        stray.append_data(&mut h, "etc/passwd", &b"no"[..])?;
        std::fs::write(dir.join("stray.tar"), stray.into_inner()?)?;
        let err = unpack(&dir.join("stray.tar"), &dir.join("s")).unwrap_err();
        assert!(err.to_string().contains("is not an OCI archive"), "{err}");
        for made in ["unpacked", "truncated.tar", "t", "stray.tar", "s"] {
            let path = dir.join(made);
            let _ = std::fs::remove_dir_all(&path);
            let _ = std::fs::remove_file(&path);
        }

        // An unwritable place: one error, nothing left behind.
        let missing = dir.join("no-such-dir/pause.tar");
        let err = write(&layout, &name, 42, &missing).unwrap_err().to_string();
        assert!(err.starts_with("writing the archive"), "{err}");
        assert_eq!(
            std::fs::read_dir(&dir)?.count(),
            2,
            "something was left behind"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
