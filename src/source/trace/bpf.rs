//! The bpf(2) calls tracing needs beside the maps (`bpf_map`): a raw
//! tracepoint program (load, attach by name: no tracefs, no kprobes). `union
//! bpf_attr` is written as bytes at the offsets of linux/bpf.h.

use crate::source::bpf_sys::{self, call_fd as bpf_fd, Attr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

pub use crate::source::bpf_map::{
    map_create, map_lookup, map_update, MAP_ARRAY, MAP_HASH, MAP_RINGBUF,
};

/// Load a raw tracepoint program. On failure the verifier's last words are
/// in the error.
pub fn load(insns: &[u64], name: &str) -> io::Result<OwnedFd> {
    load_with_funcs(insns, name, None)
}

/// Load a raw tracepoint program of several functions: `funcs` is the BTF
/// that declares their types and their func_info records (8 bytes each:
/// the function's first instruction, its type id).
pub fn load_with_funcs(
    insns: &[u64],
    name: &str,
    funcs: Option<(&OwnedFd, &[u8])>,
) -> io::Result<OwnedFd> {
    let license = b"GPL\0";
    let name = &name.as_bytes()[..name.len().min(15)];
    let attr = || {
        let attr = Attr::new()
            .u32(0, PROG_TYPE_RAW_TRACEPOINT)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .bytes(48, name);
        match funcs {
            Some((btf, info)) => attr
                .u32(72, btf.as_raw_fd() as u32)
                .u32(76, 8)
                .u64(80, info.as_ptr() as u64)
                .u32(88, (info.len() / 8) as u32),
            None => attr,
        }
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
