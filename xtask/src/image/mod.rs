//! `cargo xtask image`: a reproducible multi-arch OCI image layout, no daemon needed.
//!
//! Per arch: one gzip layer holding `/pause`, a config, a manifest and an SPDX SBOM
//! attached as an artifact whose `subject` is that manifest. Then an image index of
//! every platform, and `index.json` naming it `VERSION` and each manifest
//! `VERSION-linux-ARCH` (upstream's per-arch tags). Every JSON document is canonical
//! and every timestamp comes from SOURCE_DATE_EPOCH, so digests are reproducible.

pub mod archive;
pub mod description;
pub mod layout;
pub mod sbom;

use crate::build::{self, read_record, DistBinary};
use crate::{flags, platform, version};
use anyhow::{bail, Context, Result};
use description::ImageDescription;
use flate2::{Compression, GzBuilder};
use layout::LayoutWriter;
use oci_spec::image::{
    self as oci, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, PlatformBuilder, RootFsBuilder,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use xshell::{cmd, Shell};

/// What `assemble` made, for the summary, push and the tests.
pub struct Assembled {
    pub index: Descriptor,
    pub arches: Vec<ArchImage>,
    /// Sum of every blob's size: what a registry stores for the whole image.
    pub total_size: u64,
}

pub struct ArchImage {
    pub arch: &'static str,
    pub manifest: Descriptor,
    pub layer_size: u64,
    pub sbom: Descriptor,
}

impl flags::Image {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let root = sh.current_dir();
        let description = ImageDescription::load(&root)?;
        let containerfile = root.join(description::CONTAINERFILE);
        description.check_containerfile(
            &std::fs::read_to_string(&containerfile)
                .with_context(|| format!("reading {}", containerfile.display()))?,
        )?;
        let args = self.build;
        let platforms = match args.arch {
            Some(arches) => arches.0,
            None => description.platforms()?,
        };
        let version = version::resolve(sh, args.version)?;
        let output = self
            .output
            .unwrap_or_else(|| default_output(&root, &description));
        let binaries = build::build(sh, &platforms, &version, args.builder)?;
        let started = Instant::now();
        let sources = Sources::of_tree(sh, &description, &binaries, &version)?;
        let image = assemble(sh, &sources, &output)?;
        eprintln!(
            "assembled {} platforms in {:.2}s",
            image.arches.len(),
            started.elapsed().as_secs_f64()
        );
        print_summary(&image, &output, &version);
        if let Some(file) = self.archive {
            let name = match self.name {
                Some(name) => name,
                None => archive::ImageName::local(&version)?,
            };
            let layout = layout::Layout::read(&output, Some(&version))?;
            let sha256 = archive::write(&layout, &name, sources.epoch, &file)?;
            println!("{}  {name}  sha256:{sha256}", file.display());
        }
        Ok(())
    }
}

fn print_summary(image: &Assembled, output: &Path, version: &str) {
    println!("{}:{version}  {}", output.display(), image.index.digest());
    for arch in &image.arches {
        println!(
            "  {:<8} {}  layer {} bytes (gzip)",
            arch.arch,
            arch.manifest.digest(),
            arch.layer_size
        );
    }
    println!("  total {} bytes in blobs", image.total_size);
}

/// The time every entry and document carries: SOURCE_DATE_EPOCH, else 0.
pub fn source_date_epoch() -> Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={text:?} is not a whole number of seconds; set it to e.g. $(git log -1 --format=%ct)")
        }),
        Err(_) => Ok(0),
    }
}

fn rfc3339(epoch: i64) -> Result<String> {
    let time = chrono::DateTime::from_timestamp(epoch, 0)
        .with_context(|| format!("SOURCE_DATE_EPOCH={epoch} is out of range"))?;
    Ok(time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// One gzip layer with a single entry `pause` (0755, uid/gid 0, mtime `epoch`).
/// Returns the compressed bytes and the uncompressed tar's digest (the diff_id).
pub fn layer(binary: &[u8], epoch: i64) -> Result<(Vec<u8>, String)> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(binary.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(u64::try_from(epoch).context("SOURCE_DATE_EPOCH is negative")?);
    header.set_username("")?;
    header.set_groupname("")?;
    tar.append_data(&mut header, "pause", binary)
        .context("writing the layer tar")?;
    let tar = tar.into_inner()?;
    let diff_id = format!("sha256:{}", build::sha256_hex(&tar));
    // GzBuilder's header has mtime 0 and no file name: the same bytes every run.
    let mut gz = GzBuilder::new().write(Vec::new(), Compression::best());
    std::io::Write::write_all(&mut gz, &tar)?;
    Ok((gz.finish()?, diff_id))
}

/// What an image is assembled from, and what its annotations say of it.
pub struct Sources<'a> {
    pub description: &'a ImageDescription,
    pub binaries: &'a [DistBinary],
    pub version: &'a str,
    /// The commit the binaries were built from, `<sha>-dirty` when the tree had
    /// uncommitted changes (reproduce refuses those).
    pub revision: String,
    /// SOURCE_DATE_EPOCH: every timestamp in the image.
    pub epoch: i64,
}

impl<'a> Sources<'a> {
    /// The tree `sh` is in: its revision from git, the time from SOURCE_DATE_EPOCH.
    pub fn of_tree(
        sh: &Shell,
        description: &'a ImageDescription,
        binaries: &'a [DistBinary],
        version: &'a str,
    ) -> Result<Sources<'a>> {
        Ok(Sources {
            description,
            binaries,
            version,
            revision: revision(sh),
            epoch: source_date_epoch()?,
        })
    }
}

