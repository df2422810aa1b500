//! Writing an OCI image layout (image-layout spec) that appears whole or not at all.
//!
//! Blobs go into a temporary sibling directory; `commit` writes `index.json` last and
//! then swaps the directory into place with renameat2(RENAME_EXCHANGE), so at every
//! moment the output path holds either the previous layout or the new one. `Layout`
//! reads one back, for push and reproduce.

use anyhow::{bail, Context, Result};
use oci_spec::image::{
    Descriptor, ImageIndex, ImageManifest, MediaType, Sha256Digest, ANNOTATION_REF_NAME,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Serializes with sorted keys and no spaces (olpc-cjson), so the bytes, and so the
/// digests, never depend on HashMap order.
pub fn canonical_json(value: &impl Serialize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value
        .serialize(&mut ser)
        .context("serializing canonical JSON")?;
    Ok(out)
}

pub fn sha256_digest(bytes: &[u8]) -> Result<Sha256Digest> {
    Ok(Sha256Digest::from_str(&crate::build::sha256_hex(bytes))?)
}

/// Reads the blob `digest` (`sha256:<hex>`) from the layout at `dir`, and checks that
/// its bytes have that digest.
pub fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unsupported digest {digest}"))?;
    let path = dir.join("blobs/sha256").join(hex);
    let bytes = std::fs::read(&path).with_context(|| format!("reading blob {}", path.display()))?;
    let actual = crate::build::sha256_hex(&bytes);
    if actual != hex {
        bail!(
            "blob {} is corrupt: its bytes have digest sha256:{actual}",
            path.display()
        );
    }
    Ok(bytes)
}

/// The tag under which a registry keeps the artifacts that refer to `subject`, for
/// registries without the referrers API (OCI 1.1 fallback): `sha256-<hex>`.
pub fn referrers_tag(subject: &Descriptor) -> String {
    subject.digest().to_string().replace(':', "-")
}

/// A layout read back: one image index by its tag, and the manifests index.json names.
pub struct Layout {
    pub dir: PathBuf,
    /// The image index's name (ref.name): the VERSION, for layouts `image` writes.
    pub tag: String,
    pub index: Descriptor,
    /// Per-arch manifests and SBOM artifacts, each with the name index.json gives it.
    pub manifests: Vec<(String, Descriptor)>,
}

impl Layout {
    /// Reads the layout at `dir`: the image index named `tag`, or, with no tag, the one
    /// image index it holds.
    pub fn read(dir: &Path, tag: Option<&str>) -> Result<Layout> {
        let index_json = dir.join("index.json");
        let top: ImageIndex =
            serde_json::from_slice(&std::fs::read(&index_json).with_context(|| {
                format!(
                    "reading {}; is it an OCI layout? `cargo xtask image` writes one",
                    index_json.display()
                )
            })?)
            .with_context(|| format!("parsing {}", index_json.display()))?;
        let indexes: Vec<(String, &Descriptor)> = top
            .manifests()
            .iter()
            .filter(|d| *d.media_type() == MediaType::ImageIndex)
            .filter_map(|d| Some((ref_name(d)?, d)))
            .collect();
        let (tag, index) = match (tag, indexes.as_slice()) {
            (Some(tag), _) => indexes
                .iter()
                .find(|(name, _)| name == tag)
                .with_context(|| format!("{} has no image index tagged {tag}", dir.display()))?,
            (None, [one]) => one,
            (None, []) => bail!("{} names no image index", index_json.display()),
            (None, _) => bail!(
                "{} names {} image indexes; say which with oci:DIR:TAG",
                index_json.display(),
                indexes.len()
            ),
        };
        let manifests = top
            .manifests()
            .iter()
            .filter(|d| *d.media_type() == MediaType::ImageManifest)
            .filter_map(|d| Some((ref_name(d)?, d.clone())))
            .collect();
        Ok(Layout {
            dir: dir.to_path_buf(),
            tag: tag.clone(),
            index: (*index).clone(),
            manifests,
        })
    }

