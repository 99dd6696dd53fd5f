//! The kernel's BTF (5.5 MB), mapped rather than copied: reading it cost
//! 7-9 ms, mapping it under 1 ms (kernels that cannot map it are read).
//! The BPF iterators build their programs from it.

use crate::parse::btf::Btf;
use crate::parse::ParseResult;
use std::io::Read;

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// `build` run on the running kernel's parsed BTF, which is unmapped after.
pub fn with_kernel_btf<T>(build: impl FnOnce(&Btf) -> ParseResult<T>) -> Result<T, String> {
    let blob = Blob::open(BTF_PATH).map_err(|e| format!("{BTF_PATH}: {e}"))?;
    let btf = Btf::parse(blob.bytes()).map_err(|e| format!("{BTF_PATH}: {e}"))?;
    build(&btf)
}

/// A file's bytes, mapped or read.
pub enum Blob {
    Mapped(*const u8, usize),
    Read(Vec<u8>),
}

impl Blob {
    pub fn open(path: &str) -> std::io::Result<Blob> {
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).unwrap_or(0);
        if len > 0 {
            // SAFETY: a fresh read-only private mapping of a file we opened;
            // the result is checked before use and unmapped in Drop.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                return Ok(Blob::Mapped(p.cast(), len));
            }
        }
        let mut v = Vec::with_capacity(len);
        (&file).read_to_end(&mut v)?;
        Ok(Blob::Read(v))
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: the mapping is `len` readable bytes until Drop.
            Blob::Mapped(p, len) => unsafe { std::slice::from_raw_parts(*p, *len) },
            Blob::Read(v) => v,
        }
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        if let Blob::Mapped(p, len) = self {
            // SAFETY: unmapping exactly the mapping made in `open`.
            unsafe { libc::munmap(p.cast_mut().cast(), *len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_and_read_files_give_their_bytes() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"some bytes").unwrap();
        let b = Blob::open(f.path().to_str().unwrap()).unwrap();
        assert!(matches!(b, Blob::Mapped(..)));
        assert_eq!(b.bytes(), b"some bytes");
        // A proc file has no size: it is read.
        let b = Blob::open("/proc/self/stat").unwrap();
        assert!(matches!(b, Blob::Read(_)));
        assert!(b
            .bytes()
            .starts_with(std::process::id().to_string().as_bytes()));
        assert!(Blob::open("/nonexistent/btf").is_err());
    }
}
