//! VERSION: the image tag and what `pause -v` prints.

use anyhow::{bail, Context, Result};
use std::str::FromStr;
use xshell::{cmd, Shell};

/// The `-v` line's prefix and the grammar, shared with pause's build script.
#[path = "../../pause/src/version.rs"]
mod shared;

/// A valid VERSION: an OCI tag (`shared::GRAMMAR`). Flags parse into it, so a command
/// never sees an invalid one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(String);

impl FromStr for Version {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Version> {
        validate(text)?;
        Ok(Version(text.to_string()))
    }
}

impl std::ops::Deref for Version {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Version {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_ref()
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `pause -v` prints for `version`, without the newline.
pub fn line(version: &str) -> String {
    format!("{}{version}", shared::LINE_PREFIX)
}

pub use shared::LINE_PREFIX;

/// Checks a tag (or VERSION) against the OCI grammar, with a one-line error.
pub fn validate(version: &str) -> Result<()> {
    if !shared::is_valid(version) {
        bail!(
            "invalid VERSION {version:?}: it must be an OCI tag, {}; pass e.g. --version 3.10",
            shared::GRAMMAR
        );
    }
    Ok(())
}

/// `--version`, else derived from git: the nearest `v*` tag without its `v`
/// (`v1.2.0` → `1.2.0`), with `-N-gSHA` when commits follow it; with no tag,
/// `0.0.0-gSHA`. A dirty work tree adds `-dirty`.
pub fn resolve(sh: &Shell, given: Option<Version>) -> Result<Version> {
    match given {
        Some(version) => Ok(version),
        None => from_git(sh)?.parse(),
    }
}

fn from_git(sh: &Shell) -> Result<String> {
    let described = cmd!(
        sh,
        "git describe --tags --match v* --dirty --always --abbrev=12"
    )
    .quiet()
    .ignore_stderr()
    .read()
    .context("deriving VERSION from git failed; run inside the repository or pass --version")?;
    Ok(match described.strip_prefix('v') {
        Some(tagged) => tagged.to_string(),
        // --always gives the bare commit when no tag matches.
        None => format!("0.0.0-g{described}"),
    })
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn versions_are_oci_tags() {
        for good in ["3.10", "v1.0.0-rc.1", "_x", "HEAD", &"a".repeat(128)] {
            assert!(good.parse::<Version>().is_ok(), "{good}");
        }
        for bad in ["", "-x", ".x", "1.0 beta", "a/b", "ü", &"a".repeat(129)] {
            let err = bad.parse::<Version>().unwrap_err().to_string();
            assert!(err.starts_with("invalid VERSION"), "{bad}: {err}");
        }
    }
}
