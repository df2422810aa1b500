//! An SPDX 2.3 JSON document per arch: the binary, the crates in it, the toolchain
//! (rustc's version and the pinned rustup toolchain's name) and the linker.
//!
//! Crates come from one `cargo metadata` (normal dependencies of pause only, each edge
//! kept when its `cfg(…)` holds for the arch's target, as cargo decides it), versions
//! and licenses from Cargo.lock and the crates' manifests.

use crate::build::BuildRecord;
use crate::platform::Platform;
use anyhow::{Context, Result};
use cargo_platform::Cfg;
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::BTreeMap;
use std::str::FromStr;
use xshell::{cmd, Shell};

pub const MEDIA_TYPE: &str = "application/spdx+json";

/// A crate pause links, for the SBOM.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Crate {
    pub name: String,
    pub version: String,
    pub license: String,
}

/// The crates linked into pause for each target, from one `cargo metadata`, cached
/// in `target/tools/sbom-crates.json` under the hash of what decides them (Cargo.lock,
/// the manifests, the targets): a warm assembly runs no cargo at all.
pub fn linked_crates(sh: &Shell, triples: &[&str]) -> Result<BTreeMap<String, Vec<Crate>>> {
    let root = sh.current_dir();
    let key = cache_key(&root, triples)?;
    let cache = root.join("target/tools/sbom-crates.json");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Ok(cached) = serde_json::from_str::<Cached>(&text) {
            if cached.key == key {
                return Ok(cached.crates);
            }
        }
    }
    let crates = linked_crates_uncached(sh, triples)?;
    let tmp = cache.with_extension("json.partial");
    crate::files::create_dir_all(cache.parent().expect("a file in target/tools"))?;
    crate::files::write(
        &tmp,
        serde_json::to_vec(&Cached {
            key,
            crates: crates.clone(),
        })?,
    )?;
    crate::files::rename(&tmp, &cache)?;
    Ok(crates)
}

fn linked_crates_uncached(sh: &Shell, triples: &[&str]) -> Result<BTreeMap<String, Vec<Crate>>> {
    let text = cmd!(sh, "cargo metadata --locked --format-version 1")
        .quiet()
        .read()
        .context("running cargo metadata for the SBOM")?;
    let meta: Value = serde_json::from_str(&text)?;
    let mut crates = BTreeMap::new();
    for &triple in triples {
        let cfg = target_cfg(sh, triple)?;
        let applies = |kind: &Value| -> Result<bool> {
            if !kind["kind"].is_null() {
                return Ok(false);
            }
            Ok(match kind["target"].as_str() {
                None => true,
                Some(platform) => cargo_platform::Platform::from_str(platform)
                    .with_context(|| format!("cargo metadata names platform {platform:?}"))?
                    .matches(triple, &cfg),
            })
        };
        crates.insert(triple.to_string(), walk(&meta, applies)?);
    }
    Ok(crates)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    key: String,
    crates: BTreeMap<String, Vec<Crate>>,
}

