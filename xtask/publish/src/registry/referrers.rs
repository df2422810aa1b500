//! The OCI 1.1 referrers fallback index (`sha256-<hex>` tag): what other tools have
//! put there is kept exactly (its entries as JSON, fields we do not know included),
//! and only a tag that is not there reads as an empty list.

use super::Session;
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, MediaType};
use serde_json::{Map, Value};

/// A referrers index, as the registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrers {
    /// The whole index object: its entries and anything else it carries.
    index: Map<String, Value>,
}

impl Referrers {
    /// The index under `fallback_tag` in `session`'s repository, read with retries:
    /// `None` only when the registry says there is no such tag; a body that is no
    /// index is an error, in one redacted line.
    pub async fn fetch(session: &Session, fallback_tag: &str) -> Result<Option<Referrers>> {
        let what = format!("reading referrers {fallback_tag}");
        let fetched = session
            .read(&what, || session.manifest(fallback_tag))
            .await?;
        let Some(bytes) = fetched else {
            return Ok(None);
        };
        let shown = format!("the referrers tag {fallback_tag} on {}", session.host);
        Referrers::parse(&bytes, &shown)
            .map(Some)
            .map_err(|err| anyhow::anyhow!("{}", session.redact(&format!("{err:#}"))))
    }

    /// An index with no entries: what a tag that is not there holds.
    pub fn empty() -> Referrers {
        let mut index = Map::new();
        index.insert("schemaVersion".into(), Value::from(2));
        index.insert(
            "mediaType".into(),
            Value::from(MediaType::ImageIndex.to_string()),
        );
        index.insert("manifests".into(), Value::Array(Vec::new()));
        Referrers { index }
    }

    /// `bytes` as an index: schema version 2, the index media type where one is named,
    /// and a `manifests` list of descriptors.
    fn parse(bytes: &[u8], what: &str) -> Result<Referrers> {
        let not_index = || format!("{what} is not an OCI image index");
        let value: Value = serde_json::from_slice(bytes).with_context(not_index)?;
        let Value::Object(index) = value else {
            bail!("{}: not a JSON object", not_index());
        };
        if index.get("schemaVersion") != Some(&Value::from(2)) {
            bail!("{}: schemaVersion is not 2", not_index());
        }
        let index_type = MediaType::ImageIndex.to_string();
        if let Some(media_type) = index.get("mediaType") {
            if media_type.as_str() != Some(index_type.as_str()) {
                bail!("{}: mediaType is {media_type}", not_index());
            }
        }
        let Some(Value::Array(entries)) = index.get("manifests") else {
            bail!("{}: no manifests list", not_index());
        };
        for entry in entries {
            serde_json::from_value::<Descriptor>(entry.clone())
                .with_context(|| format!("{}: an entry is no descriptor", not_index()))?;
        }
        Ok(Referrers { index })
    }

    /// The entries, as descriptors.
    pub fn descriptors(&self) -> Vec<Descriptor> {
        self.entries()
            .iter()
            .filter_map(|e| serde_json::from_value(e.clone()).ok())
            .collect()
    }

    /// Adds `artifact` (without its annotations: the layout's ref names are not the
    /// registry's business) unless an entry has its digest. True when it was added.
    pub fn add(&mut self, artifact: &Descriptor) -> Result<bool> {
        let digest = artifact.digest().to_string();
        let there = self
            .entries()
            .iter()
            .any(|e| e.get("digest").and_then(Value::as_str) == Some(digest.as_str()));
        if there {
            return Ok(false);
        }
        let mut entry = artifact.clone();
        entry.set_annotations(None);
        let entry = serde_json::to_value(entry)?;
        if let Some(Value::Array(entries)) = self.index.get_mut("manifests") {
            entries.push(entry);
        }
        Ok(true)
    }

    /// The index as canonical JSON, what goes up under the tag.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        xtask::image::layout::canonical_json(&self.index)
    }

    fn entries(&self) -> &[Value] {
        match self.index.get("manifests") {
            Some(Value::Array(entries)) => entries,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::DescriptorBuilder;

    const COSIGN: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1234,"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","annotations":{"dev.sigstore.bundle.predicateType":"https://slsa.dev/provenance/v1"},"x-unknown-field":{"kept":true}}],"annotations":{"org.example":"index"}}"#;

    fn sbom() -> Descriptor {
        DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(
                "sha256:2222222222222222222222222222222222222222222222222222222222222222"
                    .parse::<oci_spec::image::Digest>()
                    .unwrap(),
            )
            .size(99u64)
            .artifact_type(MediaType::Other("application/spdx+json".into()))
            .build()
            .unwrap()
    }

    #[test]
    fn another_tools_entry_is_kept_exactly() -> Result<()> {
        let mut referrers = Referrers::parse(COSIGN.as_bytes(), "t")?;
        assert!(referrers.add(&sbom())?);
        assert!(!referrers.add(&sbom())?, "added twice");
        let merged: Value = serde_json::from_slice(&referrers.to_bytes()?)?;
        let original: Value = serde_json::from_str(COSIGN)?;
        assert_eq!(merged["manifests"][0], original["manifests"][0]);
        assert_eq!(merged["annotations"], original["annotations"]);
        assert_eq!(
            merged["manifests"][1]["artifactType"],
            "application/spdx+json"
        );
        assert_eq!(merged["manifests"].as_array().map(Vec::len), Some(2));
        Ok(())
    }

    #[test]
    fn only_an_absent_tag_is_empty() -> Result<()> {
        let empty = Referrers::empty();
        assert!(empty.descriptors().is_empty());
        for bad in [
            &b"<html><body>500 Internal Server Error</body></html>"[..],
            b"{}",
            b"[]",
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#,
            br#"{"schemaVersion":2,"manifests":[{"digest":"not a digest"}]}"#,
        ] {
            let err = Referrers::parse(bad, "the tag").unwrap_err();
            assert!(
                format!("{err:#}").starts_with("the tag is not an OCI image index"),
                "{err:#}"
            );
        }
        // Nested beyond serde_json's depth limit: an error, not a stack overflow.
        let deep = "[".repeat(1 << 20);
        assert!(Referrers::parse(deep.as_bytes(), "t").is_err());
        Ok(())
    }
}
