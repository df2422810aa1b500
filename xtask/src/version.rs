//! VERSION: the image tag and what `pause -v` prints.

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// The OCI distribution-spec tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn validate(version: &str) -> Result<()> {
    let mut bytes = version.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok || version.len() > 128 {
        bail!(
            "invalid VERSION {version:?}: it must be an OCI tag, [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}; pass e.g. --version 3.10"
        );
    }
    Ok(())
}

/// `--version`, else derived from git: the nearest `v*` tag without its `v`
/// (`v1.2.0` → `1.2.0`), with `-N-gSHA` when commits follow it; with no tag,
/// `0.0.0-gSHA`. A dirty work tree adds `-dirty`.
pub fn resolve(sh: &Shell, given: Option<String>) -> Result<String> {
    let version = match given {
        Some(v) => v,
        None => from_git(sh)?,
    };
    validate(&version)?;
    Ok(version)
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
    use super::validate;

    #[test]
    fn tags_follow_the_oci_grammar() {
        for good in ["3.10", "v1.0.0-rc.1", "_x", "HEAD", &"a".repeat(128)] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", ".x", "1.0 beta", "a/b", "ü", &"a".repeat(129)] {
            let err = validate(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid VERSION"), "{bad}: {err}");
        }
    }
}
