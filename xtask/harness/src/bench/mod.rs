//! `cargo xtask bench`: the figures we claim, measured, beside real peers in the same run.
//!
//! Benchmarks report numbers; they assert nothing (tests do that). Each figure is
//! sampled in at least 5 runs; in every run each candidate is sampled in turn, so a
//! slow moment of the machine falls on all of them. A figure is the median of its
//! runs, with the spread (lowest and highest run). Goals compare us with every peer,
//! as measured. Output: a markdown table (README's Performance section with
//! `--update-readme`), JSON with the machine and every raw sample, an SVG plot.

mod measure;
mod report;

use crate::flags;
use anyhow::{bail, ensure, Context, Result};
use report::{Report, Samples};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use xshell::Shell;
use xtask::build::{self, DistBinary};
use xtask::image::{self, description::ImageDescription};
use xtask::{platform, version};

/// Something that runs as a pod's pause: ours, or a peer given as NAME=COMMAND.
#[derive(Debug, Serialize)]
pub struct Candidate {
    pub name: String,
    /// The program and its arguments, as it runs as pause.
    pub argv: Vec<String>,
    /// The program's file, resolved (what /proc/PID/exe shows).
    pub binary: PathBuf,
}

impl Candidate {
    /// `NAME=COMMAND`, the command split on spaces: `catatonit=/usr/bin/catatonit -P`.
    pub fn parse(sh: &Shell, spec: &str) -> Result<Candidate> {
        let usage = || {
            format!("--baseline {spec:?}: expected NAME=COMMAND, e.g. --baseline 'catatonit=/usr/bin/catatonit -P'")
        };
        let (name, command) = spec.split_once('=').with_context(usage)?;
        let argv: Vec<String> = command.split_whitespace().map(str::to_string).collect();
        if name.trim().is_empty() || argv.is_empty() {
            bail!("{}", usage());
        }
        let found = if argv[0].contains('/') {
            Some(PathBuf::from(&argv[0]))
        } else {
            xtask::tools::find_on_path(sh, &argv[0])
        };
        let binary = found
            .filter(|p| p.is_file())
            .and_then(|p| std::fs::canonicalize(p).ok())
            .with_context(|| {
                format!(
                    "--baseline {name}: {} not found; give a path to the program",
                    argv[0]
                )
            })?;
        Ok(Candidate {
            name: name.trim().to_string(),
            argv,
            binary,
        })
    }

    fn ours(bin: &DistBinary) -> Result<Candidate> {
        Ok(Candidate {
            name: "ours".to_string(),
            argv: vec![bin.path.display().to_string()],
            binary: std::fs::canonicalize(&bin.path)?,
        })
    }
}

/// How much of each to measure.
struct Sampling {
    runs: usize,
    /// Start-ups, stops and version exits per candidate in each run.
    per_run: usize,
    /// Orphans per storm.
    ns: Vec<usize>,
}

/// Everything measured for one candidate: every raw sample, by run.
#[derive(Serialize, Default)]
pub struct Measured {
    pub binary_size: u64,
    pub layer_size: u64,
    pub version_flag: Option<&'static str>,
    pub vm_rss_kb: Samples,
    pub pss_kb: Samples,
    /// exec → blocked in its signal wait, µs.
    pub startup_us: Samples,
    /// exec → exit of the version flag, µs.
    pub version_exit_us: Samples,
    /// SIGTERM → exit, µs.
    pub stop_us: Samples,
    /// By N: PID 1's CPU per reaped orphan (ns), wall time until none left (s), left.
    pub reaping: Vec<Reaping>,
}

/// One storm size: N, CPU per reap (ns), wall time (s), the zombies each run left.
pub type Reaping = (usize, Samples, Samples, Vec<usize>);

impl flags::Bench {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let mut peers = Vec::new();
        for spec in &self.baseline {
            peers.push(Candidate::parse(sh, spec)?);
        }
        let root = sh.current_dir();
        let out_dir = root.join("target/bench");
        std::fs::create_dir_all(&out_dir)?;
        let description = ImageDescription::load(&root)?;
        let version = version::resolve(sh, self.version)?;
        let plan = if self.quick {
            Sampling {
                runs: 5,
                per_run: 10,
                ns: vec![100, 1_000],
            }
        } else {
            Sampling {
                runs: 7,
                per_run: 40,
                ns: vec![1_000, 10_000],
            }
        };

