//! `cargo xtask push`: publish an image layout to a registry, resumably.
//!
//! Two halves: `PushPlan` says what goes up and in which order, from the layout alone (unit
//! tests check it); `execute` does it. Order matters to registries: blobs first
//! (skipping those already there, so a push that was interrupted completes when run
//! again), then each manifest by digest, subjects before the artifacts that refer to
//! them; then the tags: the OCI 1.1 referrers fallback tags (`sha256-<hex>`) for the
//! SBOMs, the per-arch tags, and last the index under VERSION. Manifests go up as
//! their exact layout bytes, so digests survive. A push that fails anywhere leaves
//! VERSION where it was; running it again completes the job.

use crate::flags;
use crate::registry::referrers::Referrers;
use crate::registry::{Access, Options, Session, Target};
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use std::path::Path;
use xshell::Shell;
use xtask::image::layout::{self, Layout};

impl flags::Push {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let layout = match self.layout {
            Some(dir) => dir,
            None => {
                let root = sh.current_dir();
                xtask::image::default_output(
                    &root,
                    &xtask::image::description::ImageDescription::load(&root)?,
                )
            }
        };
        let options = self.registry.options(sh);
        let digest = crate::runtime()?.block_on(push(&layout, &self.to, &options))?;
        println!("{digest}");
        Ok(())
    }
}

/// What a push of one layout sends, in order.
#[derive(Debug)]
pub struct PushPlan {
    /// The layout the blobs are read from, one at a time as they go up.
    pub dir: std::path::PathBuf,
    /// Configs and layers, each once.
    pub blobs: Vec<Descriptor>,
    /// Every manifest by digest with its layout bytes: images, then the SBOM artifacts.
    pub manifests: Vec<(Descriptor, Vec<u8>)>,
    pub index: Descriptor,
    pub index_bytes: Vec<u8>,
    /// The tag the index goes up as.
    pub tag: String,
    /// The per-arch tags (the layout's `VERSION-linux-ARCH`, with `tag` for VERSION).
    pub arch_tags: Vec<(String, Descriptor)>,
    /// Each SBOM artifact with the referrers fallback tag of its subject.
    pub referrers: Vec<(String, Descriptor)>,
}

impl PushPlan {
    /// The plan for pushing `layout` as `tag`.
    pub fn new(layout: &Layout, tag: &str) -> Result<PushPlan> {
        xtask::version::validate(tag)?;
        let mut blobs: Vec<Descriptor> = Vec::new();
        let mut manifests = Vec::new();
        let mut arch_tags = Vec::new();
        let mut referrers = Vec::new();
        for (name, desc) in &layout.manifests {
            let bytes = layout.blob(desc.digest().as_ref())?;
            let manifest: ImageManifest = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing manifest {}", desc.digest()))?;
            for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
                if !blobs.iter().any(|b| b.digest() == blob.digest()) {
                    blobs.push(blob.clone());
                }
            }
            match manifest.subject() {
                Some(subject) => referrers.push((layout::referrers_tag(subject), desc.clone())),
                None => {
                    let arch_tag = match name.strip_prefix(&layout.tag) {
                        Some(suffix) => format!("{tag}{suffix}"),
                        None => name.clone(),
                    };
                    arch_tags.push((arch_tag, desc.clone()));
                }
            }
            manifests.push((desc.clone(), bytes));
        }
        // Subjects before the artifacts that refer to them.
        manifests.sort_by_key(|(desc, _)| desc.artifact_type().is_some());
        Ok(PushPlan {
            dir: layout.dir.clone(),
            blobs,
            manifests,
            index_bytes: layout.blob(layout.index.digest().as_ref())?,
            index: layout.index.clone(),
            tag: tag.to_string(),
            arch_tags,
            referrers,
        })
    }

    /// The steps progress counts: each blob, each manifest, the index.
    fn steps(&self) -> usize {
        self.blobs.len() + self.manifests.len() + 1
    }
}

/// Pushes the layout at `layout_dir` to `to` (the tag defaults to the layout's) and
/// returns the index digest.
pub async fn push(layout_dir: &Path, to: &Target, options: &Options) -> Result<String> {
    let (session, plan) = prepare(layout_dir, to, options)?;
    execute(&session, &plan, &mut |_| Ok(())).await
}

