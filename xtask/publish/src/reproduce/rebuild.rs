//! Rebuilding a published image from its annotations: the revision checked out in a
//! worktree of its own under `target/reproduce/` (the user's tree is never touched),
//! built with the zig builder and the pinned toolchain, assembled at the published
//! creation time.

use anyhow::{bail, Context, Result};
use oci_spec::image as oci;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};
use xtask::build;
use xtask::flags::Builder;
use xtask::image::description::ImageDescription;
use xtask::image::{self, Sources};
use xtask::platform::Platform;

/// What the index annotations say about how the image was made.
pub struct Provenance {
    pub version: xtask::version::Version,
    pub revision: String,
    pub source: String,
    pub created: String,
    pub epoch: i64,
}

impl Provenance {
    pub fn of(annotations: &HashMap<String, String>) -> Result<Provenance> {
        let get = |key: &str| {
            annotations.get(key).cloned().with_context(|| {
                format!("the image index has no {key} annotation; only images `cargo xtask image` made can be reproduced")
            })
        };
        let version: xtask::version::Version = get(oci::ANNOTATION_VERSION)?.parse()?;
        let revision = get(oci::ANNOTATION_REVISION)?;
        let created = get(oci::ANNOTATION_CREATED)?;
        let source = annotations
            .get(oci::ANNOTATION_SOURCE)
            .cloned()
            .unwrap_or_default();
        if let Some(commit) = revision.strip_suffix("-dirty") {
            bail!("the image was built from uncommitted changes on {commit} (revision {revision}); no commit holds its source, so it cannot be rebuilt");
        }
        if revision.len() != 40 || !revision.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("the image's revision {revision:?} is not a git commit id");
        }
        let epoch = chrono::DateTime::parse_from_rfc3339(&created)
            .with_context(|| format!("the image's created {created:?} is not an RFC 3339 time"))?
            .timestamp();
        Ok(Provenance {
            version,
            revision,
            source,
            created,
            epoch,
        })
    }
}

/// Builds `platforms` of the image `provenance` describes; returns the layout.
pub fn rebuild(
    sh: &Shell,
    provenance: &Provenance,
    platforms: &[&'static Platform],
) -> Result<PathBuf> {
    let root = sh.current_dir();
    let rev = &provenance.revision;
    ensure_commit(sh, provenance)?;
    let short = &rev[..12];
    let tree = root.join("target/reproduce").join(short);
    check_out(sh, &tree, rev)?;
    let output = root
        .join("target/reproduce/images")
        .join(format!("{short}-{}", provenance.version));
    let names: Vec<&str> = platforms.iter().map(|p| p.arch).collect();
    eprintln!(
        "rebuilding {} at {short} in {} ({}), created {}",
        provenance.version,
        tree.display(),
        names.join(" "),
        provenance.created
    );
    let tree_sh = Shell::new()?;
    tree_sh.change_dir(&tree);
    if same_build_tool(sh, rev)? {
        // This xtask is the revision's own: run it here, on the worktree.
        share_zig(&root, &tree)?;
        let binaries = build::build(&tree_sh, platforms, &provenance.version, Builder::Zig)?;
        let description = ImageDescription::load(&tree)?;
        let sources = Sources {
            description: &description,
            binaries: &binaries,
            version: &provenance.version,
            revision: image::revision(&tree_sh),
            epoch: provenance.epoch,
        };
        image::assemble(&tree_sh, &sources, &output)?;
    } else {
        // The revision's own xtask builds it, as its release did.
        eprintln!("the revision's xtask differs from this one: building it");
        let (version, arch, epoch) = (
            &provenance.version,
            names.join(","),
            provenance.epoch.to_string(),
        );
        cmd!(tree_sh, "cargo run --locked --quiet -p xtask -- image --version {version} --arch {arch} --builder zig --output {output}")
            .env("SOURCE_DATE_EPOCH", epoch)
            .run()
            .with_context(|| format!("rebuilding {rev} with its own `cargo xtask image`"))?;
    }
    Ok(output)
}

/// The commit is in this clone, or fetched from `origin`, or we say how to get it.
fn ensure_commit(sh: &Shell, provenance: &Provenance) -> Result<()> {
    let rev = &provenance.revision;
    let object = format!("{rev}^{{commit}}");
    let present = |sh: &Shell| {
        cmd!(sh, "git cat-file -e {object}")
            .quiet()
            .ignore_stderr()
            .run()
            .is_ok()
    };
    if present(sh) {
        return Ok(());
    }
    if cmd!(sh, "git remote get-url origin")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok()
    {
        eprintln!("revision {rev} is not in this clone: fetching it from origin");
        let fetched = cmd!(sh, "git fetch --quiet origin {rev}")
            .quiet()
            .ignore_stderr()
            .run();
        if fetched.is_ok() && present(sh) {
            return Ok(());
        }
    }
    let source = if provenance.source.is_empty() {
        "the image's source repository"
    } else {
        provenance.source.as_str()
    };
    bail!("revision {rev} is not in this clone or its origin; fetch it (`git fetch {source} {rev}`) and run again")
}

/// `tree` holds exactly `rev`: a detached worktree, reset and cleaned (its own
/// `target/` kept, so a second reproduce of the same revision builds incrementally).
fn check_out(sh: &Shell, tree: &Path, rev: &str) -> Result<()> {
    if tree.join(".git").is_file() {
        let reset = cmd!(sh, "git -C {tree} checkout --quiet --force --detach {rev}")
            .quiet()
            .run()
            .and_then(|()| {
                cmd!(sh, "git -C {tree} clean --quiet -ffdx --exclude=/target")
                    .quiet()
                    .run()
            });
        if reset.is_ok() {
            return Ok(());
        }
        std::fs::remove_dir_all(tree).with_context(|| format!("removing {}", tree.display()))?;
    } else if tree.exists() {
        std::fs::remove_dir_all(tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    cmd!(sh, "git worktree prune").quiet().run()?;
    cmd!(sh, "git worktree add --quiet --force --detach {tree} {rev}")
        .quiet()
        .run()
        .with_context(|| format!("checking out {rev} in {}", tree.display()))
}

/// True when the revision's xtask is the one running: its sources (and the workspace
/// manifest, lock file and cargo config) equal this tree's, untracked files included.
fn same_build_tool(sh: &Shell, rev: &str) -> Result<bool> {
    let paths = [
        "xtask",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        ":(exclude)xtask/harness",
    ];
    let unchanged = cmd!(sh, "git diff --quiet {rev} -- {paths...}")
        .quiet()
        .run()
        .is_ok();
    let untracked = cmd!(sh, "git ls-files --others --exclude-standard -- {paths...}")
        .quiet()
        .read()?;
    Ok(unchanged && untracked.trim().is_empty())
}

/// The worktree uses this tree's zig venv: the same pinned download, and this xtask
/// checks the same pins.
fn share_zig(root: &Path, tree: &Path) -> Result<()> {
    let ours = root.join("target/tools/venv");
    let theirs = tree.join("target/tools/venv");
    if !ours.join("pins.txt").is_file() || theirs.exists() {
        return Ok(());
    }
    xtask::files::create_dir_all(tree.join("target/tools"))?;
    std::os::unix::fs::symlink(&ours, &theirs)
        .with_context(|| format!("linking {} to {}", theirs.display(), ours.display()))?;
    Ok(())
}
