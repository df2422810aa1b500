//! What a registry's failed answer means, in one place: for a moment (try again), a
//! refusal of our credentials, "not there" (only a 404 or `MANIFEST_UNKNOWN` says so),
//! or final; and the one line a user reads for each.
//!
//! Nothing else decides these: the session retries by `is_transient`, reads "absent"
//! only by `is_not_found`, and says what a refusal means by `Access`.

use std::time::Duration;

/// One request that did not get the answer it wanted.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The registry answered, with a status we did not ask for. `codes` are the OCI
    /// error codes of its error body, `message` their messages (never the raw body).
    Status {
        status: u16,
        url: String,
        codes: Vec<String>,
        message: String,
    },
    /// No answer: the connection was refused, reset or dropped, or TLS failed.
    Transport { url: String, detail: String },
    /// The request, body and all, took longer than its deadline.
    Deadline { url: String, limit: Duration },
    /// The body passed its bound: the request ended there, unread.
    TooLarge { url: String, limit: u64 },
    /// An answer that breaks the protocol (no `Location` after an upload starts, a
    /// token response without a token, a challenge we cannot follow).
    Protocol { url: String, detail: String },
}

/// Whether a request reads or writes: it changes what a refusal means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Access {
    Read,
    Write,
}

impl Failure {
    /// Worth another try: the server's 5xx or 429, no answer, or a deadline passed.
    /// Never a refusal, another 4xx, an oversized body or a protocol break: those give
    /// the same answer again.
    pub fn is_transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => *status >= 500 || *status == 429,
            Failure::Transport { .. } | Failure::Deadline { .. } => true,
            Failure::TooLarge { .. } | Failure::Protocol { .. } => false,
        }
    }

    /// The registry says the thing is not there: a 404, or the `MANIFEST_UNKNOWN` /
    /// `BLOB_UNKNOWN` code. Nothing else is ever read as absent.
    pub fn is_not_found(&self) -> bool {
        match self {
            Failure::Status { status, codes, .. } => {
                *status == 404
                    || codes
                        .iter()
                        .any(|c| c == "MANIFEST_UNKNOWN" || c == "BLOB_UNKNOWN")
            }
            _ => false,
        }
    }

    /// A refusal of our credentials, by status or registry error code, never by text
    /// (digests and URLs can hold "401").
    pub fn is_refusal(&self) -> bool {
        match self {
            Failure::Status { status, codes, .. } => {
                matches!(status, 401 | 403)
                    || codes.iter().any(|c| c == "UNAUTHORIZED" || c == "DENIED")
            }
            _ => false,
        }
    }

    /// A few words for a retry note: `HTTP 503`, `timed out after 30s`, ….
    pub fn short(&self) -> String {
        match self {
            Failure::Status { status, .. } => format!("HTTP {status}"),
            Failure::Transport { detail, .. } => detail.clone(),
            Failure::Deadline { limit, .. } => format!("no answer within {}s", limit.as_secs()),
            Failure::TooLarge { limit, .. } => format!("a body over {}", bytes(*limit)),
            Failure::Protocol { detail, .. } => detail.clone(),
        }
    }

    /// The one line a user reads, for a request to `host`'s `repository`.
    pub fn explain(&self, access: Access, host: &str, repository: &str) -> String {
        if self.is_refusal() && access == Access::Write {
            return format!(
                "{host} refused to let these credentials push to {repository}: they may read it but not write it (a token that grants pull only?); use credentials with push rights"
            );
        }
        if self.is_refusal() {
            return format!(
                "authentication to {host} failed: check the credentials for {host} (--authfile, REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json or their credential helper)"
            );
        }
        match self {
            Failure::Status {
                status,
                url,
                message,
                ..
            } => {
                let said = match message.trim() {
                    "" => String::new(),
                    message => format!(": {message}"),
                };
                format!("registry {host} answered HTTP {status} to {url}{said}")
            }
            Failure::Transport { url, detail } => format!(
                "cannot reach registry {host} ({detail}) for {url}; check the address and that the registry is up"
            ),
            Failure::Deadline { url, limit } => format!(
                "registry {host} did not answer {url} within {}s (--timeout sets the limit)",
                limit.as_secs()
            ),
            Failure::TooLarge { url, limit } => format!(
                "registry {host} sent more than {} for {url}; stopped reading (no manifest, index or token is that large)",
                bytes(*limit)
            ),
            Failure::Protocol { url, detail } => format!("registry {host}: {detail} ({url})"),
        }
    }
}

