//! Is this file a whole shared object? dlopen of a truncated `.so` kills the process with
//! SIGBUS, so the loader checks the structure first: an ELF header, and every program
//! header, loadable segment and the section table inside the file.

use object::elf::{FileHeader64, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;

/// Why a file is not a loadable shared object.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ElfError {
    #[error("not an ELF file")]
    NotElf,
    #[error("not a 64-bit ELF shared object")]
    WrongKind,
    #[error("incomplete: {0} (the file is {1} bytes; is it still being written?)")]
    Truncated(String, usize),
}

/// Checks that `data` is a complete 64-bit ELF shared object.
pub fn check(data: &[u8]) -> Result<(), ElfError> {
    if !data.starts_with(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    let truncated = |what: &str| ElfError::Truncated(what.to_string(), data.len());
    let header = FileHeader64::<Endianness>::parse(data).map_err(|_| ElfError::WrongKind)?;
    let endian = header.endian().map_err(|_| ElfError::WrongKind)?;
    if header.e_type(endian) != object::elf::ET_DYN {
        return Err(ElfError::WrongKind);
    }
    let segments = header
        .program_headers(endian, data)
        .map_err(|_| truncated("program headers past the end"))?;
    for segment in segments {
        if segment.p_type(endian) != PT_LOAD {
            continue;
        }
        let end = segment
            .p_offset(endian)
            .saturating_add(segment.p_filesz(endian));
        if end > data.len() as u64 {
            return Err(truncated(&format!("a loadable segment ends at byte {end}")));
        }
    }
    header
        .sections(endian, data)
        .map_err(|_| truncated("section table past the end"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary's own dependencies include shared objects; libc is always there.
    fn some_shared_object() -> Vec<u8> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let path = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("libc.so") || p.contains("libc-"))
            .expect("libc is mapped");
        std::fs::read(path).unwrap()
    }

    #[test]
    fn whole_shared_objects_pass_and_cut_ones_do_not() {
        let data = some_shared_object();
        assert_eq!(check(&data), Ok(()));
        for cut in [data.len() / 4, data.len() / 2, data.len() - 1] {
            assert!(
                matches!(check(&data[..cut]), Err(ElfError::Truncated(..))),
                "cut at {cut}"
            );
        }
        assert_eq!(check(&data[..10]), Err(ElfError::WrongKind));
        assert_eq!(check(b"garbage, not a library"), Err(ElfError::NotElf));
    }
}
