//! `cargo xtask reproduce`, through its command line, against the loopback registry,
//! layouts and OCI archives (each verdict the same for all three): an image it can
//! rebuild (exit 0), one whose pause differs by one string under the same annotations
//! (exit 1, naming the layer), and one whose revision no clone has (exit 2, one line).
//!
//! The images hold one platform, the table's probe (s390x): each reproduce rebuilds
//! every platform of its image from nothing.

use super::{ok, xtask_cli, CommandOutput, Fixtures};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use xtask::build::{self, BuildRecord, DistBinary};
use xtask::image::archive::{self, ImageName};
use xtask::image::{self, Sources};
use xtask_publish::reproduce::rebuild::{self, Provenance};

/// A commit id that no repository holds.
const NO_SUCH_REVISION: &str = "0000000000000000000000000000000000c0ffee";
/// A string pause prints, and the same length changed: the one-string difference.
const ORIGINAL: &[u8] = b"Warning: pause should be the first process";
const TAMPERED: &[u8] = b"Warning: PAUSE should be the first process";

/// Starts, on a thread of its own, the rebuild that `check`'s reproduce runs will ask
/// for (HEAD, the probe arch, this run's version and time), so that theirs are
/// incremental. None on a tree with uncommitted changes, where `check` skips.
pub fn rebuild_in_background(fixtures: &Fixtures) -> Option<JoinHandle<Result<()>>> {
    let revision = image::revision(fixtures.sh);
    if revision.ends_with("-dirty") {
        return None;
    }
    let provenance = Provenance {
        version: fixtures.version.clone(),
        revision,
        source: String::new(),
        created: "SOURCE_DATE_EPOCH".to_string(),
        epoch: image::source_date_epoch().ok()?,
    };
    Some(std::thread::spawn(move || {
        let sh = xtask::shell()?;
        rebuild::rebuild(&sh, &provenance, &[xtask::platform::probe()]).map(|_| ())
    }))
}

/// Why reproduce cannot run on this tree.
pub const NEEDS_A_COMMIT: &str =
    "reproduce needs a committed tree (it rebuilds HEAD): commit or stash the changes";

pub fn check(fixtures: &Fixtures) -> Result<()> {
    if !fixtures.rebuilt()? {
        return fixtures.skip_or_fail("reproduce", NEEDS_A_COMMIT, "");
    }
    let sh = fixtures.sh;
    let revision = image::revision(sh);
    let registry = fixtures.registry()?;
    let dir = fixtures.work.join("reproduce");
    let probe = xtask::platform::probe();
    let probe_bin = fixtures
        .binaries
        .iter()
        .find(|b| b.platform.arch == probe.arch)
        .with_context(|| {
            format!(
                "the e2e image has no {} binary; include it in --arch",
                probe.arch
            )
        })?;
    let tampered = tampered_copy(probe_bin, &dir.join("tampered-dist"))?;
    let cases = [
        ("identical", vec![probe_bin.clone()], revision.clone(), 0),
        ("tampered", vec![tampered], revision.clone(), 1),
        (
            "unknown-revision",
            vec![probe_bin.clone()],
            NO_SUCH_REVISION.to_string(),
            2,
        ),
    ];
    let authfile = registry.authfile(super::registry::PASSWORD)?;
    for (name, binaries, revision, code) in cases {
        let layout = dir.join(name).join("pause");
        let sources = Sources {
            revision,
            ..Sources::of_tree(sh, &fixtures.description, &binaries, &fixtures.version)?
        };
        image::assemble(sh, &sources, &layout)?;
        let to = format!("{}/reproduce-{name}:{}", registry.host, fixtures.version);
        let digest = super::registry::push(&layout, &to, &authfile)?;
        let by_digest = format!("{}/reproduce-{name}@{digest}", registry.host);
        let oci = format!("oci:{}:{}", layout.display(), fixtures.version);
        // The same image as an operator is handed it: an archive (`image --archive`).
        let archive = dir.join(name).join("pause.tar");
        let image_name: ImageName =
            format!("registry.example/reproduce-{name}:{}", fixtures.version).parse()?;
        let version = fixtures.version.to_string();
        let read = xtask::image::layout::Layout::read(&layout, Some(&version))?;
        archive::write(&read, &image_name, sources.epoch, &archive)?;
        let oci_archive = format!("oci-archive:{}:{image_name}", archive.display());
        for reference in [by_digest, oci, oci_archive] {
            let said = reproduce(fixtures, &reference, &authfile)?;
            expect(&said, code, &reference, probe.arch)?;
        }
    }
    Ok(())
}

