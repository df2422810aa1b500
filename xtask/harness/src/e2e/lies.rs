//! Fail closed: `cargo xtask push` and `reproduce`, through their command line,
//! against registries that misbehave on purpose (`liar.rs`), alone or in front of the
//! real one. Each case checks the exit status, the one `error:` line, and what the
//! registry received: a body past its bound ends the request at once, unretried and
//! with bounded memory; only a 404 reads as "not there"; nothing is tagged before all
//! it names is in place; credentials reach no other host and no output line.

use super::liar::{Answer, Liar, Request};
use super::registry::{authfile, options, served, Registry, PASSWORD, USER};
use super::{as_cli, ok, xtask_cli, CommandOutput, Fixtures, XTASK_RUN};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use xshell::cmd;
use xtask_publish::registry::{Access, Session, Target, TRIES};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The peak memory a command may reach against an endless body.
const MEMORY_BOUND_KIB: u64 = 256 * 1024;
/// The password that must appear in no output line.
const SECRET: &str = "pause-e2e-s3cret-pw";

pub fn check(fixtures: &Fixtures) -> Result<()> {
    let registry = fixtures.registry()?;
    let dir = fixtures.work.join("lies");
    std::fs::create_dir_all(&dir)?;
    endless_manifest(fixtures, registry, &dir)?;
    nested_json(fixtures, registry)?;
    wrong_bytes(fixtures, registry)?;
    dripping(fixtures, registry)?;
    referrers_failing(fixtures, registry)?;
    referrers_kept(fixtures, registry)?;
    fails_after_manifests(fixtures, registry)?;
    redirect(fixtures, registry)?;
    endless_token(fixtures, registry)?;
    secret_never_shown(fixtures, &dir)
}

