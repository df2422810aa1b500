//! The one poll loop: wait, with a deadline, until a probe gives a value.

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// Calls `probe` every `every` until it gives `Some`, or fails after `limit` saying
/// what it waited for. A probe's own error ends the wait at once.
pub fn until<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    within(limit, every, probe)?
        .with_context(|| format!("timed out after {limit:?} waiting for {what}"))
}

/// `until`, but a deadline that passes is `None`: for waits that may rightly end so.
pub fn within<T>(
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let started = Instant::now();
    loop {
        if let Some(value) = probe()? {
            return Ok(Some(value));
        }
        if started.elapsed() >= limit {
            return Ok(None);
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::until;
    use std::time::Duration;

    #[test]
    fn waits_for_a_value_and_gives_up_at_the_deadline() {
        let mut calls = 0;
        let got = until(
            "three calls",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                calls += 1;
                Ok((calls == 3).then_some(calls))
            },
        );
        assert_eq!(got.unwrap(), 3);
        let err = until(
            "never",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || Ok(None::<()>),
        )
        .unwrap_err();
        assert!(err.to_string().contains("waiting for never"), "{err}");
        let failed = until(
            "a failing probe",
            Duration::from_secs(5),
            Duration::ZERO,
            || anyhow::bail!("probe broke") as anyhow::Result<Option<()>>,
        );
        assert_eq!(failed.unwrap_err().to_string(), "probe broke");
    }
}
