//! Proof for the image and the push: reproducible, atomic, and what real clients
//! (docker-registry, skopeo, umoci) read back is right for every arch.

use super::registry::{served, Registry, PASSWORD, USER};
use super::{ok, xtask_cli, CommandOutput, Fixtures};
use anyhow::{bail, ensure, Context, Result};
use flate2::read::GzDecoder;
use oci_spec::image::{ImageIndex, ImageManifest};
use std::io::Read;
use std::path::Path;
use xshell::{cmd, Shell};
use xtask::elf;
use xtask::image::{self, arch_tag, ArchImage};
use xtask_publish::push;

/// Assembles twice into two directories: the index digests must be equal.
/// The layout itself: reproducible, and written atomically.
pub fn layout(fixtures: &Fixtures) -> Result<()> {
    reproducible(fixtures)?;
    atomic(fixtures)
}

fn reproducible(fixtures: &Fixtures) -> Result<()> {
    let sources = fixtures.sources()?;
    let first = image::assemble(fixtures.sh, &sources, &fixtures.work.join("repro-a/pause"))?;
    let second = image::assemble(fixtures.sh, &sources, &fixtures.work.join("repro-b/layout"))?;
    ensure!(
        first.index.digest() == second.index.digest(),
        "two assemblies differ: {} vs {}",
        first.index.digest(),
        second.index.digest()
    );
    ensure!(
        first.index.digest() == fixtures.image.index.digest(),
        "the e2e layout differs from a fresh assembly"
    );
    ok(format!(
        "image: reproducible, index {} in two directories",
        first.index.digest()
    ));
    Ok(())
}

/// A run that fails after writing every blob must leave the previous layout as it was.
fn atomic(fixtures: &Fixtures) -> Result<()> {
    let output = fixtures.work.join("atomic/pause");
    let sources = fixtures.sources()?;
    image::assemble(fixtures.sh, &sources, &output)?;
    let before = snapshot(&output)?;
    // Another time: every blob differs, so any that leaked would show.
    let other = image::Sources {
        epoch: sources.epoch + 1,
        ..fixtures.sources()?
    };
    let err = image::seam::assemble_failing_before_commit(fixtures.sh, &other, &output);
    ensure!(
        err.as_ref()
            .is_err_and(|e| e.to_string().contains("injected failure")),
        "the injected failure did not fail the assembly: {:?}",
        err.map(|a| a.index.digest().to_string())
    );
    ensure!(
        snapshot(&output)? == before,
        "a failed assembly changed the layout at {}",
        output.display()
    );
    let leftovers: Vec<_> = std::fs::read_dir(output.parent().unwrap())?
        .flatten()
        .filter(|e| e.path() != output)
        .collect();
    ensure!(
        leftovers.is_empty(),
        "a failed assembly left {:?} behind",
        leftovers.iter().map(|e| e.path()).collect::<Vec<_>>()
    );
    ok("image: a run failed mid-way left the previous layout byte-identical and no staging behind");
    Ok(())
}

