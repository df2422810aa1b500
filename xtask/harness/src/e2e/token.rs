//! Bearer-token auth, the flow a release meets at ghcr.io: docker-registry with
//! `auth: token`, and an issuer on loopback that checks Basic credentials and the
//! scope asked for, and signs JWTs (ES256) with a throw-away key whose certificate the
//! registry trusts. Push and reproduce go challenge → token → request.

use super::loopback::{read_head, Server, Serving};
use super::registry::{authfile, Registry, PASSWORD, USER};
use super::{ok, xtask_cli, CommandOutput, Fixtures};
use anyhow::{bail, ensure, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use xshell::{cmd, Shell};
use xtask::image::{self, Sources};

const SERVICE: &str = "pause-e2e";
const ISSUER: &str = "pause-e2e-issuer";
/// A user whose tokens grant pull, never push.
const READER: &str = "pause-reader";

/// A repository and the actions a token grants on it.
type Grant = (String, Vec<String>);

/// The signing key and the id the registry knows it by.
struct Issuer {
    key: EcdsaKeyPair,
    kid: String,
}

impl Issuer {
    /// A P-256 key and a self-signed certificate for it, made by openssl in `dir`.
    /// Returns the issuer and the certificate (the registry's `rootcertbundle`).
    fn create(sh: &Shell, dir: &Path) -> Result<(Issuer, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let (key, cert) = (dir.join("issuer.key"), dir.join("issuer.crt"));
        cmd!(
            sh,
            "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {key}"
        )
        .quiet()
        .run()
        .context("openssl genpkey failed")?;
        cmd!(
            sh,
            "openssl req -new -x509 -key {key} -out {cert} -days 2 -subj /CN={ISSUER}"
        )
        .quiet()
        .run()
        .context("openssl req failed")?;
        let public = cmd!(sh, "openssl pkey -in {key} -pubout -outform DER")
            .quiet()
            .output()?
            .stdout;
        let pkcs8 = pem_body(&std::fs::read_to_string(&key)?)?;
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|err| anyhow::anyhow!("the issuer key is not P-256 PKCS#8: {err}"))?;
        Ok((
            Issuer {
                key,
                kid: libtrust_key_id(&public),
            },
            cert,
        ))
    }

    /// A JWT for `user` granting `access`.
    fn token(&self, user: &str, access: &[Grant]) -> Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let header = serde_json::json!({ "typ": "JWT", "alg": "ES256", "kid": self.kid });
        let access: Vec<_> = access
            .iter()
            .map(|(name, actions)| serde_json::json!({ "type": "repository", "name": name, "actions": actions }))
            .collect();
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": user, "aud": SERVICE,
            "iat": now, "nbf": now - 60, "exp": now + 600,
            "jti": format!("{now}-{}", access.len()),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .map_err(|_| anyhow::anyhow!("signing a token failed"))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// The DER inside a PEM file.
fn pem_body(pem: &str) -> Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    Ok(STANDARD.decode(body)?)
}