    pub fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        read_blob(&self.dir, digest)
    }

    /// The blob `desc` names, parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self, desc: &Descriptor) -> Result<T> {
        let bytes = self.blob(desc.digest().as_ref())?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing blob {} in {}", desc.digest(), self.dir.display()))
    }

    /// The SBOM artifacts in the layout whose subject is `manifest`.
    pub fn sbom_of(&self, manifest: &Descriptor) -> Result<Option<Descriptor>> {
        for (_, desc) in &self.manifests {
            if desc.artifact_type().is_none() {
                continue;
            }
            let artifact: ImageManifest = self.json(desc)?;
            if artifact
                .subject()
                .as_ref()
                .is_some_and(|s| s.digest() == manifest.digest())
            {
                return Ok(Some(desc.clone()));
            }
        }
        Ok(None)
    }
}

/// A descriptor's `org.opencontainers.image.ref.name`.
pub fn ref_name(desc: &Descriptor) -> Option<String> {
    desc.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .cloned()
}

/// A layout being written; nothing is visible at the output path until `commit`.
pub struct LayoutWriter {
    staging: PathBuf,
    output: PathBuf,
}

impl LayoutWriter {
    pub fn create(output: &Path) -> Result<LayoutWriter> {
        let parent = output
            .parent()
            .context("the output has no parent directory")?;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let name = output
            .file_name()
            .context("the output has no file name")?
            .to_string_lossy();
        remove_stale_siblings(parent, &name)?;
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        std::fs::create_dir_all(staging.join("blobs/sha256"))
            .with_context(|| format!("creating {}", staging.display()))?;
        crate::files::write(
            staging.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        Ok(LayoutWriter {
            staging,
            output: output.to_path_buf(),
        })
    }

    /// Writes a blob and returns its descriptor.
    pub fn blob(&self, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor> {
        let digest = sha256_digest(bytes)?;
        let path = self.staging.join("blobs/sha256").join(digest.digest());
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(Descriptor::new(media_type, bytes.len() as u64, digest))
    }

    /// Writes a value as a canonical-JSON blob.
    pub fn json_blob(&self, media_type: MediaType, value: &impl Serialize) -> Result<Descriptor> {
        self.blob(media_type, &canonical_json(value)?)
    }

    /// Writes `index.json` and moves the layout into place.
    pub fn commit(self, index: &impl Serialize) -> Result<()> {
        crate::files::write(self.staging.join("index.json"), canonical_json(index)?)?;
        if self.output.exists() {
            swap_into_place(&self.staging, &self.output)?;
            // The staging path now holds the old layout.
            std::fs::remove_dir_all(&self.staging).with_context(|| {
                format!("removing the old layout at {}", self.staging.display())
            })?;
        } else {
            std::fs::rename(&self.staging, &self.output)
                .with_context(|| format!("moving the layout to {}", self.output.display()))?;
        }
        Ok(())
    }
}

/// Exchanges `new` and `old` in one step: renameat2(RENAME_EXCHANGE) on Linux.
#[cfg(target_os = "linux")]
fn swap_into_place(new: &Path, old: &Path) -> Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, new, AT_FDCWD, old, RenameFlags::RENAME_EXCHANGE)
        .with_context(|| format!("swapping the new layout into {}", old.display()))
}

/// Elsewhere (macOS) there is no exchange: move the old layout aside, then the new one
/// in. A crash between the two leaves the old layout whole beside the output.
#[cfg(not(target_os = "linux"))]
fn swap_into_place(new: &Path, old: &Path) -> Result<()> {
    let aside = new.with_extension("old");
    std::fs::rename(old, &aside).with_context(|| format!("moving {} aside", old.display()))?;
    std::fs::rename(new, old).with_context(|| format!("moving the layout to {}", old.display()))?;
    std::fs::rename(&aside, new)
        .with_context(|| format!("keeping the old layout at {}", new.display()))
}