/// `git rev-parse HEAD`, with `-dirty` when tracked or untracked files differ from it.
pub fn revision(sh: &Shell) -> String {
    let head = cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read();
    let Ok(head) = head else {
        return "unknown".to_string();
    };
    let status = cmd!(sh, "git status --porcelain")
        .quiet()
        .ignore_stderr()
        .read();
    match status {
        Ok(changes) if changes.trim().is_empty() => head,
        _ => format!("{head}-dirty"),
    }
}

/// Assembles the layout at `output`: it appears whole, replacing what was there, or
/// not at all.
pub fn assemble(sh: &Shell, sources: &Sources, output: &Path) -> Result<Assembled> {
    assemble_then(sh, sources, output, &mut || Ok(()))
}

/// What only tests reach.
pub mod seam {
    use super::*;

    /// Assembles as `assemble` does, then fails after every blob is written and before
    /// the layout is swapped in: the e2e suite proves nothing of it leaks.
    pub fn assemble_failing_before_commit(
        sh: &Shell,
        sources: &Sources,
        output: &Path,
    ) -> Result<Assembled> {
        assemble_then(sh, sources, output, &mut || {
            bail!("injected failure before commit")
        })
    }
}

fn assemble_then(
    sh: &Shell,
    sources: &Sources,
    output: &Path,
    before_commit: &mut dyn FnMut() -> Result<()>,
) -> Result<Assembled> {
    let created = rfc3339(sources.epoch)?;
    let annotations = index_annotations(sources, &created);
    let triples: Vec<&str> = sources.binaries.iter().map(|b| b.platform.triple).collect();
    let crates = sbom::linked_crates(sh, &triples)?;
    let writer = LayoutWriter::create(output)?;
    let empty = writer.blob(MediaType::EmptyJSON, b"{}")?;
    let mut arches = Vec::new();
    let mut refs = Vec::new();
    let mut total_size = empty.size();
    for bin in sources.binaries {
        let p = bin.platform;
        let record = read_record(&bin.path)?;
        let version = sources.version;
        if record.version != version {
            bail!("{} was built as version {} not {version}; run `cargo xtask build --version {version}`", bin.path.display(), record.version);
        }
        let (manifest, layer_size, size) =
            arch_image(&writer, sources, bin, &created, &annotations)?;
        let crates = crates
            .get(p.triple)
            .with_context(|| format!("no SBOM crate list for {}", p.triple))?;
        let spdx = sbom::document(
            p,
            &record,
            crates,
            &created,
            &sources.description.annotations.source,
        );
        let (sbom, sbom_size) = sbom_artifact(&writer, &empty, &manifest, &spdx, &created)?;
        total_size += size + sbom_size;
        let tag = arch_tag(version, p);
        refs.push(named(&manifest, &tag));
        refs.push(named(&sbom, &format!("{tag}.sbom")));
        arches.push(ArchImage {
            arch: p.arch,
            manifest,
            layer_size,
            sbom,
        });
    }

    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(
            arches
                .iter()
                .map(|a| a.manifest.clone())
                .collect::<Vec<_>>(),
        )
        .annotations(annotations)
        .build()?;
    let index_desc = writer.json_blob(MediaType::ImageIndex, &index)?;
    total_size += index_desc.size();
    refs.insert(0, named(&index_desc, sources.version));
    let layout_index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(refs)
        .build()?;

    before_commit()?;
    writer.commit(&layout_index)?;
    Ok(Assembled {
        index: index_desc,
        arches,
        total_size,
    })
}

