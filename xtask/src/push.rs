//! `cargo xtask push`: publish an image layout to a registry, resumably.
//!
//! Order matters to registries: blobs first (skipping those already there, so a push
//! that was interrupted completes when run again), then each manifest by digest, then
//! the index and the tags, then the OCI 1.1 referrers fallback tags (`sha256-<hex>`)
//! for the SBOMs. Manifests go up as their exact layout bytes, so digests survive.

use crate::flags;
use anyhow::{bail, Context, Result};
use base64::Engine;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{
    Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType, ANNOTATION_REF_NAME,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use xshell::Shell;

impl flags::Push {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let layout = match self.layout {
            Some(dir) => dir,
            None => {
                let root = sh.current_dir();
                crate::image::default_output(
                    &root,
                    &crate::image::description::ImageDescription::load(&root)?,
                )
            }
        };
        let authfile = auth_file(sh, self.authfile);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let digest = runtime.block_on(push(
            &layout,
            &self.to,
            authfile.as_deref(),
            self.insecure,
            None,
        ))?;
        println!("{digest}");
        Ok(())
    }
}

/// `--authfile`, else `REGISTRY_AUTH_FILE`, else `~/.docker/config.json` (if it exists).
pub fn auth_file(sh: &Shell, given: Option<PathBuf>) -> Option<PathBuf> {
    given
        .or_else(|| sh.var_os("REGISTRY_AUTH_FILE").map(PathBuf::from))
        .or_else(|| {
            sh.var_os("HOME")
                .map(|home| Path::new(&home).join(".docker/config.json"))
                .filter(|p| p.is_file())
        })
}

/// Credentials for `host` from a docker-format auth file: `auths.<host>.auth` is
/// base64 of `user:password`.
pub fn credentials(authfile: Option<&Path>, host: &str) -> Result<RegistryAuth> {
    let Some(path) = authfile else {
        return Ok(RegistryAuth::Anonymous);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading auth file {}", path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "auth file {} is not JSON in the docker config format",
            path.display()
        )
    })?;
    let auths = &config["auths"];
    let entry = [
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
    ]
    .iter()
    .find_map(|key| auths.get(key))
    .cloned();
    let Some(encoded) = entry.as_ref().and_then(|e| e["auth"].as_str()) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .with_context(|| {
            format!(
                "auths.{host}.auth in {} is not base64 of user:password",
                path.display()
            )
        })?;
    let (user, password) = decoded.split_once(':').with_context(|| {
        format!(
            "auths.{host}.auth in {} is not base64 of user:password",
            path.display()
        )
    })?;
    Ok(RegistryAuth::Basic(user.to_string(), password.to_string()))
}

/// rustls is built without a provider of its own (see Cargo.toml): ring, for the
/// process. A second call finds one installed, which is fine.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// True for registries on this machine, where plain HTTP is allowed without --insecure.
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

/// The layout, read back: the index named by its version, and every manifest and blob.
struct Layout {
    dir: PathBuf,
    version: String,
    index: Descriptor,
    /// Per-arch manifests and SBOM artifacts, each with the name index.json gives it.
    manifests: Vec<(String, Descriptor)>,
}

impl Layout {
    fn read(dir: &Path) -> Result<Layout> {
        let index_json = dir.join("index.json");
        let top: ImageIndex =
            serde_json::from_slice(&std::fs::read(&index_json).with_context(|| {
                format!(
                    "reading {}; run `cargo xtask image` first",
                    index_json.display()
                )
            })?)
            .with_context(|| format!("parsing {}", index_json.display()))?;
        let name = |d: &Descriptor| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_REF_NAME))
                .cloned()
        };
        let index = top
            .manifests()
            .iter()
            .find(|d| *d.media_type() == MediaType::ImageIndex)
            .cloned()
            .with_context(|| format!("{} names no image index", index_json.display()))?;
        let version = name(&index).with_context(|| {
            format!(
                "the image index in {} has no ref.name",
                index_json.display()
            )
        })?;
        let manifests = top
            .manifests()
            .iter()
            .filter(|d| *d.media_type() == MediaType::ImageManifest)
            .filter_map(|d| Some((name(d)?, d.clone())))
            .collect();
        Ok(Layout {
            dir: dir.to_path_buf(),
            version,
            index,
            manifests,
        })
    }

    fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        crate::image::layout::read_blob(&self.dir, digest)
    }
}