fn reproduce(fixtures: &Fixtures, reference: &str, authfile: &Path) -> Result<CommandOutput> {
    let cmd = xtask_cli(fixtures.sh).args(["reproduce", reference, "--authfile"]);
    CommandOutput::of(cmd.arg(authfile))
}

fn expect(said: &CommandOutput, code: i32, reference: &str, arch: &str) -> Result<()> {
    let shown = || format!("stdout {:?} stderr {:?}", said.stdout, said.stderr);
    ensure!(
        said.code == Some(code),
        "reproduce {reference} exited {:?}, not {code}: {}",
        said.code,
        shown()
    );
    let last = said.stdout.lines().last().unwrap_or_default();
    match code {
        0 => {
            ensure!(
                said.stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("{arch} identical ")))
                    && last.starts_with("identical: "),
                "reproduce {reference} did not report identical: {}",
                shown()
            );
            ok(format!("reproduce {reference}: {last}"));
        }
        1 => {
            let line = said
                .stdout
                .lines()
                .find(|l| l.starts_with(&format!("{arch} layer differs: published sha256:")))
                .with_context(|| format!("reproduce {reference} named no layer: {}", shown()))?;
            ensure!(
                line.contains(" rebuilt sha256:") && last.starts_with("differs: 1 of 1"),
                "reproduce {reference}: {}",
                shown()
            );
            ok(format!(
                "reproduce {reference} (one string changed): exit 1, {line}"
            ));
        }
        _ => {
            let unknown = format!("revision {NO_SUCH_REVISION} is not in this clone");
            let error = said
                .sole_error()
                .filter(|e| e.contains(&unknown) && said.stdout.is_empty())
                .with_context(|| {
                    format!(
                        "reproduce {reference} did not end with one error line: {}",
                        shown()
                    )
                })?;
            ok(format!("reproduce {reference}: exit 2, {error}"));
        }
    }
    Ok(())
}

/// `bin` with one string changed, and its build record, in `dir`.
fn tampered_copy(bin: &DistBinary, dir: &Path) -> Result<DistBinary> {
    let mut bytes = std::fs::read(&bin.path)?;
    let at: Vec<usize> = bytes
        .windows(ORIGINAL.len())
        .enumerate()
        .filter(|(_, w)| *w == ORIGINAL)
        .map(|(i, _)| i)
        .collect();
    let [at] = at.as_slice() else {
        bail!(
            "{} holds {:?} {} times, not once",
            bin.path.display(),
            String::from_utf8_lossy(ORIGINAL),
            at.len()
        );
    };
    bytes[*at..*at + TAMPERED.len()].copy_from_slice(TAMPERED);
    std::fs::create_dir_all(dir)?;
    let path: PathBuf = dir.join(bin.platform.dist_name);
    std::fs::write(&path, &bytes)?;
    let sha256 = build::sha256_hex(&bytes);
    let mut record: BuildRecord = build::read_record(&bin.path)?;
    record.sha256 = sha256.clone();
    std::fs::write(
        build::record_path(&path),
        serde_json::to_string_pretty(&record)?,
    )?;
    Ok(DistBinary {
        platform: bin.platform,
        path,
        size: bytes.len() as u64,
        sha256,
    })
}
