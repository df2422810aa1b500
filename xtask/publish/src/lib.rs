//! Publishing the pause image, and checking a published one: `push`, `release` and
//! `reproduce`, over one bounded registry client (`registry`).
//!
//! A crate of its own because it needs an HTTPS stack (reqwest, rustls with ring,
//! tokio) that the main job (`cargo xtask build|image`) does not: `cargo xtask
//! push|release|reproduce` build and run it, as the test suite runs the harness. It
//! builds and assembles with the release path (`xtask`); xtask never uses it. The
//! harness uses it to push what it tests.

pub mod flags;
pub mod push;
pub mod registry;
pub mod release;
pub mod reproduce;

/// The async runtime a command drives the registry client on: one thread is enough
/// for one request at a time.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
