//! Is this file a whole shared object? dlopen of a truncated `.so` kills the process with
//! SIGBUS, so the loader checks the structure first: an ELF header, and every program
//! header, loadable segment and the section table inside the file.

use object::elf::{FileHeader64, PT_LOAD, SHF_ALLOC};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::{Endianness, ReadRef};
use spud_plugin_api::ffi::NAME_SECTION;

/// Why a file is not a loadable shared object.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ElfError {
    #[error("not an ELF file")]
    NotElf,
    #[error("not a 64-bit ELF shared object")]
    WrongKind,
    #[error("incomplete: {0} (the file is {1} bytes; is it still being written?)")]
    Truncated(String, u64),
}

/// Checks that `data` (bytes in memory, or a file read through `object::ReadCache`) is a
/// complete 64-bit ELF shared object.
pub fn check<'data, R: ReadRef<'data>>(data: R) -> Result<(), ElfError> {
    let len = data.len().map_err(|_| ElfError::NotElf)?;
    if data.read_bytes_at(0, 4) != Ok(&b"\x7fELF"[..]) {
        return Err(ElfError::NotElf);
    }
    let truncated = |what: &str| ElfError::Truncated(what.to_string(), len);
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
        if end > len {
            return Err(truncated(&format!("a loadable segment ends at byte {end}")));
        }
    }
    header
        .sections(endian, data)
        .map_err(|_| truncated("section table past the end"))?;
    Ok(())
}

/// The name a plugin declares in its file (plugin-api 0.1.6 and later), read without
/// mapping it; None for an older plugin, or a file that is not one.
pub fn declared_name<'data, R: ReadRef<'data>>(data: R) -> Option<String> {
    let header = FileHeader64::<Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    let (_, section) = sections.section_by_name(endian, NAME_SECTION.as_bytes())?;
    let bytes = section.data(endian, data).ok()?;
    let name = std::str::from_utf8(bytes.strip_suffix(b"\0")?).ok()?;
    spud_plugin_api::is_valid_key(name).then(|| name.to_string())
}

/// The byte ranges of debugging information (`.debug_*` sections, never mapped): a copy
/// of the file needs none of it to run.
pub fn debug_ranges<'data, R: ReadRef<'data>>(data: R) -> Vec<std::ops::Range<u64>> {
    let Ok(header) = FileHeader64::<Endianness>::parse(data) else {
        return Vec::new();
    };
    let Ok(endian) = header.endian() else {
        return Vec::new();
    };
    let Ok(sections) = header.sections(endian, data) else {
        return Vec::new();
    };
    sections
        .iter()
        .filter(|s| s.sh_flags(endian) & u64::from(SHF_ALLOC) == 0)
        .filter(|s| {
            sections
                .section_name(endian, s)
                .is_ok_and(|name| name.starts_with(b".debug_"))
        })
        .filter_map(|s| {
            let (offset, size) = s.file_range(endian)?;
            Some(offset..offset + size)
        })
        .collect()
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
        assert_eq!(check(&data[..]), Ok(()));
        for cut in [data.len() / 4, data.len() / 2, data.len() - 1] {
            assert!(
                matches!(check(&data[..cut]), Err(ElfError::Truncated(..))),
                "cut at {cut}"
            );
        }
        assert_eq!(check(&data[..10]), Err(ElfError::WrongKind));
        assert_eq!(check(&b"garbage, not a library"[..]), Err(ElfError::NotElf));
        assert_eq!(declared_name(&data[..]), None, "libc declares no plugin");
    }

    #[test]
    fn debug_ranges_are_the_debug_sections_of_a_file_built_with_them() {
        // This test binary is built with debug information.
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let ranges = debug_ranges(&exe[..]);
        assert!(!ranges.is_empty());
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        assert!(total > exe.len() as u64 / 4, "{total} of {}", exe.len());
        assert!(ranges.iter().all(|r| r.end <= exe.len() as u64));
        assert!(debug_ranges(&b"not elf"[..]).is_empty());
    }
}