/// A registry with no auth that answers `/v2/` and hands every other request to `rule`.
fn open_liar(rule: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Result<Liar> {
    Liar::start(None, move |request| {
        if request.path == "/v2/" {
            return Answer::body(200, "application/json", "{}");
        }
        rule(request)
    })
}

fn reproduce(
    fixtures: &Fixtures,
    reference: &str,
    authfile: &Path,
    extra: &[&str],
) -> Result<CommandOutput> {
    let cmd = xtask_cli(fixtures.sh).args(["reproduce", reference, "--authfile"]);
    CommandOutput::of(cmd.arg(authfile).args(extra))
}

fn push(fixtures: &Fixtures, to: &str, authfile: &Path) -> Result<CommandOutput> {
    let cmd = xtask_cli(fixtures.sh)
        .args(["push", "--layout"])
        .arg(&fixtures.layout);
    CommandOutput::of(cmd.args(["--to", to, "--authfile"]).arg(authfile))
}

/// The exit status is `code` and stderr ends with its one `error:` line, which holds
/// every one of `needles`. Returns that line.
fn one_line(said: &CommandOutput, code: i32, needles: &[&str], case: &str) -> Result<String> {
    let line = said
        .sole_error()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .filter(|_| said.code == Some(code))
        .with_context(|| {
            format!(
                "{case}: expected exit {code} and one error line naming {needles:?}; got exit {:?}, stdout {:?}, stderr {:?}",
                said.code, said.stdout, said.stderr
            )
        })?;
    Ok(line.to_string())
}

/// Tags (not digests) the liar was asked to PUT a manifest under.
fn tags_put(liar: &Liar) -> Vec<String> {
    liar.seen()
        .iter()
        .filter(|r| r.method == "PUT")
        .filter_map(|r| r.path.split("/manifests/").nth(1).map(str::to_string))
        .filter(|reference| !reference.starts_with("sha256:"))
        .collect()
}

/// Whether the real registry has `repo:tag`.
fn tagged(fixtures: &Fixtures, registry: &Registry, repo: &str, tag: &str) -> bool {
    served(fixtures.sh, &format!("{}/{repo}:{tag}", registry.host)).is_ok()
}

/// An endless manifest: reproduce stops at 4 MiB, at once, with its peak memory
/// (wait4's maxrss of the whole command) under 256 MB.
fn endless_manifest(fixtures: &Fixtures, registry: &Registry, dir: &Path) -> Result<()> {
    let liar = open_liar(|request| match request.is("GET", "/manifests/") {
        true => Answer::Endless {
            content_type: INDEX.to_string(),
        },
        false => Answer::status(404),
    })?;
    let authfile = registry.authfile_as(liar.host(), PASSWORD)?;
    let reference = format!("{}/pause:{}", liar.host(), fixtures.version);
    let out = dir.join("endless.maxrss");
    let exe = std::env::current_exe()?;
    let said = CommandOutput::of(as_cli(cmd!(
        fixtures.sh,
        "{exe} max-rss --out {out} -- cargo {XTASK_RUN...} -- reproduce {reference} --authfile {authfile}"
    )))?;
    let line = one_line(
        &said,
        2,
        &["more than 4 MiB", liar.host()],
        "endless manifest",
    )?;
    let gets = liar.count("GET", "/manifests/");
    ensure!(
        gets == 1,
        "an endless manifest was asked for {gets} times, not once"
    );
    let peak: u64 = std::fs::read_to_string(&out)?.trim().parse()?;
    ensure!(
        peak < MEMORY_BOUND_KIB,
        "reproduce against an endless manifest peaked at {peak} KiB"
    );
    ok(format!(
        "lies: an endless manifest: one request, peak memory {} MB, exit 2: {line}",
        peak / 1024
    ));
    Ok(())
}

/// 2 MB of nested JSON as the index: one line, no stack overflow.
fn nested_json(fixtures: &Fixtures, registry: &Registry) -> Result<()> {
    let liar = open_liar(|request| match request.is("GET", "/manifests/") {
        true => Answer::body(200, INDEX, "[".repeat(2_000_000)),
        false => Answer::status(404),
    })?;
    let authfile = registry.authfile_as(liar.host(), PASSWORD)?;
    let reference = format!("{}/pause:{}", liar.host(), fixtures.version);
    let said = reproduce(fixtures, &reference, &authfile, &[])?;
    let line = one_line(&said, 2, &["is not an image index"], "nested JSON")?;
    ok(format!("lies: 2 MB of nested JSON: exit 2: {line}"));
    Ok(())
}

/// An index by digest whose bytes are another's: reproduce trusts its own digest.
fn wrong_bytes(fixtures: &Fixtures, registry: &Registry) -> Result<()> {
    let other = format!(r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[]}}"#);
    let liar = open_liar(move |request| match request.is("GET", "/manifests/") {
        true => Answer::body(200, INDEX, other.clone()),
        false => Answer::status(404),
    })?;
    let authfile = registry.authfile_as(liar.host(), PASSWORD)?;
    let digest = fixtures.image.index.digest().to_string();
    let reference = format!("{}/pause@{digest}", liar.host());
    let said = reproduce(fixtures, &reference, &authfile, &[])?;
    let line = one_line(
        &said,
        2,
        &["served bytes of sha256:", &digest],
        "wrong bytes",
    )?;
    ok(format!(
        "lies: an index that is not the digest asked for: exit 2: {line}"
    ));
    Ok(())
}

/// A manifest that drips a byte a second: each try ends at the deadline (`--timeout
/// 1`), and the command gives up after its tries.
fn dripping(fixtures: &Fixtures, registry: &Registry) -> Result<()> {
    let liar = open_liar(|request| match request.is("GET", "/manifests/") {
        true => Answer::Drip,
        false => Answer::status(404),
    })?;
    let authfile = registry.authfile_as(liar.host(), PASSWORD)?;
    let reference = format!("{}/pause:{}", liar.host(), fixtures.version);
    let started = Instant::now();
    let said = reproduce(fixtures, &reference, &authfile, &["--timeout", "1"])?;
    let took = started.elapsed();
    let line = one_line(&said, 2, &["within 1s", "gave up after"], "dripping")?;
    let gets = liar.count("GET", "/manifests/");
    ensure!(
        gets == TRIES as usize && took.as_secs() < 30,
        "a dripping registry: {gets} tries in {took:?}"
    );
    ok(format!(
        "lies: a manifest that drips: {gets} tries of 1 s, {:.1}s in all, exit 2: {line}",
        took.as_secs_f64()
    ));
    Ok(())
}