fn prepare(layout_dir: &Path, to: &Target, options: &Options) -> Result<(Session, PushPlan)> {
    let layout = Layout::read(layout_dir, None)?;
    let plan = PushPlan::new(&layout, to.tag.as_deref().unwrap_or(&layout.tag))?;
    Ok((Session::new(to.repository.clone(), options)?, plan))
}

/// What only tests reach: a push that stops as a killed one would.
pub mod seam {
    use super::*;

    /// Pushes as `push` does, but fails before the blob upload number `after` (0-based),
    /// as a push killed there would: the e2e suite proves the next push completes it.
    pub async fn push_interrupted(
        layout_dir: &Path,
        to: &Target,
        options: &Options,
        after: usize,
    ) -> Result<String> {
        let (session, plan) = prepare(layout_dir, to, options)?;
        execute(&session, &plan, &mut |uploaded| {
            if uploaded == after {
                bail!("push interrupted after {uploaded} blob uploads");
            }
            Ok(())
        })
        .await
    }
}

/// Carries out `plan`. `before_upload` sees the number of blobs uploaded so far.
async fn execute(
    session: &Session,
    plan: &PushPlan,
    before_upload: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<String> {
    session.login(Access::Write).await?;
    let total = plan.steps();
    let mut step = 0;
    let mut uploaded = 0;
    for blob in &plan.blobs {
        step += 1;
        let digest = blob.digest().to_string();
        let size = blob.size();
        let what = format!("checking for blob {digest}");
        if session.read(&what, || session.blob_exists(&digest)).await? {
            eprintln!("[{step}/{total}] blob {digest} ({size} bytes) already there");
            continue;
        }
        before_upload(uploaded)?;
        let data = layout::read_blob(&plan.dir, &digest)?;
        uploaded += 1;
        let what = format!("uploading blob {digest}");
        session
            .write(&what, || session.upload_blob(&digest, &data))
            .await?;
        eprintln!("[{step}/{total}] blob {digest} ({size} bytes) uploaded");
    }
    for (desc, bytes) in &plan.manifests {
        step += 1;
        let digest = desc.digest().to_string();
        put_manifest(session, &digest, bytes, desc.media_type()).await?;
        eprintln!("[{step}/{total}] manifest {digest} pushed");
    }
    // Tags, VERSION last: each names only what is already there.
    for (fallback_tag, desc) in &plan.referrers {
        tag_referrer(session, fallback_tag, desc).await?;
    }
    for (arch_tag, desc) in &plan.arch_tags {
        let bytes = manifest_bytes(plan, desc)?;
        put_manifest(session, arch_tag, bytes, desc.media_type()).await?;
        eprintln!("tagged {arch_tag} {}", desc.digest());
    }
    step += 1;
    let (tag, index_digest) = (&plan.tag, plan.index.digest().to_string());
    put_manifest(session, tag, &plan.index_bytes, &MediaType::ImageIndex).await?;
    eprintln!("[{step}/{total}] index {index_digest} tagged {tag}");

    // What the registry now serves under the tag must be what the layout holds.
    let served = session
        .read(&format!("reading back {tag}"), || session.manifest(tag))
        .await?
        .with_context(|| format!("{} has no {tag} right after it was pushed", session.host))?;
    let served = format!("sha256:{}", xtask::build::sha256_hex(&served));
    if served != index_digest {
        bail!(
            "{} serves {served} for {tag} but the layout's index is {index_digest}",
            session.host
        );
    }
    eprintln!("pushed {} {index_digest}", session.at(tag));
    Ok(index_digest)
}

fn manifest_bytes<'p>(plan: &'p PushPlan, desc: &Descriptor) -> Result<&'p [u8]> {
    plan.manifests
        .iter()
        .find(|(d, _)| d.digest() == desc.digest())
        .map(|(_, bytes)| bytes.as_slice())
        .with_context(|| format!("manifest {} is not in the plan", desc.digest()))
}

/// Adds `artifact` to the referrers index under `fallback_tag`, merging with what is
/// there: other tools (cosign, scanners) may have added theirs, and their entries are
/// kept as they are. Only a tag the registry says is not there starts an empty list;
/// any other failure, or a body that is no index, stops the push before it writes.
async fn tag_referrer(session: &Session, fallback_tag: &str, artifact: &Descriptor) -> Result<()> {
    let fetched = Referrers::fetch(session, fallback_tag).await?;
    let mut referrers = fetched.unwrap_or_else(Referrers::empty);
    if !referrers.add(artifact)? {
        return Ok(());
    }
    put_manifest(
        session,
        fallback_tag,
        &referrers.to_bytes()?,
        &MediaType::ImageIndex,
    )
    .await?;
    eprintln!(
        "tagged {fallback_tag} (referrers: SBOM {})",
        artifact.digest()
    );
    Ok(())
}