/// The annotations of the index and of each image manifest: what the image is and
/// where it came from (what `reproduce` reads back).
fn index_annotations(sources: &Sources, created: &str) -> HashMap<String, String> {
    let described = &sources.description.annotations;
    [
        (oci::ANNOTATION_VERSION, sources.version),
        (oci::ANNOTATION_REVISION, sources.revision.as_str()),
        (oci::ANNOTATION_SOURCE, described.source.as_str()),
        (oci::ANNOTATION_CREATED, created),
        (oci::ANNOTATION_TITLE, described.title.as_str()),
        (oci::ANNOTATION_DESCRIPTION, described.description.as_str()),
        (oci::ANNOTATION_LICENSES, described.licenses.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// One platform's image: layer, config and manifest blobs. Returns the manifest's
/// descriptor (with its platform), the layer's size and the sum of the three sizes.
fn arch_image(
    writer: &LayoutWriter,
    sources: &Sources,
    bin: &DistBinary,
    created: &str,
    annotations: &HashMap<String, String>,
) -> Result<(Descriptor, u64, u64)> {
    let (p, description) = (bin.platform, sources.description);
    let bytes =
        std::fs::read(&bin.path).with_context(|| format!("reading {}", bin.path.display()))?;
    crate::elf::check_bytes(&bytes, p)
        .with_context(|| format!("checking {}", bin.path.display()))?;
    let (gz, diff_id) = layer(&bytes, sources.epoch)?;
    let layer = writer.blob(MediaType::ImageLayerGzip, &gz)?;
    let config = ImageConfigurationBuilder::default()
        .created(created.to_string())
        .architecture(oci::Arch::from(p.oci_arch))
        .os(oci::Os::from(p.oci_os))
        .variant(p.oci_variant.unwrap_or_default().to_string())
        .config(
            ConfigBuilder::default()
                .user(description.user.clone())
                .entrypoint(description.entrypoint.clone())
                .working_dir(description.working_dir.clone())
                .build()?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id])
                .build()?,
        )
        .build()?;
    let mut config = serde_json::to_value(&config)?;
    if p.oci_variant.is_none() {
        // The builder has no "unset": drop the empty variant rather than write "".
        config.as_object_mut().map(|c| c.remove("variant"));
    }
    let config = writer.json_blob(MediaType::ImageConfig, &config)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.clone())
        .layers(vec![layer.clone()])
        .annotations(annotations.clone())
        .build()?;
    let mut manifest_desc = writer.json_blob(MediaType::ImageManifest, &manifest)?;
    let mut platform = PlatformBuilder::default()
        .architecture(oci::Arch::from(p.oci_arch))
        .os(oci::Os::from(p.oci_os));
    if let Some(variant) = p.oci_variant {
        platform = platform.variant(variant.to_string());
    }
    manifest_desc.set_platform(Some(platform.build()?));
    let size = layer.size() + config.size() + manifest_desc.size();
    Ok((manifest_desc, layer.size(), size))
}

/// The SBOM as an artifact whose subject is `manifest`. Returns its descriptor and the
/// size of its two blobs.
fn sbom_artifact(
    writer: &LayoutWriter,
    empty: &Descriptor,
    manifest: &Descriptor,
    spdx: &serde_json::Value,
    created: &str,
) -> Result<(Descriptor, u64)> {
    let media_type = MediaType::Other(sbom::MEDIA_TYPE.to_string());
    let spdx = writer.json_blob(media_type.clone(), spdx)?;
    let mut subject = manifest.clone();
    subject.set_platform(None);
    let sbom_manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(media_type.clone())
        .config(empty.clone())
        .layers(vec![spdx.clone()])
        .subject(subject)
        .annotations(HashMap::from([(
            oci::ANNOTATION_CREATED.to_string(),
            created.to_string(),
        )]))
        .build()?;
    let mut sbom_desc = writer.json_blob(MediaType::ImageManifest, &sbom_manifest)?;
    sbom_desc.set_artifact_type(Some(media_type));
    let size = spdx.size() + sbom_desc.size();
    Ok((sbom_desc, size))
}

/// `desc` with a ref.name, as index.json lists it.
fn named(desc: &Descriptor, name: &str) -> Descriptor {
    let mut named = desc.clone();
    named.set_annotations(Some(HashMap::from([(
        oci::ANNOTATION_REF_NAME.to_string(),
        name.to_string(),
    )])));
    named
}

/// The per-arch tag, upstream's `VERSION-linux-ARCH`.
pub fn arch_tag(version: &str, p: &platform::Platform) -> String {
    format!("{version}-{}-{}", p.oci_os, p.arch)
}

/// The default layout path: `target/oci/<name>` under the project root.
pub fn default_output(root: &Path, description: &ImageDescription) -> PathBuf {
    root.join("target/oci").join(&description.name)
}

#[cfg(test)]
mod tests {
    use super::layer;

    /// The same binary and time give the same layer bytes; the entry is /pause, 0755,
    /// root-owned, stamped with the time, whatever the file system says.
    #[test]
    fn layers_are_reproducible_with_fixed_metadata() -> anyhow::Result<()> {
        let binary = b"\x7fELF not really";
        let (first, diff_id) = layer(binary, 1_700_000_000)?;
        let (second, again) = layer(binary, 1_700_000_000)?;
        assert_eq!(first, second);
        assert_eq!(diff_id, again);
        assert_ne!(layer(binary, 0)?.0, first, "the time is in the layer");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&first[..]));
        let entries: Vec<_> = archive.entries()?.collect::<Result<_, _>>()?;
        let [entry] = entries.as_slice() else {
            panic!("{} entries, not 1", entries.len());
        };
        let header = entry.header();
        assert_eq!(entry.path()?.to_str(), Some("pause"));
        assert_eq!(
            (
                header.mode()?,
                header.uid()?,
                header.gid()?,
                header.mtime()?
            ),
            (0o755, 0, 0, 1_700_000_000)
        );
        Ok(())
    }
}
