//! A registry that fails for a moment, as a release meets one: a loopback proxy in
//! front of the real registry that answers blob uploads with 503 or 500, or drops the
//! connection, then forwards. Push must retry, bounded, and complete; a registry that
//! never recovers must end the push with one line and no tag.

use super::liar::{Answer, Liar};
use super::registry::{served, PASSWORD};
use super::{ok, xtask_cli, CommandOutput, Fixtures};
use anyhow::{ensure, Context, Result};
use std::sync::Mutex;

/// A liar in front of `upstream` that answers the first blob uploads with `faults`,
/// then every later one with `after` (`Forward`: pass them on).
fn failing_uploads(upstream: &str, faults: Vec<Answer>, after: Answer) -> Result<Liar> {
    let plan = Mutex::new(faults.into_iter());
    Liar::start(Some(upstream), move |request| {
        if !request.is("POST", "/blobs/uploads/") {
            return Answer::Forward;
        }
        let next = plan.lock().ok().and_then(|mut p| p.next());
        next.unwrap_or_else(|| after.clone())
    })
}

/// Push through a registry that fails its first three upload tries, then through one
/// that never recovers.
pub fn check(fixtures: &Fixtures) -> Result<()> {
    let registry = fixtures.registry()?;
    let flaky = failing_uploads(
        &registry.host,
        vec![Answer::status(503), Answer::Drop, Answer::status(500)],
        Answer::Forward,
    )?;
    let authfile = registry.authfile_as(flaky.host(), PASSWORD)?;
    let to = format!("{}/flaky:{}", flaky.host(), fixtures.version);
    let digest = super::registry::push(&fixtures.layout, &to, &authfile)?;
    ensure!(
        digest == fixtures.image.index.digest().to_string(),
        "the retried push gave {digest}, not the layout's index"
    );
    let uploads = flaky.count("POST", "/blobs/uploads/");
    ensure!(
        uploads > 3,
        "the three faults were not all met: {uploads} upload starts"
    );
    ok(format!(
        "retry: push through a registry that answered 503, a dropped connection and 500 to the first uploads completed ({uploads} upload starts), {digest}"
    ));

    let broken = failing_uploads(&registry.host, Vec::new(), Answer::status(503))?;
    let authfile = registry.authfile_as(broken.host(), PASSWORD)?;
    let to = format!("{}/broken:{}", broken.host(), fixtures.version);
    let (sh, layout) = (fixtures.sh, &fixtures.layout);
    let push = xtask_cli(sh).args(["push", "--layout"]).arg(layout);
    let said = CommandOutput::of(push.args(["--to", &to, "--authfile"]).arg(&authfile))?;
    let tries = broken.count("POST", "/blobs/uploads/");
    let gave_up = format!("gave up after {} tries", xtask_publish::registry::TRIES);
    let error = said
        .sole_error()
        .filter(|e| !said.success() && e.contains(&gave_up))
        .filter(|_| tries == xtask_publish::registry::TRIES as usize)
        .with_context(|| {
            format!(
                "a push to a registry that never recovers: {tries} upload tries, stderr {:?}",
                said.stderr
            )
        })?;
    // Nothing was tagged: the real registry has no such tag.
    let tag = format!("{}/broken:{}", registry.host, fixtures.version);
    ensure!(
        served(sh, &tag).is_err(),
        "a push that failed left {tag} tagged"
    );
    ok(format!(
        "retry: a registry that always answers 503 gets {tries} tries, then one line, no tag: {error}"
    ));
    Ok(())
}