fn cache_key(root: &std::path::Path, triples: &[&str]) -> Result<String> {
    let mut hasher = sha2::Sha256::new();
    for file in ["Cargo.lock", "Cargo.toml", "pause/Cargo.toml"] {
        let path = root.join(file);
        hasher.update(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    hasher.update(triples.join(" "));
    Ok(format!("{:x}", hasher.finalize()))
}

/// `rustc --print cfg` for the target, as cargo evaluates `[target.'cfg(…)']` with it.
fn target_cfg(sh: &Shell, triple: &str) -> Result<Vec<Cfg>> {
    let toolchain = format!("+{}", crate::tools::NIGHTLY);
    let text = cmd!(sh, "rustc {toolchain} --print cfg --target {triple}")
        .quiet()
        .read()
        .with_context(|| format!("rustc --print cfg --target {triple}"))?;
    text.lines()
        .map(|line| Cfg::from_str(line).with_context(|| format!("rustc printed cfg {line:?}")))
        .collect()
}

/// pause's dependencies, transitively, along the edges one of whose `dep_kinds`
/// `applies` (for the SBOM: a normal dependency on the arch's target); sorted by name,
/// pause itself included.
fn walk(meta: &Value, applies: impl Fn(&Value) -> Result<bool>) -> Result<Vec<Crate>> {
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root = packages
        .iter()
        .find(|(_, p)| p["name"] == "pause")
        .map(|(id, _)| *id)
        .context("pause is not in cargo metadata")?;
    let mut seen = vec![root];
    let mut queue = vec![root];
    while let Some(id) = queue.pop() {
        let Some(node) = nodes.get(id) else { continue };
        for dep in node["deps"].as_array().into_iter().flatten() {
            let mut normal = false;
            for kind in dep["dep_kinds"].as_array().into_iter().flatten() {
                normal |= applies(kind)?;
            }
            if let (true, Some(pkg)) = (normal, dep["pkg"].as_str()) {
                if !seen.contains(&pkg) {
                    seen.push(pkg);
                    queue.push(pkg);
                }
            }
        }
    }
    let mut crates: Vec<Crate> = seen
        .iter()
        .filter_map(|id| packages.get(id))
        .map(|p| Crate {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            version: p["version"].as_str().unwrap_or_default().to_string(),
            license: p["license"].as_str().unwrap_or("NOASSERTION").to_string(),
        })
        .collect();
    crates.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    Ok(crates)
}

/// The SPDX document for one arch's binary. It names what went into the binary, never
/// which builder ran (zig or cross give the same bytes, so they must give the same SBOM:
/// reproduce compares it).
pub fn document(
    p: &Platform,
    record: &BuildRecord,
    crates: &[Crate],
    created: &str,
    source: &str,
) -> Value {
    let version = &record.version;
    let mut packages = vec![binary_package(p, record, source)];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": BINARY_ID,
    })];
    for krate in crates.iter().filter(|c| c.name != "pause") {
        let (package, id) = crate_package(krate);
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": BINARY_ID,
            "relationshipType": "STATIC_LINK",
            "relatedSpdxElement": id,
        }));
    }
    for (idx, tool) in [&record.tools.rustc, &record.tools.linker]
        .into_iter()
        .enumerate()
    {
        let id = format!("SPDXRef-Tool-{idx}");
        packages.push(tool_package(&id, tool, record));
        relationships.push(json!({
            "spdxElementId": id,
            "relationshipType": "BUILD_TOOL_OF",
            "relatedSpdxElement": BINARY_ID,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("pause-{version}-{}-{}", p.oci_os, p.arch),
        "documentNamespace": format!("{source}/spdx/{version}/{}/{}", p.arch, record.sha256),
        "creationInfo": { "created": created, "creators": ["Tool: pause-xtask"] },
        "packages": packages,
        "relationships": relationships,
    })
}

const BINARY_ID: &str = "SPDXRef-Package-pause-binary";

fn binary_package(p: &Platform, record: &BuildRecord, source: &str) -> Value {
    json!({
        "SPDXID": BINARY_ID,
        "name": "pause",
        "versionInfo": record.version,
        "downloadLocation": source,
        "filesAnalyzed": false,
        "licenseConcluded": "Apache-2.0",
        "licenseDeclared": "Apache-2.0",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "APPLICATION",
        "checksums": [{ "algorithm": "SHA256", "checksumValue": record.sha256 }],
        "comment": format!("static binary for {} ({})", p.arch, p.triple),
    })
}

/// A linked crate as a package, and its SPDX id.
fn crate_package(krate: &Crate) -> (Value, String) {
    let (name, version) = (&krate.name, &krate.version);
    let id = format!(
        "SPDXRef-Package-{}",
        format!("crate-{name}-{version}")
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "-")
    );
    let package = json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": format!("https://crates.io/api/v1/crates/{name}/{version}/download"),
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": krate.license,
        "copyrightText": "NOASSERTION",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:cargo/{name}@{version}"),
        }],
    });
    (package, id)
}

fn tool_package(id: &str, tool: &str, record: &BuildRecord) -> Value {
    json!({
        "SPDXID": id,
        "name": tool.split_whitespace().next().unwrap_or("tool"),
        "versionInfo": tool,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "comment": format!(
            "built pause for target {} with rustup toolchain {}",
            record.target, record.tools.toolchain
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One unfiltered `cargo metadata` with our cfg evaluation gives, for every target,
    /// what cargo's own `--filter-platform` gives.
    #[test]
    fn crate_lists_match_cargos_filter_platform() {
        let sh = crate::shell().unwrap();
        let triples: Vec<&str> = crate::platform::PLATFORMS
            .iter()
            .map(|p| p.triple)
            .collect();
        let ours = linked_crates_uncached(&sh, &triples).unwrap();
        for triple in triples {
            let text = cmd!(
                sh,
                "cargo metadata --locked --format-version 1 --filter-platform {triple}"
            )
            .quiet()
            .read()
            .unwrap();
            let meta: Value = serde_json::from_str(&text).unwrap();
            let cargos = walk(&meta, |kind| Ok(kind["kind"].is_null())).unwrap();
            assert_eq!(ours[triple], cargos, "{triple}");
            assert!(
                cargos.iter().any(|c| c.name == "nix"),
                "{triple}: {cargos:?}"
            );
        }
    }
}

#[cfg(test)]
mod builder_tests {
    use super::*;
    use crate::tools::ToolVersions;

    /// zig and cross give the same bytes; the SBOM must not tell them apart either, or
    /// a cross-built release could never be reproduced with zig.
    #[test]
    fn the_sbom_does_not_depend_on_the_builder() {
        let record = |builder: &str| BuildRecord {
            version: "3.10".into(),
            target: "s390x-unknown-linux-musl".into(),
            builder: builder.into(),
            tools: ToolVersions {
                toolchain: crate::tools::NIGHTLY.into(),
                rustc: "rustc 1.97.0-nightly".into(),
                linker: "zig 0.15.1".into(),
            },
            sha256: "00".repeat(32),
        };
        let p = crate::platform::probe();
        let crates = [Crate {
            name: "nix".into(),
            version: "0.32.0".into(),
            license: "MIT".into(),
        }];
        let doc = |builder| document(p, &record(builder), &crates, "1970-01-01T00:00:00Z", "src");
        assert_eq!(doc("zig"), doc("cross"));
        assert!(doc("zig").to_string().contains("pkg:cargo/nix@0.32.0"));
    }
}
