//! The platform table: the one place that names each architecture we build.
//!
//! Every other part (build, verify, image, CI matrix) looks rows up here. Names are
//! never derived from each other by string edits: a row states each one as a fact.
//! OCI names follow the image-index spec (GOARCH/GOARM values).

use anyhow::{bail, Result};
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Platform {
    /// Our name for it: the `--arch` value and the per-arch tag suffix.
    pub arch: &'static str,
    /// The OCI `os`, `architecture` and `variant` of the image entry.
    pub oci_os: &'static str,
    pub oci_arch: &'static str,
    pub oci_variant: Option<&'static str>,
    /// The Rust target; musl everywhere, so binaries are static.
    pub triple: &'static str,
    /// zig's name for the target and the CPU it must assume (what cargo-zigbuild uses),
    /// for the linker shim that both builders share.
    pub zig_target: &'static str,
    pub zig_cpu: Option<&'static str>,
    /// The qemu-user binary that runs it on any host.
    pub qemu: &'static str,
    /// ELF `e_machine` and its name, to prove a binary is what it claims.
    pub elf_machine: u16,
    pub elf_machine_name: &'static str,
    /// The file under `target/dist/` (upstream's `pause-linux-<arch>` naming).
    pub dist_name: &'static str,
    /// Required platforms are what clusters run; the others are wanted.
    pub required: bool,
    /// `std::env::consts::ARCH` of a host that runs the native checks (runc, bench)
    /// on this row's binary; `None` where we do not run them natively.
    pub native_host: Option<&'static str>,
}

pub const PLATFORMS: &[Platform] = &[
    Platform {
        arch: "amd64",
        oci_os: "linux",
        oci_arch: "amd64",
        oci_variant: None,
        triple: "x86_64-unknown-linux-musl",
        zig_target: "x86_64-linux-musl",
        zig_cpu: None,
        qemu: "qemu-x86_64-static",
        elf_machine: object::elf::EM_X86_64,
        elf_machine_name: "x86-64",
        dist_name: "pause-linux-amd64",
        required: true,
        native_host: Some("x86_64"),
    },
    Platform {
        arch: "arm64",
        oci_os: "linux",
        oci_arch: "arm64",
        oci_variant: Some("v8"),
        triple: "aarch64-unknown-linux-musl",
        zig_target: "aarch64-linux-musl",
        zig_cpu: None,
        qemu: "qemu-aarch64-static",
        elf_machine: object::elf::EM_AARCH64,
        elf_machine_name: "AArch64",
        dist_name: "pause-linux-arm64",
        required: true,
        native_host: Some("aarch64"),
    },
    Platform {
        arch: "ppc64le",
        oci_os: "linux",
        oci_arch: "ppc64le",
        oci_variant: None,
        triple: "powerpc64le-unknown-linux-musl",
        zig_target: "powerpc64le-linux-musl",
        zig_cpu: None,
        qemu: "qemu-ppc64le-static",
        elf_machine: object::elf::EM_PPC64,
        elf_machine_name: "PowerPC64",
        dist_name: "pause-linux-ppc64le",
        required: true,
        native_host: None,
    },
    Platform {
        arch: "s390x",
        oci_os: "linux",
        oci_arch: "s390x",
        oci_variant: None,
        triple: "s390x-unknown-linux-musl",
        zig_target: "s390x-linux-musl",
        zig_cpu: Some("z10-vector"),
        qemu: "qemu-s390x-static",
        elf_machine: object::elf::EM_S390,
        elf_machine_name: "S/390",
        dist_name: "pause-linux-s390x",
        required: true,
        native_host: None,
    },
    Platform {
        arch: "arm",
        oci_os: "linux",
        oci_arch: "arm",
        oci_variant: Some("v7"),
        triple: "armv7-unknown-linux-musleabihf",
        zig_target: "arm-linux-musleabihf",
        zig_cpu: Some("generic+v7a+vfp3-d32+thumb2-neon"),
        qemu: "qemu-arm-static",
        elf_machine: object::elf::EM_ARM,
        elf_machine_name: "ARM",
        dist_name: "pause-linux-arm",
        required: false,
        native_host: None,
    },
    Platform {
        arch: "riscv64",
        oci_os: "linux",
        oci_arch: "riscv64",
        oci_variant: None,
        triple: "riscv64gc-unknown-linux-musl",
        zig_target: "riscv64-linux-musl",
        zig_cpu: Some("generic_rv64+m+a+f+d+c"),
        qemu: "qemu-riscv64-static",
        elf_machine: object::elf::EM_RISCV,
        elf_machine_name: "RISC-V",
        dist_name: "pause-linux-riscv64",
        required: false,
        native_host: None,
    },
];

