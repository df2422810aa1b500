//! Injects the version that `pause -v` prints.
//!
//! The version comes from `PAUSE_VERSION` (upstream: `-DVERSION=...`), `HEAD` when unset.
//! It is validated here, with the grammar xtask uses, so that a bad value fails the
//! build instead of shipping a binary whose `-v` line breaks whatever parses it.

#[path = "src/version.rs"]
mod version;

use std::env;
use std::process::exit;

fn main() {
    println!("cargo:rerun-if-env-changed=PAUSE_VERSION");
    println!("cargo:rerun-if-changed=src/version.rs");
    let given = match env::var("PAUSE_VERSION") {
        Ok(v) => v,
        Err(env::VarError::NotPresent) => "HEAD".to_string(),
        Err(env::VarError::NotUnicode(v)) => fail(&format!("{v:?}")),
    };
    if !version::is_valid(&given) {
        fail(&given);
    }
    println!("cargo:rustc-env=PAUSE_BUILD_VERSION={given}");
    println!(
        "cargo:rustc-env=PAUSE_VERSION_LINE={}{given}",
        version::LINE_PREFIX
    );
}

fn fail(shown: &str) -> ! {
    eprintln!(
        "error: PAUSE_VERSION={shown:?} is invalid: it must be an OCI tag, {}; unset it for \"HEAD\"",
        version::GRAMMAR
    );
    exit(1);
}
