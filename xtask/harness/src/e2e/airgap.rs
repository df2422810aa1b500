//! An air-gapped node, for real: the image as one OCI archive written by `cargo xtask
//! image --archive` (byte for byte the same when written again), imported into
//! containerd and podman with no registry anywhere, and run as a pod's sandbox under
//! the name the archive carries. `reproduce` reads the archive (reproduce.rs compares
//! it with the layout); a truncated one is one line from it.

use super::{ok, xtask_cli, CommandOutput, Fixtures};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// The name the nodes know the image by: a registry that is nowhere, so that a pull,
/// if one were tried, could only fail.
fn name(fixtures: &Fixtures) -> String {
    format!("registry.example/pause:{}", fixtures.version)
}

pub fn check(fixtures: &Fixtures) -> Result<()> {
    let dir = fixtures.work.join("airgap");
    let name = name(fixtures);
    let archive = write_archive(fixtures, &dir, &name, "pause.tar")?;
    let again = write_archive(fixtures, &dir, &name, "again.tar")?;
    ensure!(
        std::fs::read(&archive)? == std::fs::read(&again)?,
        "two runs of `image --archive` wrote different bytes"
    );
    ok(format!(
        "air gap: `image --archive --name {name}` wrote the same bytes twice ({} bytes)",
        std::fs::metadata(&archive)?.len()
    ));
    super::containerd::air_gapped(fixtures, &archive, &name)?;
    super::podman::air_gapped(fixtures, &archive, &name)?;
    truncated(fixtures, &archive, &dir)
}

/// `cargo xtask image` for this run's arches, its layout in `dir`, its archive at
/// `dir/file`.
fn write_archive(fixtures: &Fixtures, dir: &Path, name: &str, file: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let archive = dir.join(file);
    let arches: Vec<&str> = fixtures.image.arches.iter().map(|a| a.arch).collect();
    let cmd = xtask_cli(fixtures.sh)
        .args(["image", "--version", &fixtures.version.to_string()])
        .args(["--arch", &arches.join(","), "--output"])
        .arg(dir.join("layout"))
        .arg("--archive")
        .arg(&archive)
        .args(["--name", name]);
    let said = CommandOutput::of(cmd)?;
    ensure!(said.success(), "image --archive failed: {:?}", said.stderr);
    Ok(archive)
}

/// A truncated archive: `reproduce` stops with one line (exit 2).
fn truncated(fixtures: &Fixtures, archive: &Path, dir: &Path) -> Result<()> {
    let bytes = std::fs::read(archive)?;
    let cut = dir.join("truncated.tar");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3])?;
    let reference = format!("oci-archive:{}", cut.display());
    let said = CommandOutput::of(xtask_cli(fixtures.sh).args(["reproduce", &reference]))?;
    let line = said
        .sole_error()
        .filter(|_| said.code == Some(2) && said.stdout.is_empty())
        .with_context(|| {
            format!(
                "reproduce {reference}: exit {:?}, stderr {:?}",
                said.code, said.stderr
            )
        })?;
    ok(format!(
        "air gap: reproduce of a truncated archive: exit 2: {line}"
    ));
    Ok(())
}