/// `4 MiB`, `64 KiB`, or a plain byte count.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// The OCI error envelope's codes and messages (`{"errors":[{"code","message"}]}`),
/// from a body already bounded; anything else in it is not shown.
pub fn error_envelope(body: &[u8]) -> (Vec<String>, String) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return (Vec::new(), String::new());
    };
    let codes = envelope
        .errors
        .iter()
        .filter_map(|e| e.code.clone())
        .collect();
    let message: Vec<String> = envelope
        .errors
        .iter()
        .filter_map(|e| e.message.as_deref())
        .map(|m| m.chars().filter(|c| !c.is_control()).take(200).collect())
        .collect();
    (codes, message.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, codes: &[&str]) -> Failure {
        Failure::Status {
            status,
            url: "http://127.0.0.1:5000/v2/pause/manifests/sha256-401403".to_string(),
            codes: codes.iter().map(|c| c.to_string()).collect(),
            message: String::new(),
        }
    }

    #[test]
    fn only_not_found_means_absent() {
        assert!(status(404, &[]).is_not_found());
        assert!(status(404, &["NAME_UNKNOWN"]).is_not_found());
        assert!(status(400, &["MANIFEST_UNKNOWN"]).is_not_found());
        for other in [
            status(500, &[]),
            status(401, &[]),
            status(200, &[]),
            status(400, &["MANIFEST_INVALID"]),
            Failure::Transport {
                url: String::new(),
                detail: "connection refused".into(),
            },
            Failure::TooLarge {
                url: String::new(),
                limit: 4 << 20,
            },
            Failure::Deadline {
                url: String::new(),
                limit: Duration::from_secs(1),
            },
        ] {
            assert!(!other.is_not_found(), "{other:?}");
        }
    }

    #[test]
    fn moments_are_retried_and_nothing_else() {
        assert!(status(503, &[]).is_transient());
        assert!(status(429, &[]).is_transient());
        assert!(Failure::Deadline {
            url: String::new(),
            limit: Duration::from_secs(1)
        }
        .is_transient());
        assert!(!status(404, &[]).is_transient());
        assert!(!status(401, &[]).is_transient());
        // An endless body gives the same answer again: never retried.
        assert!(!Failure::TooLarge {
            url: String::new(),
            limit: 1
        }
        .is_transient());
    }

    #[test]
    fn refusals_are_judged_by_codes_not_text() {
        assert!(status(401, &[]).is_refusal());
        assert!(status(403, &[]).is_refusal());
        assert!(status(400, &["DENIED"]).is_refusal());
        assert!(!status(400, &["BLOB_UNKNOWN"]).is_refusal());
        // The URL holds "401" and "403": not a refusal.
        assert!(!status(500, &[]).is_refusal());
        let write = status(401, &[]).explain(Access::Write, "h", "pause");
        assert!(write.contains("may read it but not write it"), "{write}");
        let read = status(401, &[]).explain(Access::Read, "h", "pause");
        assert!(read.starts_with("authentication to h failed"), "{read}");
    }

    #[test]
    fn the_limit_is_named() {
        let line = Failure::TooLarge {
            url: "u".into(),
            limit: 4 << 20,
        }
        .explain(Access::Read, "h", "r");
        assert!(line.contains("more than 4 MiB for u"), "{line}");
        assert_eq!(bytes(64 << 10), "64 KiB");
        assert_eq!(bytes(1000), "1000 bytes");
    }

    #[test]
    fn error_bodies_give_codes_and_messages_only() {
        let (codes, message) = error_envelope(
            br#"{"errors":[{"code":"DENIED","message":"no\nway","detail":{"x":1}}]}"#,
        );
        assert_eq!(codes, ["DENIED"]);
        assert_eq!(message, "noway");
        assert_eq!(
            error_envelope(b"<html>500</html>"),
            (Vec::new(), String::new())
        );
    }
}
