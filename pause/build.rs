//! Injects the version that `pause -v` prints.
//!
//! The version comes from `PAUSE_VERSION` (upstream: `-DVERSION=...`), `HEAD` when unset.
//! It is validated here so that a bad value fails the build instead of shipping a
//! binary whose `-v` line breaks whatever parses it.

use std::env;
use std::process::exit;

const MAX_LEN: usize = 128;

fn main() {
    println!("cargo:rerun-if-env-changed=PAUSE_VERSION");
    let version = match env::var("PAUSE_VERSION") {
        Ok(v) => v,
        Err(env::VarError::NotPresent) => "HEAD".to_string(),
        Err(env::VarError::NotUnicode(v)) => fail(&format!("{v:?}")),
    };
    if !is_valid(&version) {
        fail(&version);
    }
    println!("cargo:rustc-env=PAUSE_BUILD_VERSION={version}");
}

/// Printable ASCII with no whitespace, 1..=128 bytes.
fn is_valid(version: &str) -> bool {
    !version.is_empty() && version.len() <= MAX_LEN && version.bytes().all(|b| b.is_ascii_graphic())
}

fn fail(shown: &str) -> ! {
    eprintln!(
        "error: PAUSE_VERSION={shown:?} is invalid: it must be 1 to {MAX_LEN} printable ASCII characters with no whitespace; unset it for \"HEAD\""
    );
    exit(1);
}
