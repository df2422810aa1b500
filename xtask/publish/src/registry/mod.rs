//! One registry session, for push and reproduce: the reference, the protocol (HTTPS,
//! except on loopback or with --insecure), the credentials, and the few requests of
//! the OCI distribution API that we make, each bounded:
//!
//! - every body is read in chunks up to a limit (manifests and indexes 4 MiB, tokens
//!   64 KiB, error bodies 16 KiB); a body past its limit ends the request at once;
//! - every request, body and all, has one deadline (`--timeout`), so a registry that
//!   drips a byte at a time cannot hold a command;
//! - credentials go only to the registry's own origin (and a token realm it names,
//!   never over plain HTTP off loopback without --insecure), and no output line ever
//!   holds one: every line made from a registry's answer is redacted.
//!
//! Requests are single tries returning a `Failure`; `read` and `write` retry them and
//! turn the last failure into one line (`failure.rs` says what each failure means).

mod auth;
pub mod credentials;
pub mod failure;
pub mod referrers;

use anyhow::{bail, Result};
use credentials::Credentials;
pub use failure::{Access, Failure};
use oci_spec::distribution::Reference;
use oci_spec::image::MediaType;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Url};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The largest manifest or index we read (containers/image's limit too).
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// The largest token response we read.
pub const TOKEN_LIMIT: u64 = 64 << 10;
/// How much of an error body we read; the rest is never read.
pub const ERROR_BODY_LIMIT: u64 = 16 << 10;
/// The default deadline of one request, body and all.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a request is tried before a transient failure is final.
pub const TRIES: u32 = 5;

/// How to reach a registry: where credentials are, whether plain HTTP is allowed off
/// loopback, and each request's deadline.
#[derive(Clone, Debug)]
pub struct Options {
    pub authfiles: Vec<PathBuf>,
    pub insecure: bool,
    pub timeout: Duration,
}

/// A client for one repository, with its credentials.
pub struct Session {
    http: reqwest::Client,
    /// `REGISTRY[:PORT]`, as users wrote it and auth files key it.
    pub host: String,
    /// `https://HOST` or `http://HOST`.
    base: Url,
    pub target: Reference,
    credentials: Credentials,
    insecure: bool,
    timeout: Duration,
    /// The `Authorization` value for the registry's origin, once logged in.
    authorization: Mutex<Option<String>>,
    /// What no output line may hold: the password, its Basic encoding, the token.
    secrets: Mutex<Vec<String>>,
}

/// What one request got back.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    /// This answer when its status is a success, else the failure it is.
    fn success(self, url: &str) -> Result<Answer, Failure> {
        match self.status {
            200..=299 => Ok(self),
            _ => Err(self.failure(url)),
        }
    }

    /// This answer to `url` as the failure it is (its status was not a success).
    fn failure(&self, url: &str) -> Failure {
        let (codes, message) = failure::error_envelope(&self.body);
        Failure::Status {
            status: self.status,
            url: shown(url),
            codes,
            message,
        }
    }
}

