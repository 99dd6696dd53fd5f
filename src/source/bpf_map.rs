//! The bpf(2) map calls the tracer and the TCP state follower make: create,
//! update, look up. `union bpf_attr` is written as bytes at the offsets of
//! linux/bpf.h.

use crate::source::bpf_sys::{call as bpf, call_fd as bpf_fd, Attr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const MAP_CREATE: libc::c_long = 0;
const MAP_LOOKUP_ELEM: libc::c_long = 1;
const MAP_UPDATE_ELEM: libc::c_long = 2;

pub const MAP_HASH: u32 = 1;
pub const MAP_ARRAY: u32 = 2;
pub const MAP_RINGBUF: u32 = 27;
/// Hash map elements allocated as they are added, not all at creation.
pub const NO_PREALLOC: u32 = 1;

pub fn map_create(
    kind: u32,
    key: u32,
    value: u32,
    entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    map_create_flags(kind, key, value, entries, 0, name)
}

pub fn map_create_flags(
    kind: u32,
    key: u32,
    value: u32,
    entries: u32,
    flags: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let name = &name.as_bytes()[..name.len().min(15)];
    let mut attr = Attr::new()
        .u32(0, kind)
        .u32(4, key)
        .u32(8, value)
        .u32(12, entries)
        .u32(16, flags)
        .bytes(28, name);
    bpf_fd(MAP_CREATE, &mut attr)
}

pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, key.as_ptr() as u64)
        .u64(16, value.as_ptr() as u64);
    bpf(MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

pub fn map_lookup(map: &OwnedFd, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    let mut attr = Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, key.as_ptr() as u64)
        .u64(16, value.as_mut_ptr() as u64);
    bpf(MAP_LOOKUP_ELEM, &mut attr).map(|_| ())
}

const MAP_GET_NEXT_KEY: libc::c_long = 4;
const MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Every key of a map with `KEY`-byte keys (one call each: for small maps).
pub fn keys<const KEY: usize>(map: &OwnedFd) -> io::Result<Vec<[u8; KEY]>> {
    let mut out: Vec<[u8; KEY]> = Vec::new();
    loop {
        let mut next = [0u8; KEY];
        let mut attr = Attr::new()
            .u32(0, map.as_raw_fd() as u32)
            .u64(8, out.last().map_or(0, |k| k.as_ptr() as u64))
            .u64(16, next.as_mut_ptr() as u64);
        match bpf(MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => out.push(next),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// The first `n` values of an array map of `size`-byte values, handed to
/// `each` in order, `CHUNK` per call.
pub fn array_values(
    map: &OwnedFd,
    size: usize,
    n: u32,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    const CHUNK: u32 = 2048;
    let mut keys = vec![0u32; CHUNK as usize];
    let mut values = vec![0u8; CHUNK as usize * size];
    let mut token = 0u32;
    let mut done = 0u32;
    while done < n {
        let want = CHUNK.min(n - done);
        let mut attr = Attr::new()
            .u64(
                0,
                if done == 0 {
                    0
                } else {
                    &token as *const u32 as u64
                },
            )
            .u64(8, &mut token as *mut u32 as u64)
            .u64(16, keys.as_mut_ptr() as u64)
            .u64(24, values.as_mut_ptr() as u64)
            .u32(32, want)
            .u32(36, map.as_raw_fd() as u32);
        let r = bpf(MAP_LOOKUP_BATCH, &mut attr);
        let got = u32::from_ne_bytes([attr.at(32), attr.at(33), attr.at(34), attr.at(35)]);
        let got = got.min(want);
        values[..got as usize * size]
            .chunks_exact(size)
            .for_each(&mut each);
        done += got;
        match r {
            Ok(_) if got > 0 => {}
            Ok(_) => return Err(io::Error::other("an empty batch")),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return if done >= n {
                    Ok(())
                } else {
                    Err(io::Error::other("the array ended early"))
                };
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
