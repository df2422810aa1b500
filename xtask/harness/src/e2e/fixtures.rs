//! What every check gets: the built binaries and the assembled layout, made before any
//! check runs; and the fixtures some checks share (a registry, the image pushed to it,
//! a workload image, the warm rebuild of HEAD), each made on first use by whichever
//! check needs it, so that any check runs alone and in any company.

use super::registry::Registry;
use anyhow::{bail, Context, Result};
use std::cell::{OnceCell, RefCell};
use std::path::PathBuf;
use std::thread::JoinHandle;
use xshell::Shell;
use xtask::build::DistBinary;
use xtask::image::description::ImageDescription;
use xtask::image::Assembled;
use xtask::platform;

pub struct Fixtures<'a> {
    pub sh: &'a Shell,
    pub description: ImageDescription,
    pub binaries: Vec<DistBinary>,
    pub version: xtask::version::Version,
    pub work: PathBuf,
    pub layout: PathBuf,
    pub image: Assembled,
    registry: OnceCell<Registry>,
    pushed: OnceCell<PushedImage>,
    workload: OnceCell<String>,
    /// The warm rebuild, while it runs in the background.
    rebuilding: RefCell<Option<JoinHandle<Result<()>>>>,
    /// How the warm rebuild ended (an error as its text: checks after the first that
    /// meets it see it again).
    rebuilt: OnceCell<Result<(), String>>,
    /// What the checks so far skipped (a developer's machine only; CI fails instead).
    skipped: RefCell<Vec<String>>,
}

/// The e2e image in the shared registry, by tag and by digest.
pub struct PushedImage {
    pub by_tag: String,
    pub by_digest: String,
}

impl<'a> Fixtures<'a> {
    pub fn new(
        sh: &'a Shell,
        description: ImageDescription,
        binaries: Vec<DistBinary>,
        version: xtask::version::Version,
        work: PathBuf,
        image: Assembled,
    ) -> Fixtures<'a> {
        Fixtures {
            sh,
            description,
            binaries,
            version,
            layout: work.join("layout/pause"),
            work,
            image,
            registry: OnceCell::new(),
            pushed: OnceCell::new(),
            workload: OnceCell::new(),
            rebuilding: RefCell::new(None),
            rebuilt: OnceCell::new(),
            skipped: RefCell::new(Vec::new()),
        }
    }
}

impl Fixtures<'_> {
    /// What the e2e image is assembled from: this tree, at this run's version.
    pub fn sources(&self) -> Result<xtask::image::Sources<'_>> {
        xtask::image::Sources::of_tree(self.sh, &self.description, &self.binaries, &self.version)
    }

    /// The row of the machine we run on: runtimes run the native binary.
    pub fn host_platform(&self) -> Result<&'static platform::Platform> {
        let p = platform::host()?;
        if !self.image.arches.iter().any(|a| a.arch == p.arch) {
            bail!(
                "the e2e image has no {} entry; include it in --arch",
                p.arch
            );
        }
        Ok(p)
    }

    /// The shared docker-registry (htpasswd auth), started on first use.
    pub fn registry(&self) -> Result<&Registry> {
        if let Some(registry) = self.registry.get() {
            return Ok(registry);
        }
        let registry = Registry::start(self.sh, &self.work.join("registry"))?;
        Ok(self.registry.get_or_init(|| registry))
    }

    /// The e2e image pushed to the shared registry as `pause:VERSION`, on first use.
    pub fn pushed(&self) -> Result<&PushedImage> {
        if let Some(pushed) = self.pushed.get() {
            return Ok(pushed);
        }
        let registry = self.registry()?;
        let by_tag = format!("{}/pause:{}", registry.host, self.version);
        let authfile = registry.authfile(super::registry::PASSWORD)?;
        let digest = super::registry::push(&self.layout, &by_tag, &authfile)
            .context("pushing the e2e image to the shared registry")?;
        let by_digest = format!("{}/pause@{digest}", registry.host);
        Ok(self
            .pushed
            .get_or_init(|| PushedImage { by_tag, by_digest }))
    }

    /// A busybox image in the shared registry, for workloads beside pause, on first use.
    pub fn workload_image(&self) -> Result<&str> {
        if let Some(workload) = self.workload.get() {
            return Ok(workload);
        }
        let reference = format!("{}/busybox:e2e", self.registry()?.host);
        super::containerd::push_workload_image(self, &reference)?;
        Ok(self.workload.get_or_init(|| reference))
    }

    /// Starts, on a thread of its own, the rebuild of HEAD that reproduce's runs will ask
    /// for (the probe arch, this run's version and time), so that theirs are incremental.
    pub fn rebuild_in_background(&self) {
        if self.rebuilt.get().is_none() && self.rebuilding.borrow().is_none() {
            *self.rebuilding.borrow_mut() = super::reproduce::rebuild_in_background(self);
        }
    }

    /// The warm rebuild, done: joined if it runs in the background, else done now.
    /// `Ok(false)` on a tree with uncommitted changes, where there is none.
    pub fn rebuilt(&self) -> Result<bool> {
        if xtask::image::revision(self.sh).ends_with("-dirty") {
            return Ok(false);
        }
        let outcome = self.rebuilt.get_or_init(|| {
            self.rebuild_in_background();
            let handle = self.rebuilding.borrow_mut().take();
            let joined = match handle {
                Some(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the rebuild panicked"))),
                None => Err(anyhow::anyhow!("the rebuild did not start")),
            };
            joined.map_err(|err| format!("{err:#}"))
        });
        match outcome {
            Ok(()) => Ok(true),
            Err(err) => bail!("rebuilding HEAD in its reproduce worktree: {err}"),
        }
    }

    /// A check that cannot run here: one `skip WHAT: WHY` line on a developer's machine
    /// (and a note in the table), a failure under CI=true, where skipping would hide it.
    pub fn skip_or_fail(&self, what: &str, why: &str, fix: &str) -> Result<()> {
        super::skip_or_fail(self.sh, what, why, fix)?;
        self.skipped.borrow_mut().push(what.to_string());
        Ok(())
    }

    /// What was skipped since the last call.
    pub fn take_skipped(&self) -> Vec<String> {
        std::mem::take(&mut self.skipped.borrow_mut())
    }
}