/// How distribution names a key (libtrust): the SHA-256 of its DER public key, first
/// 30 bytes, base32, in groups of four joined by colons.
fn libtrust_key_id(public_der: &[u8]) -> String {
    let digest = xtask::build::sha256_hex(public_der);
    let bytes: Vec<u8> = (0..30)
        .map(|i| u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    let encoded = base32(&bytes);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32, no padding (30 bytes make exactly 48 characters).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buffer, mut bits) = (String::new(), 0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The token endpoint: `GET /token?service=…&scope=repository:NAME:ACTIONS` with Basic
/// credentials; what it granted is kept for the report.
struct TokenServer {
    server: Server,
    granted: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    fn start(issuer: Issuer) -> Result<TokenServer> {
        let granted = Arc::new(Mutex::new(Vec::new()));
        let record = granted.clone();
        let server = Server::start(Serving::OneAtATime, move |stream| {
            answer(stream, &issuer, &record)
        })?;
        Ok(TokenServer { server, granted })
    }

    fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr)
    }

    fn granted(&self) -> Vec<String> {
        self.granted.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

fn answer(mut stream: TcpStream, issuer: &Issuer, granted: &Mutex<Vec<String>>) -> Result<()> {
    let head = read_head(&mut stream)?;
    let (status, body) = match grant(&head) {
        Ok((user, access)) => {
            let token = issuer.token(&user, &access)?;
            for (name, actions) in &access {
                granted
                    .lock()
                    .map(|mut g| g.push(format!("{user}: {name} {}", actions.join(","))))
                    .ok();
            }
            let body =
                serde_json::json!({ "token": token, "access_token": token, "expires_in": 600 });
            ("200 OK", body.to_string())
        }
        Err(err) => (
            "401 Unauthorized",
            serde_json::json!({ "details": err.to_string() }).to_string(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes())?;
    Ok(())
}

/// Who asks, and what they get: every action asked for, but pull only for READER.
fn grant(head: &str) -> Result<(String, Vec<Grant>)> {
    let target = head.split_whitespace().nth(1).unwrap_or_default();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let basic = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Authorization: Basic ")
                .or_else(|| l.strip_prefix("authorization: Basic "))
        })
        .context("no Basic credentials")?;
    let decoded = String::from_utf8(STANDARD.decode(basic.trim())?)?;
    let (user, password) = decoded.split_once(':').context("malformed credentials")?;
    if password != PASSWORD || (user != USER && user != READER) {
        bail!("wrong user or password");
    }
    let mut access = Vec::new();
    for pair in query.split('&') {
        let Some(("scope", scope)) = pair.split_once('=') else {
            continue;
        };
        let scope = percent_decode(scope);
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) = (parts.next(), parts.next(), parts.next());
        let (Some("repository"), Some(name), Some(actions)) = (kind, name, actions) else {
            continue;
        };
        let allowed: Vec<String> = actions
            .split(',')
            .filter(|a| user == USER || *a == "pull")
            .map(str::to_string)
            .collect();
        access.push((name.to_string(), allowed));
    }
    Ok((user.to_string(), access))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn check(fixtures: &Fixtures) -> Result<()> {
    let dir = fixtures.work.join("token");
    let (issuer, cert) = Issuer::create(fixtures.sh, &dir)?;
    let tokens = TokenServer::start(issuer)?;
    let registry = Registry::start_with_tokens(
        &dir.join("registry"),
        &tokens.realm(),
        SERVICE,
        ISSUER,
        &cert,
    )?;
    let host = &registry.host;
    let layout = probe_layout(fixtures, &dir)?;
    let good = authfile(&dir, host, USER, PASSWORD)?;
    let to = format!("{host}/pause:{}", fixtures.version);
    let digest = super::registry::push(&layout, &to, &good)?;
    ok(format!(
        "token: push to {to} went challenge → token → push ({digest}); the issuer granted {:?}",
        tokens.granted()
    ));
    refusals(fixtures, &dir, host, &layout, &to)?;
    // The probe image's revision is HEAD's: its rebuild is the warm one (none on a
    // tree with uncommitted changes).
    if !fixtures.rebuilt()? {
        let why = super::reproduce::NEEDS_A_COMMIT;
        return fixtures.skip_or_fail("token reproduce", why, "");
    }
    reproduce_through(fixtures, &format!("{host}/pause@{digest}"), &good)
}

/// A one-platform image (the probe's), so that reproducing it is the warm rebuild that
/// reproduce.rs already made. Returns the layout.
fn probe_layout(fixtures: &Fixtures, dir: &Path) -> Result<PathBuf> {
    let probe = xtask::platform::probe();
    let binaries: Vec<_> = fixtures
        .binaries
        .iter()
        .filter(|b| b.platform.arch == probe.arch)
        .cloned()
        .collect();
    let layout = dir.join("layout/pause");
    let sources = Sources::of_tree(
        fixtures.sh,
        &fixtures.description,
        &binaries,
        &fixtures.version,
    )?;
    image::assemble(fixtures.sh, &sources, &layout)?;
    Ok(layout)
}

/// A wrong password, and a user whose token grants pull only: push stops with one
/// line that says which it was.
fn refusals(fixtures: &Fixtures, dir: &Path, host: &str, layout: &Path, to: &str) -> Result<()> {
    let wrong = authfile(dir, host, USER, "wrong-password")?;
    let reader = authfile(dir, host, READER, PASSWORD)?;
    let refused = format!("{host} refused to let these credentials push");
    // A new repository: the first write refused is a blob upload, not a manifest.
    let new_repo = format!("{host}/never-pushed:{}", fixtures.version);
    let cases = [
        (
            "a wrong password",
            &wrong,
            to,
            vec![format!("authentication to {host} failed")],
        ),
        ("a pull-only token", &reader, to, vec![refused.clone()]),
        (
            "a pull-only token, to a new repository",
            &reader,
            new_repo.as_str(),
            vec!["uploading blob".to_string(), refused],
        ),
    ];
    for (who, file, to, expected) in cases {
        let push = xtask_cli(fixtures.sh)
            .args(["push", "--layout"])
            .arg(layout);
        let said = CommandOutput::of(push.args(["--to", to, "--authfile"]).arg(file))?;
        let error = said
            .sole_error()
            .filter(|e| !said.success() && expected.iter().all(|x| e.contains(x)))
            .with_context(|| {
                format!(
                    "push with {who} did not stop with one line naming {expected:?}: {:?}",
                    said.stderr
                )
            })?;
        ok(format!(
            "token: push with {who} stops with one line: {error}"
        ));
    }
    Ok(())
}

/// `cargo xtask reproduce` of the pushed digest, pulling through a token.
fn reproduce_through(fixtures: &Fixtures, by_digest: &str, authfile: &Path) -> Result<()> {
    let cmd = xtask_cli(fixtures.sh).args(["reproduce", by_digest, "--authfile"]);
    let said = CommandOutput::of(cmd.arg(authfile))?;
    ensure!(
        said.success()
            && said
                .stdout
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("identical: ")),
        "reproduce through token auth: exit {:?}, stdout {:?}, stderr {:?}",
        said.code,
        said.stdout,
        said.stderr
    );
    ok(format!(
        "token: reproduce {by_digest} pulled through a token: identical"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base32_and_key_ids_take_distributions_form() {
        assert_eq!(super::base32(b"foobar"), "MZXW6YTBOI");
        let id = super::libtrust_key_id(b"any key");
        assert_eq!(id.len(), 48 + 11, "{id}");
        assert_eq!(id.split(':').count(), 12, "{id}");
        assert_eq!(
            super::percent_decode("repository%3Apause%3Apull%2Cpush"),
            "repository:pause:pull,push"
        );
    }
}
