//! What `pause -v` prints, and which versions it may print. One file for the build
//! script, the tests and xtask, which include it by path: none of them can depend on
//! a binary crate.

/// `pause -v` prints this, the version and a newline.
pub const LINE_PREFIX: &str = "pause.rs ";

/// The OCI distribution-spec tag grammar, as messages show it.
pub const GRAMMAR: &str = "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}";

/// Whether `version` matches `GRAMMAR`: the image is tagged with the version, so the
/// version must be a tag.
pub fn is_valid(version: &str) -> bool {
    let mut bytes = version.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    first_ok && rest_ok && version.len() <= 128
}