/// Every file in a layout with its bytes, sorted.
fn snapshot(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)?.flatten() {
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                files.push((
                    entry.path().strip_prefix(dir)?.display().to_string(),
                    std::fs::read(entry.path())?,
                ));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Push (interrupted, then completed), then read back with skopeo and umoci. A
/// repository of its own, so the push starts with nothing there.
pub fn registry(fixtures: &Fixtures) -> Result<()> {
    let registry = fixtures.registry()?;
    let reference = format!("{}/pause-push", registry.host);
    let digest = push_resumes(fixtures, registry, &reference)?;
    served_as_pushed(fixtures, &reference, &digest)?;
    every_arch_pulls(fixtures, &reference)?;
    sboms_are_referrers(fixtures.sh, &reference, &fixtures.image.arches)?;
    ok("sbom: every arch's SPDX artifact is listed under its sha256-<hex> referrers tag");
    push_refusals(fixtures, registry, &reference)?;
    credential_helper(fixtures, registry, &reference)
}

/// A push killed after two blob uploads completes when run again.
fn push_resumes(fixtures: &Fixtures, registry: &Registry, reference: &str) -> Result<String> {
    let good = registry.authfile(super::registry::PASSWORD)?;
    let rt = xtask_publish::runtime()?;
    let err = rt
        .block_on(push::seam::push_interrupted(
            &fixtures.layout,
            &reference.parse()?,
            &super::registry::options(&good),
            2,
        ))
        .unwrap_err();
    ensure!(
        format!("{err:#}").contains("interrupted"),
        "unexpected: {err:#}"
    );
    let digest = super::registry::push(&fixtures.layout, reference, &good)?;
    ensure!(
        digest == fixtures.image.index.digest().to_string(),
        "pushed {digest}, layout has {}",
        fixtures.image.index.digest()
    );
    ok(format!(
        "push: interrupted after 2 blobs, completed on the next run: {reference}:{} {digest}",
        fixtures.version
    ));
    Ok(digest)
}

/// What the registry serves under the tag is the layout's index, byte for byte.
fn served_as_pushed(fixtures: &Fixtures, reference: &str, digest: &str) -> Result<()> {
    let (sh, version) = (fixtures.sh, &fixtures.version);
    let raw = served(sh, &format!("{reference}:{version}"))?;
    let served = format!("sha256:{}", xtask::build::sha256_hex(&raw));
    ensure!(
        served == digest,
        "the registry serves {served} for {version}, the layout's index is {digest}"
    );
    ok(format!(
        "registry: serves {served} for {reference}:{version}, the layout's index digest"
    ));
    Ok(())
}

/// skopeo pulls each arch's binary by `--override-arch`, and it runs there; umoci
/// unpacks each per-arch tag of the layout with /pause 0755.
fn every_arch_pulls(fixtures: &Fixtures, reference: &str) -> Result<()> {
    let (sh, version) = (fixtures.sh, &fixtures.version);
    let creds = format!("{USER}:{PASSWORD}");
    for arch in &fixtures.image.arches {
        let p = xtask::platform::by_arch(arch.arch).context("arch not in the table")?;
        let dest = fixtures.work.join(format!("skopeo-{}", p.arch));
        let oci_arch = p.oci_arch;
        let variant: Vec<String> = p
            .oci_variant
            .map(|v| vec!["--override-variant".to_string(), v.to_string()])
            .unwrap_or_default();
        cmd!(sh, "skopeo copy -q --src-tls-verify=false --src-creds {creds} --override-arch {oci_arch} {variant...} docker://{reference}:{version} oci:{dest}:{version}").quiet().run()?;
        let bytes = pause_from_layout(&dest, version)?;
        elf::check_bytes(&bytes, p)
            .with_context(|| format!("skopeo --override-arch {oci_arch} gave the wrong binary"))?;
        // And the pulled binary runs on its architecture (under qemu-user).
        let pulled = fixtures.work.join(format!("pulled-{}", p.dist_name));
        std::fs::write(&pulled, &bytes)?;
        std::fs::set_permissions(&pulled, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let qemu = p.qemu;
        let said = cmd!(sh, "{qemu} {pulled} -v").quiet().read()?;
        ensure!(
            said == xtask::version::line(version),
            "the pulled {} binary said {said:?} under {qemu}",
            p.arch
        );
        // umoci by per-arch ref, from our own layout: /pause must be there, 0755.
        let bundle = fixtures.work.join(format!("umoci-{}", p.arch));
        let layout = &fixtures.layout;
        let tag = arch_tag(version, p);
        cmd!(sh, "umoci unpack --image {layout}:{tag} {bundle}")
            .quiet()
            .ignore_stderr()
            .run()?;
        let pause = bundle.join("rootfs/pause");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pause)?.permissions())
                & 0o7777;
        ensure!(
            mode == 0o755,
            "umoci unpacked {} with mode {mode:o}, not 755",
            pause.display()
        );
        elf::check_bytes(&std::fs::read(&pause)?, p)?;
        ok(format!(
            "{}: skopeo --override-arch {oci_arch} gives an ELF {} that runs under {qemu}; umoci {tag} gives /pause 0755",
            p.arch, p.elf_machine_name
        ));
    }

    Ok(())
}

/// Each arch's SBOM is found through the referrers fallback tag of its manifest in
/// `reference` (a repository).
pub fn sboms_are_referrers(sh: &Shell, reference: &str, arches: &[ArchImage]) -> Result<()> {
    for arch in arches {
        let fallback = xtask::image::layout::referrers_tag(&arch.manifest);
        let raw = served(sh, &format!("{reference}:{fallback}"))?;
        let referrers: ImageIndex =
            serde_json::from_slice(&raw).context("the referrers fallback tag is not an index")?;
        ensure!(
            referrers
                .manifests()
                .iter()
                .any(|d| d.digest() == arch.sbom.digest()),
            "{fallback} does not list the {} SBOM",
            arch.arch
        );
    }
    Ok(())
}