/// A referrers tag that answers 500 every time, or HTML: push stops with one line,
/// before it writes any tag.
fn referrers_failing(fixtures: &Fixtures, registry: &Registry) -> Result<()> {
    let cases: [(&str, Answer, Vec<String>); 2] = [
        (
            "500",
            Answer::status(500),
            vec![format!("gave up after {TRIES} tries"), "HTTP 500".into()],
        ),
        (
            "html",
            Answer::body(200, "text/html", "<html><body>Welcome</body></html>"),
            vec!["is not an OCI image index".into()],
        ),
    ];
    for (name, answer, needles) in cases {
        let liar = Liar::start(Some(&registry.host), move |request| {
            match request.is("GET", "/manifests/sha256-") {
                true => answer.clone(),
                false => Answer::Forward,
            }
        })?;
        let authfile = registry.authfile_as(liar.host(), PASSWORD)?;
        let repo = format!("referrers-{name}");
        let said = push(
            fixtures,
            &format!("{}/{repo}:{}", liar.host(), fixtures.version),
            &authfile,
        )?;
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let line = one_line(&said, 1, &needles, &format!("referrers {name}"))?;
        let tags = tags_put(&liar);
        ensure!(
            tags.is_empty() && !tagged(fixtures, registry, &repo, &fixtures.version.to_string()),
            "a push whose referrers read failed ({name}) tagged {tags:?}"
        );
        ok(format!(
            "lies: a referrers tag answering {name}: no tag written, exit 1: {line}"
        ));
    }
    Ok(())
}

/// Another tool's entry in a referrers index (an artifact type we do not know, its
/// annotations, a field we do not know) is there, byte for byte, after our push.
fn referrers_kept(fixtures: &Fixtures, registry: &Registry) -> Result<()> {
    let authfile = registry.authfile(PASSWORD)?;
    let repo = "referrers-kept";
    let arch = fixtures
        .image
        .arches
        .first()
        .context("the e2e image has no arch")?;
    let fallback = xtask::image::layout::referrers_tag(&arch.manifest);
    let entry = theirs(registry, repo, &authfile, &fallback)?;
    let said = push(
        fixtures,
        &format!("{}/{repo}:{}", registry.host, fixtures.version),
        &authfile,
    )?;
    ensure!(
        said.success(),
        "push beside another tool's referrer: {:?}",
        said.stderr
    );
    let raw = served(fixtures.sh, &format!("{}/{repo}:{fallback}", registry.host))?;
    let index: serde_json::Value = serde_json::from_slice(&raw)?;
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let sbom = arch.sbom.digest().to_string();
    ensure!(
        entries.first() == Some(&entry)
            && entries.len() == 2
            && entries[1]["digest"].as_str() == Some(sbom.as_str()),
        "the referrers index after our push: {index}"
    );
    ok(format!(
        "lies: another tool's referrer in {fallback} is kept as it was, beside our SBOM"
    ));
    Ok(())
}