/// The row of the machine we run on: what runs natively (bench, runc).
pub fn host() -> Result<&'static Platform> {
    let host = std::env::consts::ARCH;
    match PLATFORMS.iter().find(|p| p.native_host == Some(host)) {
        Some(p) => Ok(p),
        None => {
            let hosts: Vec<&str> = PLATFORMS.iter().filter_map(|p| p.native_host).collect();
            bail!(
                "{host} hosts cannot run the native checks; use a machine of: {}",
                hosts.join(", ")
            )
        }
    }
}

/// The row called `arch` (our name: `--arch`, the tag suffix).
pub fn by_arch(arch: &str) -> Option<&'static Platform> {
    PLATFORMS.iter().find(|p| p.arch == arch)
}

/// The row of an image index entry's `os`, `architecture` and `variant`.
pub fn by_oci(os: &str, arch: &str, variant: Option<&str>) -> Option<&'static Platform> {
    PLATFORMS
        .iter()
        .find(|p| p.oci_os == os && p.oci_arch == arch && p.oci_variant == variant)
}

/// The arch whose clean build the suite repeats, to prove that the bytes depend on
/// neither the builder (cross, in ci) nor the directory (reproduce, in e2e): foreign,
/// big-endian, and its cold std build is the table's quickest.
pub fn probe() -> &'static Platform {
    by_arch("s390x").expect("s390x is a table row")
}

/// Parses `--arch`: `all`, or a comma-separated list of table names, in table order.
pub fn select(spec: &str) -> Result<Vec<&'static Platform>> {
    if spec.trim() == "all" {
        return Ok(PLATFORMS.iter().collect());
    }
    let mut wanted = Vec::new();
    for name in spec.split(',').map(str::trim) {
        match by_arch(name) {
            Some(p) => wanted.push(p.arch),
            None => bail!("unknown architecture {name:?}; known: {}, or all", known()),
        }
    }
    Ok(PLATFORMS
        .iter()
        .filter(|p| wanted.contains(&p.arch))
        .collect())
}

pub fn known() -> String {
    PLATFORMS
        .iter()
        .map(|p| p.arch)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_unique_in_every_column() {
        let columns: [fn(&Platform) -> &str; 5] = [
            |p| p.arch,
            |p| p.triple,
            |p| p.qemu,
            |p| p.dist_name,
            |p| p.elf_machine_name,
        ];
        for column in columns {
            let mut values: Vec<_> = PLATFORMS.iter().map(column).collect();
            values.sort();
            values.dedup();
            assert_eq!(values.len(), PLATFORMS.len());
        }
    }

    #[test]
    fn the_required_four_are_there() {
        let required: Vec<_> = PLATFORMS
            .iter()
            .filter(|p| p.required)
            .map(|p| p.arch)
            .collect();
        assert_eq!(required, ["amd64", "arm64", "ppc64le", "s390x"]);
    }

    #[test]
    fn select_keeps_table_order_and_rejects_unknown_names() {
        let picked: Vec<_> = select("s390x, amd64")
            .unwrap()
            .iter()
            .map(|p| p.arch)
            .collect();
        assert_eq!(picked, ["amd64", "s390x"]);
        assert_eq!(select("all").unwrap().len(), PLATFORMS.len());
        let err = select("amd64,mips").unwrap_err().to_string();
        assert!(
            err.contains("unknown architecture \"mips\"") && err.contains("ppc64le"),
            "{err}"
        );
    }
}