impl Session {
    /// A session for `target` (credentials looked up for its registry); nothing is
    /// sent until the first request.
    pub fn new(target: Reference, options: &Options) -> Result<Session> {
        let host = target.resolve_registry().to_string();
        let scheme = if options.insecure || is_loopback(&host) {
            "http"
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{host}/"))
            .map_err(|err| anyhow::anyhow!("invalid registry host {host:?}: {err}"))?;
        install_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // reqwest drops Authorization on a redirect to another origin; we bound
            // how far a redirect may lead.
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("pause-xtask/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| anyhow::anyhow!("starting the HTTP client: {err}"))?;
        let credentials = credentials::lookup(&options.authfiles, &host)?;
        let secrets = credentials.secrets();
        Ok(Session {
            http,
            host,
            base,
            target,
            credentials,
            insecure: options.insecure,
            timeout: options.timeout,
            authorization: Mutex::new(None),
            secrets: Mutex::new(secrets),
        })
    }

    /// The repository's name on the registry.
    pub fn repository(&self) -> &str {
        self.target.repository()
    }

    /// The same repository at `tag_or_digest`, as a user would write it.
    pub fn at(&self, tag_or_digest: &str) -> String {
        let separator = if tag_or_digest.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        format!(
            "{}/{}{separator}{tag_or_digest}",
            self.target.registry(),
            self.repository()
        )
    }

    /// Logs in for `access`: a token for pull (and push), where the registry uses
    /// them; Basic credentials where it asks for those.
    pub async fn login(&self, access: Access) -> Result<()> {
        let what = format!("logging in to {}", self.host);
        self.retrying(Access::Read, &what, || self.login_once(access))
            .await
    }

    /// Runs `request` (a read) until it succeeds, fails for good, or has failed for a
    /// moment `TRIES` times, waiting 0.25 s, 0.5 s, 1 s, 2 s between tries.
    pub async fn read<T, F, Fut>(&self, what: &str, request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.retrying(Access::Read, what, request).await
    }

    /// `read` for a write: its refusal, after reads with the same credentials went
    /// through, says that they may not push rather than that they are wrong.
    pub async fn write<T, F, Fut>(&self, what: &str, request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.retrying(Access::Write, what, request).await
    }

    async fn retrying<T, F, Fut>(&self, access: Access, what: &str, mut request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut pause = Duration::from_millis(250);
        for attempt in 1..=TRIES {
            let failure = match request().await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if !failure.is_transient() {
                let line = failure.explain(access, &self.host, self.repository());
                bail!("{}", self.redact(&format!("{what}: {line}")));
            }
            if attempt == TRIES {
                let line = failure.explain(access, &self.host, self.repository());
                bail!(
                    "{}",
                    self.redact(&format!("{what}: gave up after {TRIES} tries: {line}"))
                );
            }
            let note = format!(
                "{what}: {} failed for a moment ({}); try {} of {TRIES} in {:.2}s",
                self.host,
                failure.short(),
                attempt + 1,
                pause.as_secs_f64()
            );
            eprintln!("{}", self.redact(&note));
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        unreachable!("the last try returns")
    }

    /// Whether the blob is in the repository (a 404 says it is not; any other failure
    /// is one).
    pub async fn blob_exists(&self, digest: &str) -> Result<bool, Failure> {
        let url = self.url(&format!("blobs/{digest}"));
        match self
            .exchange(Method::HEAD, &url, HeaderMap::new(), None, None)
            .await
        {
            Ok(_) => Ok(true),
            Err(failure) if failure.is_not_found() => Ok(false),
            Err(failure) => Err(failure),
        }
    }

    /// Uploads a blob in one piece: POST for an upload URL, then PUT its bytes.
    pub async fn upload_blob(&self, digest: &str, data: &[u8]) -> Result<(), Failure> {
        let start = self.url("blobs/uploads/");
        let answer = self
            .exchange(
                Method::POST,
                &start,
                HeaderMap::new(),
                Some(Vec::new()),
                None,
            )
            .await?;
        let location = answer
            .headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| Failure::Protocol {
                url: shown(&start),
                detail: "no Location for the upload".to_string(),
            })?;
        let mut upload = Url::parse(&start)
            .and_then(|start| start.join(location))
            .map_err(|err| Failure::Protocol {
                url: shown(&start),
                detail: format!("an upload Location that is no URL ({err})"),
            })?;
        upload.query_pairs_mut().append_pair("digest", digest);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        self.exchange(
            Method::PUT,
            upload.as_str(),
            headers,
            Some(data.to_vec()),
            None,
        )
        .await
        .map(|_| ())
    }

    /// The manifest or index under `tag_or_digest`, as the registry serves it (at most
    /// `MANIFEST_LIMIT` bytes); `None` only when the registry says it is not there.
    pub async fn manifest(&self, tag_or_digest: &str) -> Result<Option<Vec<u8>>, Failure> {
        let url = self.url(&format!("manifests/{tag_or_digest}"));
        let mut headers = HeaderMap::new();
        let accept = format!("{}, {}", MediaType::ImageIndex, MediaType::ImageManifest);
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(ACCEPT, accept);
        }
        match self
            .exchange(Method::GET, &url, headers, None, Some(MANIFEST_LIMIT))
            .await
        {
            Ok(answer) => Ok(Some(answer.body)),
            Err(failure) if failure.is_not_found() => Ok(None),
            Err(failure) => Err(failure),
        }
    }

    /// PUTs a manifest's exact bytes under a digest or a tag.
    pub async fn put_manifest(
        &self,
        tag_or_digest: &str,
        bytes: &[u8],
        media_type: &MediaType,
    ) -> Result<(), Failure> {
        let url = self.url(&format!("manifests/{tag_or_digest}"));
        let mut headers = HeaderMap::new();
        let content_type =
            HeaderValue::from_str(media_type.as_ref()).map_err(|_| Failure::Protocol {
                url: shown(&url),
                detail: format!("media type {media_type} is no header value"),
            })?;
        headers.insert(CONTENT_TYPE, content_type);
        self.exchange(Method::PUT, &url, headers, Some(bytes.to_vec()), None)
            .await
            .map(|_| ())
    }

    fn url(&self, path: &str) -> String {
        format!("{}v2/{}/{path}", self.base, self.repository())
    }

    /// One request, under the deadline: its answer when the status is a success,
    /// else the failure. A success body we want (`limit`) is read up to it (past it:
    /// `TooLarge`); any other body up to `ERROR_BODY_LIMIT`, the rest unread.
    async fn exchange(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        limit: Option<u64>,
    ) -> Result<Answer, Failure> {
        let authorization = self.authorization_for(url);
        let mut request = self.http.request(method.clone(), url).headers(headers);
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        self.answer(request, &method, url, limit)
            .await?
            .success(url)
    }

    /// Sends `request` to `url` under the deadline and reads its answer within the
    /// bounds, whatever its status.
    async fn answer(
        &self,
        request: reqwest::RequestBuilder,
        method: &Method,
        url: &str,
        limit: Option<u64>,
    ) -> Result<Answer, Failure> {
        let answer = bounded_exchange(request, method, url, limit);
        tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| Failure::Deadline {
                url: shown(url),
                limit: self.timeout,
            })?
    }