/// Pushes the layout at `layout_dir` to `to` and returns the index digest.
/// `interrupt_after` stops after that many blob uploads, as a killed push would: the
/// e2e suite uses it to prove that the next push completes the job.
pub async fn push(
    layout_dir: &Path,
    to: &str,
    authfile: Option<&Path>,
    insecure: bool,
    interrupt_after: Option<usize>,
) -> Result<String> {
    let target: Reference = to.parse().map_err(|err| {
        anyhow::anyhow!("invalid reference {to:?}: {err}; expected REGISTRY/REPO[:TAG]")
    })?;
    if target.digest().is_some() {
        bail!("invalid reference {to:?}: push by tag, not by digest");
    }
    let layout = Layout::read(layout_dir)?;
    let tag = match to.rsplit_once(':') {
        // A colon after the last slash is a tag, not a port.
        Some((_, tag)) if !tag.contains('/') => tag.to_string(),
        _ => layout.version.clone(),
    };
    crate::version::validate(&tag)?;
    let host = target.resolve_registry().to_string();
    let protocol = if insecure || is_loopback(&host) {
        ClientProtocol::HttpsExcept(vec![host.clone()])
    } else {
        ClientProtocol::Https
    };
    install_tls_provider();
    let client = Client::new(ClientConfig {
        protocol,
        read_timeout: Some(Duration::from_secs(60)),
        connect_timeout: Some(Duration::from_secs(10)),
        ..ClientConfig::default()
    });
    let auth = credentials(authfile, &host)?;
    let repo = |tag_or_digest: &str| -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(
                target.registry().to_string(),
                target.repository().to_string(),
                tag_or_digest.to_string(),
            )
        } else {
            Reference::with_tag(
                target.registry().to_string(),
                target.repository().to_string(),
                tag_or_digest.to_string(),
            )
        }
    };
    let explain = |err: oci_client::errors::OciDistributionError| explain(err, &host);
    client
        .auth(&repo(&tag), &auth, RegistryOperation::Push)
        .await
        .map_err(explain)?;

    // Everything the layout holds, in the order a registry accepts it.
    let index_bytes = layout.blob(layout.index.digest().as_ref())?;
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut manifests: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    for (_, desc) in &layout.manifests {
        let bytes = layout.blob(desc.digest().as_ref())?;
        let manifest: ImageManifest = serde_json::from_slice(&bytes)?;
        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            if !blobs.iter().any(|b| b.digest() == blob.digest()) {
                blobs.push(blob.clone());
            }
        }
        manifests.push((desc.clone(), bytes));
    }
    // Subjects before the artifacts that refer to them.
    manifests.sort_by_key(|(desc, _)| desc.artifact_type().is_some());

    let total = blobs.len() + manifests.len() + 1;
    let mut step = 0;
    let mut uploaded = 0;
    for blob in &blobs {
        step += 1;
        let digest = blob.digest().to_string();
        let reference = repo(&tag);
        if client
            .blob_exists(&reference, &digest)
            .await
            .map_err(explain)?
        {
            eprintln!(
                "[{step}/{total}] blob {digest} ({} bytes) already there",
                blob.size()
            );
            continue;
        }
        if interrupt_after == Some(uploaded) {
            bail!("push interrupted after {uploaded} blob uploads");
        }
        let data = layout.blob(&digest)?;
        uploaded += 1;
        client
            .push_blob(&reference, data, &digest)
            .await
            .map_err(explain)
            .with_context(|| format!("uploading blob {digest}"))?;
        eprintln!(
            "[{step}/{total}] blob {digest} ({} bytes) uploaded",
            blob.size()
        );
    }
    for (desc, bytes) in &manifests {
        step += 1;
        let digest = desc.digest().to_string();
        put_manifest(&client, &repo(&digest), bytes, desc.media_type())
            .await
            .map_err(explain)
            .with_context(|| format!("pushing manifest {digest}"))?;
        eprintln!("[{step}/{total}] manifest {digest} pushed");
    }
    step += 1;
    let index_digest = layout.index.digest().to_string();
    put_manifest(&client, &repo(&tag), &index_bytes, &MediaType::ImageIndex)
        .await
        .map_err(explain)
        .with_context(|| format!("pushing the index as {tag}"))?;
    eprintln!("[{step}/{total}] index {index_digest} tagged {tag}");

    // Per-arch tags: the layout's VERSION-linux-ARCH names, with TAG for VERSION.
    for (name, desc) in &layout.manifests {
        if desc.artifact_type().is_some() {
            continue;
        }
        let arch_tag = match name.strip_prefix(&layout.version) {
            Some(suffix) => format!("{tag}{suffix}"),
            None => name.clone(),
        };
        let bytes = layout.blob(desc.digest().as_ref())?;
        put_manifest(&client, &repo(&arch_tag), &bytes, desc.media_type())
            .await
            .map_err(explain)
            .with_context(|| format!("tagging {arch_tag}"))?;
        eprintln!("tagged {arch_tag} {}", desc.digest());
    }

    // Referrers fallback (OCI 1.1): tag sha256-<hex of subject> holds an index of the
    // artifacts that refer to it. Merge with what is there: other tools may add theirs.
    for (desc, bytes) in manifests
        .iter()
        .filter(|(d, _)| d.artifact_type().is_some())
    {
        let artifact: ImageManifest = serde_json::from_slice(bytes)?;
        let subject = artifact
            .subject()
            .as_ref()
            .context("an SBOM artifact has no subject")?;
        let fallback_tag = subject.digest().to_string().replace(':', "-");
        let fallback = repo(&fallback_tag);
        let mut referrers: Vec<Descriptor> = match client
            .pull_manifest_raw(
                &fallback,
                &auth,
                &[MediaType::ImageIndex.to_string().as_str()],
            )
            .await
        {
            Ok((existing, _)) => serde_json::from_slice::<ImageIndex>(&existing)
                .map(|i| i.manifests().clone())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if referrers.iter().any(|r| r.digest() == desc.digest()) {
            continue;
        }
        let mut entry = desc.clone();
        entry.set_annotations(None);
        referrers.push(entry);
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(referrers)
            .build()?;
        let index_bytes = crate::image::layout::canonical_json(&index)?;
        put_manifest(&client, &fallback, &index_bytes, &MediaType::ImageIndex)
            .await
            .map_err(explain)
            .with_context(|| format!("tagging referrers {fallback_tag}"))?;
        eprintln!("tagged {fallback_tag} (referrers: SBOM {})", desc.digest());
    }

    // What the registry now serves under the tag must be what the layout holds.
    let served = client
        .fetch_manifest_digest(&repo(&tag), &auth)
        .await
        .map_err(explain)?;
    if served != index_digest {
        bail!("{host} serves {served} for {tag} but the layout's index is {index_digest}");
    }
    eprintln!(
        "pushed {}/{}:{tag} {index_digest}",
        target.registry(),
        target.repository()
    );
    Ok(index_digest)
}