        eprintln!("bench: building (warm) and timing the assembly of the image");
        let binaries = build::build(
            sh,
            &description.platforms()?,
            &version,
            xtask::flags::Builder::Zig,
        )?;
        let layout = out_dir.join("layout/pause");
        let mut assembly_ms = Samples::default();
        let mut assembled = None;
        let sources = image::Sources::of_tree(sh, &description, &binaries, &version)?;
        for _ in 0..plan.runs {
            let started = Instant::now();
            assembled = Some(image::assemble(sh, &sources, &layout)?);
            assembly_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let assembled = assembled.context("no assembly run")?;
        let sizes: Vec<(String, u64, u64)> = binaries
            .iter()
            .map(|b| {
                let arch = b.platform.arch;
                let image = assembled.arches.iter().find(|a| a.arch == arch);
                let image = image.with_context(|| format!("the image has no {arch} entry"))?;
                Ok((arch.to_string(), b.size, image.layer_size))
            })
            .collect::<Result<_>>()?;

        let host = platform::host()?;
        let ours = binaries
            .iter()
            .find(|b| b.platform.arch == host.arch)
            .with_context(|| format!("no {} binary was built", host.arch))?;
        let candidates: Vec<Candidate> = std::iter::once(Candidate::ours(ours))
            .chain(peers.into_iter().map(Ok))
            .collect::<Result<_>>()?;
        let measured = measure_interleaved(&candidates, &plan)?;

        let report = Report::new(
            version.to_string(),
            plan.runs,
            sizes,
            assembled.total_size,
            assembly_ms,
            candidates,
            measured,
        );
        let table = report.markdown();
        std::fs::write(out_dir.join("bench.md"), &table)?;
        std::fs::write(
            out_dir.join("bench.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
        report.plot(&out_dir.join("reaping.svg"))?;
        println!("{table}");
        println!(
            "wrote {}/bench.{{md,json}} and reaping.svg",
            out_dir.display()
        );
        if self.update_readme {
            report::update_readme(&root.join("README.md"), &table)?;
            println!("updated README.md's Performance section");
        }
        Ok(())
    }
}

/// Every figure, run after run, each candidate in turn within a run.
fn measure_interleaved(candidates: &[Candidate], plan: &Sampling) -> Result<Vec<Measured>> {
    measure::tighten_timer_slack()?;
    let mut all: Vec<Measured> = Vec::new();
    for c in candidates {
        let bytes =
            std::fs::read(&c.binary).with_context(|| format!("reading {}", c.binary.display()))?;
        let (layer, _) = image::layer(&bytes, 0)?;
        all.push(Measured {
            binary_size: bytes.len() as u64,
            layer_size: layer.len() as u64,
            version_flag: measure::version_flag(c),
            reaping: plan
                .ns
                .iter()
                .map(|&n| (n, Samples::default(), Samples::default(), Vec::new()))
                .collect(),
            ..Measured::default()
        });
    }
    for run in 1..=plan.runs {
        eprintln!("bench: run {run}/{}", plan.runs);
        for (c, m) in candidates.iter().zip(&mut all) {
            let mut startups = Vec::new();
            let mut stops = Vec::new();
            let mut versions = Vec::new();
            for idx in 0..plan.per_run {
                let started = measure::Started::new(c)?;
                startups.push(started.startup.as_secs_f64() * 1e6);
                if idx == 0 {
                    let (rss, pss) = started.memory_kb()?;
                    m.vm_rss_kb.push(rss as f64);
                    m.pss_kb.push(pss as f64);
                }
                stops.push(started.stop()?.as_secs_f64() * 1e6);
                if let Some(flag) = m.version_flag {
                    versions.push(measure::version_exit(c, flag)?.as_secs_f64() * 1e6);
                }
            }
            m.startup_us.push_run(startups);
            m.stop_us.push_run(stops);
            if !versions.is_empty() {
                m.version_exit_us.push_run(versions);
            }
            for (n, cpu, wall, left) in &mut m.reaping {
                let storm = measure::storm(c, *n)
                    .with_context(|| format!("{} reaping {n} orphans", c.name))?;
                cpu.push(storm.cpu_ns_per_reap);
                wall.push(storm.wall_s);
                left.push(storm.left);
            }
        }
    }
    for (c, m) in candidates.iter().zip(&all) {
        let left: usize = m.reaping.iter().flat_map(|r| &r.3).sum();
        ensure!(left == 0, "{} left {left} zombies unreaped", c.name);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_are_name_equals_command() {
        let sh = Shell::new().unwrap();
        let parse = |spec: &str| Candidate::parse(&sh, spec);
        let c = parse("shell=/bin/sh -c true").unwrap();
        assert_eq!(c.name, "shell");
        assert_eq!(c.argv, ["/bin/sh", "-c", "true"]);
        assert_eq!(c.binary, std::fs::canonicalize("/bin/sh").unwrap());
        let on_path = parse("s=sh").unwrap();
        assert!(on_path.binary.is_absolute());
        for bad in ["/bin/sh", "=/bin/sh", "x=", "x=  "] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("expected NAME=COMMAND"), "{bad}: {err}");
        }
        let err = parse("x=/no/such/pause").unwrap_err().to_string();
        assert!(err.contains("/no/such/pause not found"), "{err}");
    }
}
