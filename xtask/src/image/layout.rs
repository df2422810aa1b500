//! Writing an OCI image layout (image-layout spec) that appears whole or not at all.
//!
//! Blobs go into a temporary sibling directory; `commit` writes `index.json` last and
//! then swaps the directory into place with renameat2(RENAME_EXCHANGE), so at every
//! moment the output path holds either the previous layout or the new one.

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, MediaType, Sha256Digest};
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

/// Reads the blob `digest` (`sha256:<hex>`) from the layout at `dir`.
pub fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unsupported digest {digest}"))?;
    let path = dir.join("blobs/sha256").join(hex);
    std::fs::read(&path).with_context(|| format!("reading blob {}", path.display()))
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
        std::fs::write(
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
        std::fs::write(self.staging.join("index.json"), canonical_json(index)?)?;
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

/// Removes staging directories that an interrupted run (SIGKILL, power loss) left.
fn remove_stale_siblings(parent: &Path, name: &str) -> Result<()> {
    let prefix = format!(".{name}.partial-");
    for entry in std::fs::read_dir(parent)?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing stale {}", entry.path().display()))?;
        }
    }
    Ok(())
}