async fn put_manifest(
    client: &Client,
    reference: &Reference,
    bytes: &[u8],
    media_type: &MediaType,
) -> oci_client::errors::Result<String> {
    let content_type = reqwest_header(media_type);
    client
        .push_manifest_raw(reference, bytes.to_vec(), content_type)
        .await
}

fn reqwest_header(media_type: &MediaType) -> http::HeaderValue {
    http::HeaderValue::from_str(media_type.as_ref()).expect("media types are valid header values")
}

/// One line for the errors users meet: refused credentials, an unreachable registry.
fn explain(err: oci_client::errors::OciDistributionError, host: &str) -> anyhow::Error {
    use oci_client::errors::OciDistributionError as E;
    let text = format!("{err:#}");
    if is_auth_failure(&err) {
        return anyhow::anyhow!(
            "authentication to {host} failed: check the user and password for {host} in the auth file (--authfile, REGISTRY_AUTH_FILE or ~/.docker/config.json)"
        );
    }
    let unreachable = match &err {
        E::RequestError(inner) => inner.is_connect() || inner.is_timeout(),
        _ => false,
    };
    if unreachable {
        return anyhow::anyhow!(
            "cannot reach registry {host}: {text}; check the address and that the registry is up"
        );
    }
    anyhow::anyhow!("registry {host}: {text}")
}

/// A refusal of our credentials, by status code or registry error code, never by the
/// error's text (digests and URLs in it can hold "401"). A wrong password reaches us
/// three ways: a 401 on a HEAD (`RequestError`), `ServerError` on a push,
/// `UnauthorizedError` on a pull.
fn is_auth_failure(err: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode};
    let status = match err {
        E::ServerError { code, .. } => Some(*code),
        E::RequestError(inner) => inner.status().map(|s| s.as_u16()),
        _ => None,
    };
    let refused_code = matches!(err, E::RegistryError { envelope, .. }
        if envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)));
    matches!(
        err,
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_)
    ) || matches!(status, Some(401 | 403))
        || refused_code
}

#[cfg(test)]
mod tests {
    use oci_client::errors::{OciDistributionError as E, OciEnvelope, OciError, OciErrorCode};

    #[test]
    fn auth_failures_are_judged_by_codes_not_text() {
        let server = |code: u16, message: &str| E::ServerError {
            code,
            url: "http://127.0.0.1:5000/v2/pause/blobs/sha256:4011403".to_string(),
            message: message.to_string(),
        };
        assert!(super::is_auth_failure(&server(401, "")));
        assert!(super::is_auth_failure(&server(403, "")));
        assert!(super::is_auth_failure(&E::UnauthorizedError {
            url: String::new()
        }));
        let registry = |code: OciErrorCode| E::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: String::new(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: String::new(),
        };
        assert!(super::is_auth_failure(&registry(OciErrorCode::Denied)));
        assert!(!super::is_auth_failure(&registry(
            OciErrorCode::BlobUnknown
        )));
        // A server error whose URL and message hold "401" and "403" is not one.
        assert!(!super::is_auth_failure(&server(
            500,
            "digest sha256:401403 failed"
        )));
    }

    use super::*;

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
    fn credentials_come_from_the_docker_config_format() {
        let dir = std::env::temp_dir().join(format!("xtask-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("auth.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        std::fs::write(
            &file,
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{encoded}"}}}}}}"#),
        )
        .unwrap();
        match credentials(Some(&file), "127.0.0.1:5000").unwrap() {
            RegistryAuth::Basic(user, pass) => {
                assert_eq!((user.as_str(), pass.as_str()), ("alice", "s3cr:et"))
            }
            _ => panic!("expected basic auth"),
        }
        assert!(matches!(
            credentials(Some(&file), "ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        ));
        std::fs::write(&file, r#"{"auths":{"ghcr.io":{"auth":"not base64!"}}}"#).unwrap();
        assert!(credentials(Some(&file), "ghcr.io")
            .unwrap_err()
            .to_string()
            .contains("not base64"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