/// Puts a signature-like artifact in `repo` and a referrers index under `fallback`
/// that lists it as another tool would; returns its entry.
fn theirs(
    registry: &Registry,
    repo: &str,
    authfile: &Path,
    fallback: &str,
) -> Result<serde_json::Value> {
    let digest = |bytes: &[u8]| format!("sha256:{}", xtask::build::sha256_hex(bytes));
    let bundle_type = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let (config, bundle) = (b"{}".as_slice(), b"a signature bundle".as_slice());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": bundle_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(config), "size": config.len()},
        "layers": [{"mediaType": bundle_type, "digest": digest(bundle), "size": bundle.len()}],
    });
    let manifest = serde_json::to_vec(&manifest)?;
    let entry = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest(&manifest),
        "size": manifest.len(),
        "artifactType": bundle_type,
        "annotations": {"dev.sigstore.bundle.predicateType": "https://slsa.dev/provenance/v1"},
        "x-another-tool": {"kept": true},
    });
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]});
    let index = serde_json::to_vec(&index)?;
    let target: Target = format!("{}/{repo}", registry.host).parse()?;
    let session = Session::new(target.repository, &options(authfile))?;
    let manifest_type = oci_spec::image::MediaType::ImageManifest;
    let index_type = oci_spec::image::MediaType::ImageIndex;
    xtask_publish::runtime()?.block_on(async {
        session.login(Access::Write).await?;
        for blob in [config, bundle] {
            let digest = digest(blob);
            session
                .write("uploading", || session.upload_blob(&digest, blob))
                .await?;
        }
        let manifest_digest = digest(&manifest);
        session
            .write("putting", || {
                session.put_manifest(&manifest_digest, &manifest, &manifest_type)
            })
            .await?;
        session
            .write("tagging", || {
                session.put_manifest(fallback, &index, &index_type)
            })
            .await
    })?;
    Ok(entry)
}

/// A failure after the manifests (the first referrers tag refused): no tag at all,
/// VERSION included; the next push completes.
fn fails_after_manifests(fixtures: &Fixtures, registry: &Registry) -> Result<()> {
    let refused = AtomicBool::new(false);
    let liar = Liar::start(Some(&registry.host), move |request| {
        if request.is("PUT", "/manifests/sha256-") && !refused.swap(true, Ordering::SeqCst) {
            let envelope = r#"{"errors":[{"code":"TAG_INVALID","message":"injected"}]}"#;
            return Answer::body(400, "application/json", envelope);
        }
        Answer::Forward
    })?;
    let authfile = registry.authfile_as(liar.host(), PASSWORD)?;
    let (repo, version) = ("after-manifests", fixtures.version.to_string());
    let version = version.as_str();
    let to = format!("{}/{repo}:{version}", liar.host());
    let said = push(fixtures, &to, &authfile)?;
    let line = one_line(
        &said,
        1,
        &["HTTP 400", "injected"],
        "a failure after the manifests",
    )?;
    let manifests = liar
        .seen()
        .iter()
        .filter(|r| r.is("PUT", "/manifests/sha256:"))
        .count();
    let tags = tags_put(&liar);
    ensure!(
        manifests == fixtures.image.arches.len() * 2
            && tags.len() == 1
            && !tagged(fixtures, registry, repo, version),
        "after a failure past the manifests ({manifests} manifests): tags {tags:?}, or {version} is tagged"
    );
    let again = push(fixtures, &to, &authfile)?;
    let digest = fixtures.image.index.digest().to_string();
    ensure!(
        again.success()
            && again.stdout.trim() == digest
            && tagged(fixtures, registry, repo, version),
        "the push after a failure did not complete: {:?}",
        again.stderr
    );
    ok(format!(
        "lies: a failure after the manifests left {version} untagged ({line}); the next push tagged it {digest}"
    ));
    Ok(())
}

