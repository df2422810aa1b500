//! Proof that a dist binary is what its platform row says: the ELF machine, and
//! static (no PT_INTERP, so it runs in a `FROM scratch` image).

use crate::platform::Platform;
use anyhow::{bail, Context, Result};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{elf, FileKind};
use std::path::Path;

/// The ELF facts we check.
#[derive(Debug, PartialEq)]
pub struct ElfFacts {
    pub machine: u16,
    pub has_interpreter: bool,
}

pub fn read_facts(bytes: &[u8]) -> Result<ElfFacts> {
    match FileKind::parse(bytes).context("not an object file")? {
        FileKind::Elf32 => facts::<elf::FileHeader32<object::Endianness>>(bytes),
        FileKind::Elf64 => facts::<elf::FileHeader64<object::Endianness>>(bytes),
        other => bail!("not an ELF file ({other:?})"),
    }
}

fn facts<H: FileHeader<Endian = object::Endianness>>(bytes: &[u8]) -> Result<ElfFacts> {
    let header = H::parse(bytes).context("parsing the ELF header")?;
    let endian = header.endian().context("reading ELF endianness")?;
    let segments = header
        .program_headers(endian, bytes)
        .context("reading ELF program headers")?;
    Ok(ElfFacts {
        machine: header.e_machine(endian),
        has_interpreter: segments
            .iter()
            .any(|segment| segment.p_type(endian) == elf::PT_INTERP),
    })
}

/// Fails unless `path` is a static ELF for `p`'s machine.
pub fn check_static(path: &Path, p: &Platform) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    check_bytes(&bytes, p).with_context(|| format!("checking {}", path.display()))
}

pub fn check_bytes(bytes: &[u8], p: &Platform) -> Result<()> {
    let facts = read_facts(bytes)?;
    if facts.machine != p.elf_machine {
        bail!(
            "ELF machine is {} but {} needs {} ({}); the build used the wrong target",
            facts.machine,
            p.arch,
            p.elf_machine,
            p.elf_machine_name
        );
    }
    if facts.has_interpreter {
        bail!("binary for {} is dynamically linked (has PT_INTERP); it must be static for a scratch image", p.arch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::PLATFORMS;

    #[test]
    fn the_host_test_binary_is_elf_for_its_machine_and_dynamic() {
        // This test executable itself: glibc, so it has an interpreter.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let facts = read_facts(&me).unwrap();
        assert!(facts.has_interpreter);
        let host = crate::platform::host().unwrap();
        assert_eq!(facts.machine, host.elf_machine);
        let err = check_bytes(&me, host).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
        let other = PLATFORMS
            .iter()
            .find(|p| p.elf_machine != host.elf_machine)
            .unwrap();
        let err = check_bytes(&me, other).unwrap_err().to_string();
        assert!(err.contains("ELF machine is"), "{err}");
    }

    #[test]
    fn non_elf_is_refused() {
        assert!(read_facts(b"#!/bin/sh\necho hi\n").is_err());
    }
}