impl Drop for LayoutWriter {
    /// A writer dropped before `commit` (an error) removes its staging directory.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

/// Removes staging directories that an interrupted run (SIGKILL, power loss) left:
/// only those whose writer, the process their name ends with, is gone. A concurrent
/// run's staging directory (its writer alive) is its own.
fn remove_stale_siblings(parent: &Path, name: &str) -> Result<()> {
    let prefix = format!(".{name}.partial-");
    for entry in crate::files::read_dir(parent)?.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        if pid.parse().is_ok_and(is_running) {
            continue;
        }
        std::fs::remove_dir_all(entry.path())
            .with_context(|| format!("removing stale {}", entry.path().display()))?;
    }
    Ok(())
}

/// Whether process `pid` exists (signal 0: nothing is sent). A PID that another
/// process has taken since reads as running: the directory is then kept, never lost.
fn is_running(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ImageIndexBuilder;

    #[test]
    fn only_an_abandoned_staging_directory_is_removed() -> Result<()> {
        let parent = scratch("stale");
        // This process is alive; PID 0x7ffffffe is not a process (beyond pid_max).
        let ours = parent.join(format!(".pause.partial-{}", std::process::id()));
        let abandoned = parent.join(".pause.partial-2147483646");
        let other = parent.join(".other.partial-2147483646");
        for dir in [&ours, &abandoned, &other] {
            std::fs::create_dir_all(dir)?;
        }
        remove_stale_siblings(&parent, "pause")?;
        assert!(
            ours.exists(),
            "a running writer's staging directory was removed"
        );
        assert!(
            !abandoned.exists(),
            "an abandoned staging directory was kept"
        );
        assert!(
            other.exists(),
            "another layout's staging directory was touched"
        );
        std::fs::remove_dir_all(&parent)?;
        Ok(())
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-layout-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                if entry.path().is_dir() {
                    stack.push(entry.path());
                } else {
                    out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    fn layout_with(output: &Path, blob: &[u8]) -> Result<LayoutWriter> {
        let writer = LayoutWriter::create(output)?;
        writer.blob(MediaType::ImageLayerGzip, blob)?;
        Ok(writer)
    }

    fn empty_index() -> oci_spec::image::ImageIndex {
        ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(Vec::new())
            .build()
            .unwrap()
    }

    #[test]
    fn a_layout_appears_whole_or_not_at_all() -> Result<()> {
        let parent = scratch("atomic");
        let output = parent.join("pause");
        layout_with(&output, b"first")?.commit(&empty_index())?;
        let before = files(&output);

        // A run that fails after writing its blobs: the old layout, and nothing else.
        drop(layout_with(&output, b"second")?);
        assert_eq!(files(&output), before);
        let names: Vec<_> = std::fs::read_dir(&parent)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["pause"], "staging left behind");

        // A run that commits replaces it: the new blob, not the old one.
        layout_with(&output, b"second")?.commit(&empty_index())?;
        let blobs: Vec<Vec<u8>> = files(&output.join("blobs"))
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        assert_eq!(blobs, [b"second".to_vec()]);
        let names: Vec<_> = std::fs::read_dir(&parent)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["pause"], "the old layout left behind");
        std::fs::remove_dir_all(&parent)?;
        Ok(())
    }

    #[test]
    fn a_blob_whose_bytes_do_not_match_its_digest_is_refused() -> Result<()> {
        let parent = scratch("corrupt");
        let output = parent.join("pause");
        let writer = LayoutWriter::create(&output)?;
        let desc = writer.blob(MediaType::ImageLayerGzip, b"bytes")?;
        writer.commit(&empty_index())?;
        assert_eq!(read_blob(&output, desc.digest().as_ref())?, b"bytes");
        let path = output.join("blobs/sha256").join(desc.digest().digest());
        std::fs::write(&path, b"other")?;
        let err = read_blob(&output, desc.digest().as_ref()).unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
        std::fs::remove_dir_all(&parent)?;
        Ok(())
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_spaces() -> Result<()> {
        let value = serde_json::json!({ "b": 1, "a": { "d": [1, 2], "c": "x" } });
        assert_eq!(
            canonical_json(&value)?,
            br#"{"a":{"c":"x","d":[1,2]},"b":1}"#
        );
        Ok(())
    }
}