/// PUTs a manifest under a digest or a tag, retrying what fails for a moment.
async fn put_manifest(
    session: &Session,
    tag_or_digest: &str,
    bytes: &[u8],
    media_type: &MediaType,
) -> Result<()> {
    let what = format!("putting manifest {tag_or_digest}");
    session
        .write(&what, || {
            session.put_manifest(tag_or_digest, bytes, media_type)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ImageIndexBuilder, ImageManifestBuilder, ANNOTATION_REF_NAME};
    use std::collections::HashMap;
    use xtask::image::layout::LayoutWriter;

    fn named(mut desc: Descriptor, name: &str) -> Descriptor {
        desc.set_annotations(Some(HashMap::from([(
            ANNOTATION_REF_NAME.to_string(),
            name.to_string(),
        )])));
        desc
    }

    /// A layout as `image` writes one: two arches sharing a config, each with an SBOM.
    fn two_arch_layout(dir: &Path) -> Result<()> {
        let writer = LayoutWriter::create(dir)?;
        let empty = writer.blob(MediaType::EmptyJSON, b"{}")?;
        let config = writer.blob(MediaType::ImageConfig, br#"{"os":"linux"}"#)?;
        let mut refs = Vec::new();
        let mut images = Vec::new();
        for arch in ["amd64", "s390x"] {
            let layer = writer.blob(MediaType::ImageLayerGzip, arch.as_bytes())?;
            let manifest = ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageManifest)
                .config(config.clone())
                .layers(vec![layer])
                .build()?;
            let image = writer.json_blob(MediaType::ImageManifest, &manifest)?;
            let spdx = writer.blob(
                MediaType::Other("application/spdx+json".into()),
                format!("spdx {arch}").as_bytes(),
            )?;
            let sbom = ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageManifest)
                .artifact_type(MediaType::Other("application/spdx+json".into()))
                .config(empty.clone())
                .layers(vec![spdx])
                .subject(image.clone())
                .build()?;
            let mut sbom_desc = writer.json_blob(MediaType::ImageManifest, &sbom)?;
            sbom_desc.set_artifact_type(Some(MediaType::Other("application/spdx+json".into())));
            // The SBOM first: the plan must still put its subject before it.
            refs.push(named(sbom_desc, &format!("1.0-linux-{arch}.sbom")));
            refs.push(named(image.clone(), &format!("1.0-linux-{arch}")));
            images.push(image);
        }
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(images)
            .build()?;
        let index = writer.json_blob(MediaType::ImageIndex, &index)?;
        refs.insert(0, named(index, "1.0"));
        writer.commit(
            &ImageIndexBuilder::default()
                .schema_version(2u32)
                .manifests(refs)
                .build()?,
        )
    }

    #[test]
    fn the_plan_uploads_each_blob_once_and_subjects_before_referrers() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        two_arch_layout(&dir)?;
        let layout = Layout::read(&dir, None)?;
        assert_eq!(layout.tag, "1.0");
        let plan = PushPlan::new(&layout, "1.0-rc.1")?;
        std::fs::remove_dir_all(&dir)?;

        // One shared config and two layers; the SBOMs' empty config and documents too.
        let digests: Vec<_> = plan.blobs.iter().map(|b| b.digest().to_string()).collect();
        let mut unique = digests.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(digests.len(), 6, "{digests:?}");
        assert_eq!(unique.len(), digests.len(), "a blob is uploaded twice");
        let kinds: Vec<bool> = plan
            .manifests
            .iter()
            .map(|(d, _)| d.artifact_type().is_some())
            .collect();
        assert_eq!(kinds, [false, false, true, true], "images before artifacts");
        let tags: Vec<&str> = plan.arch_tags.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(tags, ["1.0-rc.1-linux-amd64", "1.0-rc.1-linux-s390x"]);
        for ((fallback, sbom), (_, image)) in plan.referrers.iter().zip(&plan.arch_tags) {
            assert_eq!(*fallback, layout::referrers_tag(image));
            assert!(sbom.artifact_type().is_some());
        }
        assert_eq!(plan.steps(), 6 + 4 + 1);
        assert!(PushPlan::new(&layout, "bad tag").is_err());
        Ok(())
    }
}
