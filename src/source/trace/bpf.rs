//! The bpf(2) calls tracing needs: maps (create, update, lookup), a raw
//! tracepoint program (load, attach by name: no tracefs, no kprobes). `union
//! bpf_attr` is written as bytes at the offsets of linux/bpf.h.

use crate::source::bpf_sys::{self, call as bpf, call_fd as bpf_fd, Attr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const MAP_CREATE: libc::c_long = 0;
const MAP_LOOKUP_ELEM: libc::c_long = 1;
const MAP_UPDATE_ELEM: libc::c_long = 2;
const RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

pub const MAP_HASH: u32 = 1;
pub const MAP_ARRAY: u32 = 2;
pub const MAP_RINGBUF: u32 = 27;

pub fn map_create(
    kind: u32,
    key: u32,
    value: u32,
    entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let name = &name.as_bytes()[..name.len().min(15)];
    let mut attr = Attr::new()
        .u32(0, kind)
        .u32(4, key)
        .u32(8, value)
        .u32(12, entries)
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

/// Load a raw tracepoint program. On failure the verifier's last words are
/// in the error.
pub fn load(insns: &[u64], name: &str) -> io::Result<OwnedFd> {
    let license = b"GPL\0";
    let name = &name.as_bytes()[..name.len().min(15)];
    let attr = || {
        Attr::new()
            .u32(0, PROG_TYPE_RAW_TRACEPOINT)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .bytes(48, name)
    };
    bpf_sys::load(attr, 1 << 20)
}

/// Attach to the raw tracepoint `tp`; detached when the fd is closed.
pub fn attach(prog: &OwnedFd, tp: &str) -> io::Result<OwnedFd> {
    let name = std::ffi::CString::new(tp).map_err(io::Error::other)?;
    let mut attr = Attr::new()
        .u64(0, name.as_ptr() as u64)
        .u32(8, prog.as_raw_fd() as u32);
    bpf_fd(RAW_TRACEPOINT_OPEN, &mut attr)
}
