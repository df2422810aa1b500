//! An SPDX 2.3 JSON document per arch: the binary, the crates in it, the toolchain
//! (rustc's version and the pinned rustup toolchain's name) and the linker.
//!
//! Crates come from `cargo metadata` for the arch's target (normal dependencies of
//! pause only), versions and licenses from Cargo.lock and the crates' manifests.

use crate::build::BuildRecord;
use crate::platform::Platform;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use xshell::{cmd, Shell};

pub const MEDIA_TYPE: &str = "application/spdx+json";

/// A crate pause links, for the SBOM.
#[derive(Debug, Clone)]
pub struct Crate {
    pub name: String,
    pub version: String,
    pub license: String,
}

/// The crates linked into pause for `triple`, sorted by name (pause itself included).
pub fn linked_crates(sh: &Shell, triple: &str) -> Result<Vec<Crate>> {
    let text = cmd!(
        sh,
        "cargo metadata --locked --format-version 1 --filter-platform {triple}"
    )
    .quiet()
    .read()
    .context("running cargo metadata for the SBOM")?;
    let meta: Value = serde_json::from_str(&text)?;
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
    // Walk normal (non-dev, non-build) dependencies from pause.
    let mut seen = vec![root];
    let mut queue = vec![root];
    while let Some(id) = queue.pop() {
        let Some(node) = nodes.get(id) else { continue };
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null());
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

/// The SPDX document for one arch's binary.
pub fn document(
    p: &Platform,
    record: &BuildRecord,
    crates: &[Crate],
    created: &str,
    source: &str,
) -> Value {
    let version = &record.version;
    let spdx_id = |name: &str| {
        format!(
            "SPDXRef-Package-{}",
            name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "-")
        )
    };
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Package-pause-binary",
        "name": "pause",
        "versionInfo": version,
        "downloadLocation": source,
        "filesAnalyzed": false,
        "licenseConcluded": "Apache-2.0",
        "licenseDeclared": "Apache-2.0",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "APPLICATION",
        "checksums": [{ "algorithm": "SHA256", "checksumValue": record.sha256 }],
        "comment": format!("static binary for {} ({})", p.arch, p.triple),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Package-pause-binary",
    })];
    for krate in crates.iter().filter(|c| c.name != "pause") {
        let id = spdx_id(&format!("crate-{}-{}", krate.name, krate.version));
        packages.push(json!({
            "SPDXID": id,
            "name": krate.name,
            "versionInfo": krate.version,
            "downloadLocation": format!("https://crates.io/api/v1/crates/{}/{}/download", krate.name, krate.version),
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": krate.license,
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:cargo/{}@{}", krate.name, krate.version),
            }],
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Package-pause-binary",
            "relationshipType": "STATIC_LINK",
            "relatedSpdxElement": id,
        }));
    }
    for (idx, tool) in [&record.tools.rustc, &record.tools.linker]
        .into_iter()
        .enumerate()
    {
        let id = format!("SPDXRef-Tool-{idx}");
        packages.push(json!({
            "SPDXID": id,
            "name": tool.split_whitespace().next().unwrap_or("tool"),
            "versionInfo": tool,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "comment": format!(
                "built pause for target {} with builder {}, rustup toolchain {}",
                record.target, record.builder, record.tools.toolchain
            ),
        }));
        relationships.push(json!({
            "spdxElementId": id,
            "relationshipType": "BUILD_TOOL_OF",
            "relatedSpdxElement": "SPDXRef-Package-pause-binary",
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
