//! The bpf(2) calls tracing needs: maps (create, update, lookup), a raw
//! tracepoint program (load, attach by name: no tracefs, no kprobes). `union
//! bpf_attr` is written as bytes at the offsets of linux/bpf.h.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const MAP_CREATE: libc::c_long = 0;
const MAP_LOOKUP_ELEM: libc::c_long = 1;
const MAP_UPDATE_ELEM: libc::c_long = 2;
const PROG_LOAD: libc::c_long = 5;
const RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const ATTR_SIZE: usize = 144;

pub const MAP_HASH: u32 = 1;
pub const MAP_ARRAY: u32 = 2;
pub const MAP_RINGBUF: u32 = 27;

struct Attr([u8; ATTR_SIZE]);

impl Attr {
    fn new() -> Attr {
        Attr([0; ATTR_SIZE])
    }
    fn u32(mut self, at: usize, v: u32) -> Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, at: usize, v: u64) -> Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn bytes(mut self, at: usize, v: &[u8]) -> Attr {
        self.0[at..at + v.len()].copy_from_slice(v);
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a bpf_attr-sized buffer; every pointer stored in it
    // (instructions, license, log, keys, values, names) outlives this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            ATTR_SIZE as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

fn bpf_fd(cmd: libc::c_long, attr: &mut Attr) -> io::Result<OwnedFd> {
    let fd = i32::try_from(bpf(cmd, attr)?).map_err(|_| io::Error::other("bad fd"))?;
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

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
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = Attr::new()
            .u32(0, PROG_TYPE_RAW_TRACEPOINT)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .bytes(48, name);
        if let Some(log) = log {
            attr = attr
                .u32(24, 1)
                .u32(28, log.len() as u32)
                .u64(32, log.as_mut_ptr() as u64);
        }
        bpf_fd(PROG_LOAD, &mut attr)
    };
    attempt(None).or_else(|first| {
        let mut log = vec![0u8; 1 << 20];
        match attempt(Some(&mut log)) {
            Ok(fd) => Ok(fd),
            Err(_) => {
                let text = String::from_utf8_lossy(&log);
                let text = text.trim_end_matches('\0');
                if std::env::var_os("CWLEAK_BPF_LOG").is_some() {
                    crate::diag!("{text}");
                }
                let last = text.lines().rev().find(|l| !l.trim().is_empty());
                Err(match last {
                    Some(line) => io::Error::new(first.kind(), format!("{first}: {line}")),
                    None => first,
                })
            }
        }
    })
}

/// Attach to the raw tracepoint `tp`; detached when the fd is closed.
pub fn attach(prog: &OwnedFd, tp: &str) -> io::Result<OwnedFd> {
    let name = std::ffi::CString::new(tp).map_err(io::Error::other)?;
    let mut attr = Attr::new()
        .u64(0, name.as_ptr() as u64)
        .u32(8, prog.as_raw_fd() as u32);
    bpf_fd(RAW_TRACEPOINT_OPEN, &mut attr)
}
