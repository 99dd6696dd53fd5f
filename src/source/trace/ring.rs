//! The consumer side of a BPF ring buffer (`BPF_MAP_TYPE_RINGBUF`): the
//! consumer position page is mapped writable, the producer page and the data
//! (mapped twice in a row by the kernel, so a record never wraps) read-only.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HDR: usize = 8;

pub struct Ring {
    _map: OwnedFd,
    cons: *mut u8,
    prod: *mut u8,
    page: usize,
    size: usize,
}

// SAFETY: the mappings are owned by the Ring and only read through atomics
// and bounds-checked slices; one consumer (the Ring's owner) at a time.
unsafe impl Send for Ring {}

fn map(fd: i32, len: usize, prot: i32, off: usize) -> io::Result<*mut u8> {
    // SAFETY: mapping a ring buffer map fd as the kernel documents it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd,
            off as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl Ring {
    /// `size`: the map's max_entries (a power of two, in pages).
    pub fn new(map_fd: OwnedFd, size: usize) -> io::Result<Ring> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(io::Error::other)?;
        let fd = map_fd.as_raw_fd();
        let cons = map(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let prod = match map(fd, page + 2 * size, libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: unmapping what was just mapped.
                unsafe { libc::munmap(cons.cast(), page) };
                return Err(e);
            }
        };
        Ok(Ring {
            _map: map_fd,
            cons,
            prod,
            page,
            size,
        })
    }

    fn pos(p: *mut u8) -> &'static AtomicU64 {
        // SAFETY: both position words are page-aligned u64s inside live mappings.
        unsafe { &*p.cast::<AtomicU64>() }
    }

    /// Hand every committed record to `each`; returns how many.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> usize {
        let cons = Self::pos(self.cons);
        let prod = Self::pos(self.prod);
        let mut at = cons.load(Ordering::Acquire);
        let end = prod.load(Ordering::Acquire);
        let mut n = 0;
        while at < end {
            let off = (at as usize) & (self.size - 1);
            // SAFETY: the data area is 2 * size bytes after the producer
            // page; off < size, and a record (at most size bytes) starting
            // there ends inside it.
            let data = unsafe { self.prod.add(self.page) };
            let hdr = unsafe { &*data.add(off).cast::<std::sync::atomic::AtomicU32>() };
            let len = hdr.load(Ordering::Acquire);
            if len & BUSY != 0 {
                break;
            }
            let body = (len & !(BUSY | DISCARD)) as usize;
            if len & DISCARD == 0 && body <= self.size {
                // SAFETY: as above.
                let rec = unsafe { std::slice::from_raw_parts(data.add(off + HDR), body) };
                each(rec);
                n += 1;
            }
            at += ((HDR + body + 7) & !7) as u64;
            cons.store(at, Ordering::Release);
        }
        n
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mappings made in `new`.
        unsafe {
            libc::munmap(self.cons.cast(), self.page);
            libc::munmap(self.prod.cast(), self.page + 2 * self.size);
        }
    }
}