/// Bad input, through the real command line, `cargo xtask push` (quiet, and offline
/// in this network namespace): one line, non-zero exit. Through cargo, not a path to
/// the binary: cargo may have replaced target/debug/xtask since it started.
fn push_refusals(fixtures: &Fixtures, registry: &Registry, reference: &str) -> Result<()> {
    let (sh, host, layout) = (fixtures.sh, &registry.host, &fixtures.layout);
    let wrong = registry.authfile("wrong-password")?;
    let no_helper = fixtures.work.join("no-helper.json");
    std::fs::write(
        &no_helper,
        format!(r#"{{"credHelpers":{{"{host}":"pause-e2e-absent"}}}}"#),
    )?;
    for (args, expected) in [
        (
            vec![
                "--to".to_string(),
                reference.to_string(),
                "--authfile".to_string(),
                wrong.display().to_string(),
            ],
            format!("authentication to {host} failed"),
        ),
        (
            vec![
                "--to".to_string(),
                reference.to_string(),
                "--authfile".to_string(),
                no_helper.display().to_string(),
            ],
            "docker-credential-pause-e2e-absent".to_string(),
        ),
        (
            vec!["--to".to_string(), "127.0.0.1:1/pause".to_string()],
            "cannot reach registry 127.0.0.1:1".to_string(),
        ),
        (
            vec!["--to".to_string(), "127.0.0.1:5000/Bad Name".to_string()],
            "invalid reference".to_string(),
        ),
    ] {
        let said = CommandOutput::of(
            xtask_cli(sh)
                .args(["push", "--layout"])
                .arg(layout)
                .args(&args),
        )?;
        let (args, stderr) = (args.join(" "), &said.stderr);
        ensure!(!said.success(), "push {args} succeeded");
        ensure!(
            stderr.contains(&expected),
            "push {args} said {stderr:?}, expected {expected:?}"
        );
        // One error line, the last; before it, at most the notes of bounded retries.
        let notes = stderr.lines().filter(|l| !l.starts_with("error:"));
        let error = said
            .sole_error()
            .filter(|_| notes.clone().all(|l| l.contains("failed for a moment")))
            .with_context(|| format!("push {args} did not end with one error line: {stderr:?}"))?;
        ok(format!(
            "push refuses with one line{}: {error}",
            match notes.count() {
                0 => String::new(),
                n => format!(" (after {n} retries)"),
            },
        ));
    }
    Ok(())
}

/// Credentials from a credential helper, as `docker login` leaves them with
/// `credHelpers`: a stub `docker-credential-pause-e2e` on PATH answers for the
/// registry, and push goes through with what it said.
fn credential_helper(fixtures: &Fixtures, registry: &Registry, reference: &str) -> Result<()> {
    let (sh, host, layout) = (fixtures.sh, &registry.host, &fixtures.layout);
    let dir = fixtures.work.join("credential-helper");
    std::fs::create_dir_all(&dir)?;
    let helper = dir.join("docker-credential-pause-e2e");
    // Fixed text: the helper protocol's `get` reads the server on stdin.
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread -r server\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{}\",\"Secret\":\"{}\"}}' \"$server\"\n",
            super::registry::USER,
            super::registry::PASSWORD
        ),
    )?;
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"credHelpers":{{"{host}":"pause-e2e"}}}}"#),
    )?;
    let path = format!("{}:{}", dir.display(), sh.var("PATH")?);
    let to = format!("{reference}:helper");
    let push = xtask_cli(sh).args(["push", "--layout"]).arg(layout);
    let said = CommandOutput::of(
        push.args(["--to", &to, "--authfile"])
            .arg(&config)
            .env("PATH", path),
    )?;
    ensure!(
        said.success(),
        "push with credentials from docker-credential-pause-e2e failed: {}",
        said.stderr
    );
    ok(format!(
        "push: credentials from a credential helper (credHelpers.{host} → docker-credential-pause-e2e on PATH), {to}"
    ));
    Ok(())
}

/// The `pause` entry of the single layer of the (single-arch) image `tag` in `layout`.
fn pause_from_layout(layout: &Path, tag: &str) -> Result<Vec<u8>> {
    let top: ImageIndex = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let desc = top
        .manifests()
        .iter()
        .find(|d| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .map(String::as_str)
                == Some(tag)
        })
        .with_context(|| format!("{tag} not in {}", layout.display()))?;
    let blob = |digest: &str| xtask::image::layout::read_blob(layout, digest);
    let manifest: ImageManifest = serde_json::from_slice(&blob(desc.digest().as_ref())?)?;
    let [layer] = manifest.layers().as_slice() else {
        bail!("expected one layer")
    };
    let gz = blob(layer.digest().as_ref())?;
    let mut archive = tar::Archive::new(GzDecoder::new(&gz[..]));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.as_os_str() == "pause" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            return Ok(bytes);
        }
    }
    bail!("no pause entry in the layer")
}