    /// The `Authorization` value to send to `url`: only to the registry's own origin.
    fn authorization_for(&self, url: &str) -> Option<String> {
        let same_origin = Url::parse(url).is_ok_and(|url| {
            url.scheme() == self.base.scheme()
                && url.host_str() == self.base.host_str()
                && url.port_or_known_default() == self.base.port_or_known_default()
        });
        if !same_origin {
            return None;
        }
        self.authorization.lock().ok().and_then(|a| a.clone())
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.lock().map(|s| s.clone()).unwrap_or_default();
        secrets
            .iter()
            .filter(|s| s.len() >= 3)
            .fold(text.to_string(), |text, secret| {
                text.replace(secret.as_str(), "***")
            })
    }
}

/// Sends `request` and reads its answer within the bounds (the caller's deadline
/// wraps this).
async fn bounded_exchange(
    request: reqwest::RequestBuilder,
    method: &Method,
    url: &str,
    limit: Option<u64>,
) -> Result<Answer, Failure> {
    let response = request.send().await.map_err(|err| transport(url, &err))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let success = (200..300).contains(&status);
    let head = *method == Method::HEAD;
    let body = match (head, success, limit) {
        (true, _, _) => Vec::new(),
        (false, true, Some(limit)) => read_bounded(response, url, limit, Overflow::Fail).await?,
        _ => read_bounded(response, url, ERROR_BODY_LIMIT, Overflow::Cut).await?,
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// What a body past its limit is: a failure (the thing we asked for cannot be that
/// large), or cut there (an error body: its status says enough).
#[derive(PartialEq)]
enum Overflow {
    Fail,
    Cut,
}

async fn read_bounded(
    mut response: reqwest::Response,
    url: &str,
    limit: u64,
    overflow: Overflow,
) -> Result<Vec<u8>, Failure> {
    let too_large = || Failure::TooLarge {
        url: shown(url),
        limit,
    };
    if overflow == Overflow::Fail && response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| transport(url, &err))? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            if overflow == Overflow::Fail {
                return Err(too_large());
            }
            let room = (limit as usize).saturating_sub(body.len());
            body.extend_from_slice(&chunk[..room.min(chunk.len())]);
            return Ok(body);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A failure to get an answer, in a few words (the innermost cause: "Connection
/// refused (os error 111)").
fn transport(url: &str, err: &reqwest::Error) -> Failure {
    let mut cause: &dyn std::error::Error = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let detail = if err.is_connect() {
        format!("could not connect: {cause}")
    } else {
        format!("the connection failed: {cause}")
    };
    Failure::Transport {
        url: shown(url),
        detail,
    }
}

/// A URL as lines show it: without its query (upload state, token scopes).
fn shown(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// `REGISTRY/REPO[:TAG|@DIGEST]`, with a one-line error.
pub fn parse_reference(text: &str) -> Result<Reference> {
    let reference: Reference = text.parse().map_err(|err| {
        anyhow::anyhow!("invalid reference {text:?}: {err}; expected REGISTRY/REPO[:TAG]")
    })?;
    if !text.contains('/') {
        bail!("invalid reference {text:?}: name the registry, as in REGISTRY/REPO[:TAG]");
    }
    Ok(reference)
}

/// Where a push goes: a repository, and the tag if the user wrote one (a push's tag
/// defaults to the layout's VERSION, never to `latest`).
#[derive(Clone, Debug)]
pub struct Target {
    pub repository: Reference,
    pub tag: Option<String>,
}

impl std::str::FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Target> {
        let repository = parse_reference(text)?;
        if repository.digest().is_some() {
            bail!("invalid reference {text:?}: push by tag, not by digest");
        }
        let tag = split_tag(text).1.map(str::to_string);
        Ok(Target { repository, tag })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (registry, repository) = (self.repository.registry(), self.repository.repository());
        match &self.tag {
            Some(tag) => write!(f, "{registry}/{repository}:{tag}"),
            None => write!(f, "{registry}/{repository}"),
        }
    }
}

/// `text` split at its tag: a colon after the last slash starts one, one before it
/// ends a registry host (`127.0.0.1:5000/pause`). Shared by registry references and
/// `oci:DIR[:TAG]`.
pub fn split_tag(text: &str) -> (&str, Option<&str>) {
    match text.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (text, None),
    }
}

/// rustls is built without a provider of its own (see Cargo.toml): ring, for the
/// process. A second call finds one installed, which is fine.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// True for hosts on this machine, where plain HTTP is allowed without --insecure.
pub fn is_loopback(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_target_has_a_tag_only_when_one_is_written() -> Result<()> {
        let target: Target = "127.0.0.1:5000/pause".parse()?;
        assert_eq!(target.tag, None);
        assert_eq!(target.repository.repository(), "pause");
        let target: Target = "ghcr.io/o/pause:3.10".parse()?;
        assert_eq!(target.tag.as_deref(), Some("3.10"));
        assert_eq!(target.to_string(), "ghcr.io/o/pause:3.10");
        let digest = format!("ghcr.io/o/pause@sha256:{}", "0".repeat(64));
        assert!(digest.parse::<Target>().is_err());
        assert!("pause".parse::<Target>().is_err());
        Ok(())
    }

    #[test]
    fn a_tag_follows_the_last_slash() {
        assert_eq!(
            split_tag("127.0.0.1:5000/pause:3.10"),
            ("127.0.0.1:5000/pause", Some("3.10"))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/pause"),
            ("127.0.0.1:5000/pause", None)
        );
        assert_eq!(split_tag("target/oci/pause"), ("target/oci/pause", None));
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "127.3.4.5",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "registry.k8s.io",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn credentials_go_to_the_registrys_origin_only_and_are_never_shown() -> Result<()> {
        let options = Options {
            authfiles: Vec::new(),
            insecure: false,
            timeout: DEFAULT_TIMEOUT,
        };
        let session = Session::new(parse_reference("127.0.0.1:5000/pause:1")?, &options)?;
        *session.authorization.lock().unwrap() = Some("Bearer s3cret-token".into());
        session.secrets.lock().unwrap().push("s3cret-token".into());
        assert!(session
            .authorization_for("http://127.0.0.1:5000/v2/pause/blobs/uploads/x")
            .is_some());
        for elsewhere in [
            "http://127.0.0.2:5000/v2/pause/blobs/uploads/x",
            "http://127.0.0.1:5001/v2/",
            "https://127.0.0.1:5000/v2/",
            "http://storage.example/blob",
        ] {
            assert!(
                session.authorization_for(elsewhere).is_none(),
                "{elsewhere}"
            );
        }
        assert_eq!(
            session.redact("echoed: Bearer s3cret-token!"),
            "echoed: Bearer ***!"
        );
        assert_eq!(
            shown("http://h/v2/p/blobs/uploads/u?_state=abc&digest=sha256:1"),
            "http://h/v2/p/blobs/uploads/u"
        );
        Ok(())
    }
}