/// A redirect to another loopback address: the request follows it, the credentials
/// do not.
fn redirect(fixtures: &Fixtures, registry: &Registry) -> Result<()> {
    let elsewhere = Liar::start_on("127.0.0.2", None, |_| Answer::status(404))?;
    let target = elsewhere.host().to_string();
    let liar = Liar::start(None, move |request| {
        if request.path == "/v2/" && request.header("authorization").is_none() {
            return Answer::header(401, "WWW-Authenticate", r#"Basic realm="liar""#);
        }
        match request.is("GET", "/manifests/") {
            true => Answer::header(307, "Location", &format!("http://{target}{}", request.path)),
            false => Answer::body(200, "application/json", "{}"),
        }
    })?;
    let authfile = registry.authfile_as(liar.host(), PASSWORD)?;
    let reference = format!("{}/pause:{}", liar.host(), fixtures.version);
    let said = reproduce(fixtures, &reference, &authfile, &[])?;
    let line = one_line(&said, 2, &[liar.host()], "a redirect")?;
    let sent = |liar: &Liar| {
        liar.seen()
            .iter()
            .filter(|r| r.is("GET", "/manifests/"))
            .map(|r| r.header("authorization").is_some())
            .collect::<Vec<_>>()
    };
    let (at_registry, at_other) = (sent(&liar), sent(&elsewhere));
    ensure!(
        at_registry == [true] && at_other == [false],
        "credentials on the manifest request: at the registry {at_registry:?}, at {} {at_other:?}",
        elsewhere.host()
    );
    ok(format!(
        "lies: a redirect to {}: followed without the credentials, exit 2: {line}",
        elsewhere.host()
    ));
    Ok(())
}

/// A token endpoint whose answer never ends: one request, stopped at 64 KiB.
fn endless_token(fixtures: &Fixtures, registry: &Registry) -> Result<()> {
    let tokens = Liar::start(None, |_| Answer::Endless {
        content_type: "application/json".to_string(),
    })?;
    let challenge = format!(
        r#"Bearer realm="http://{}/token",service="liar""#,
        tokens.host()
    );
    let liar = Liar::start(None, move |_| {
        Answer::header(401, "WWW-Authenticate", &challenge)
    })?;
    let authfile = registry.authfile_as(liar.host(), PASSWORD)?;
    let said = push(
        fixtures,
        &format!("{}/pause:{}", liar.host(), fixtures.version),
        &authfile,
    )?;
    let line = one_line(
        &said,
        1,
        &["more than 64 KiB", tokens.host()],
        "endless token",
    )?;
    let asked = tokens.seen().len();
    ensure!(
        asked == 1,
        "an endless token endpoint was asked {asked} times"
    );
    ok(format!(
        "lies: an endless token response: one request, exit 1: {line}"
    ));
    Ok(())
}

/// A registry that echoes the credentials back in every error: no output line holds
/// the password or its Basic encoding, through retry notes and the last line.
fn secret_never_shown(fixtures: &Fixtures, dir: &Path) -> Result<()> {
    let liar = Liar::start(None, move |request| {
        let Some(authorization) = request.header("authorization") else {
            return Answer::header(401, "WWW-Authenticate", r#"Basic realm="liar""#);
        };
        if request.path == "/v2/" {
            return Answer::body(200, "application/json", "{}");
        }
        let message = format!("{USER} with password {SECRET} sent {authorization}");
        let envelope = serde_json::json!({"errors": [{"code": "UNAVAILABLE", "message": message}]});
        Answer::body(503, "application/json", envelope.to_string())
    })?;
    let authfile: PathBuf = authfile(dir, liar.host(), USER, SECRET)?;
    let reference = format!("{}/pause:{}", liar.host(), fixtures.version);
    let reproduced = reproduce(fixtures, &reference, &authfile, &[])?;
    let line = one_line(
        &reproduced,
        2,
        &["***", "gave up after"],
        "an echoing registry",
    )?;
    let pushed = push(fixtures, &reference, &authfile)?;
    one_line(&pushed, 1, &["gave up after"], "an echoing registry (push)")?;
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{SECRET}"));
    for said in [&reproduced, &pushed] {
        let output = format!("{}{}", said.stdout, said.stderr);
        ensure!(
            !output.contains(SECRET) && !output.contains(&basic),
            "the password reached the output: {output}"
        );
    }
    ok(format!(
        "lies: a registry that echoes the credentials: none in any output line: {line}"
    ));
    Ok(())
}
