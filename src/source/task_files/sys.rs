//! The three bpf(2) calls an iterator needs: load the program, attach it to
//! the task_file iterator (a link), and open an iterator instance to read.
//! `union bpf_attr` is written as bytes at the offsets of linux/bpf.h.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_ITER: u32 = 28;
const ATTR_SIZE: usize = 144;

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

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<OwnedFd> {
    // SAFETY: attr is a bpf_attr-sized buffer; every pointer stored in it
    // (instructions, license, log) outlives this call.
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
    let fd = i32::try_from(r).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Load a tracing program for the iterator whose BTF function id is
/// `attach_btf_id`. On failure the verifier's last words are in the error.
pub fn load(insns: &[u64], attach_btf_id: u32) -> io::Result<OwnedFd> {
    let license = b"GPL\0";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = Attr::new()
            .u32(0, BPF_PROG_TYPE_TRACING)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .bytes(48, b"cwleak_fds")
            .u32(68, BPF_TRACE_ITER)
            .u32(108, attach_btf_id);
        if let Some(log) = log {
            attr = attr
                .u32(24, 1)
                .u32(28, log.len() as u32)
                .u64(32, log.as_mut_ptr() as u64);
        }
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    attempt(None).or_else(|first| {
        // Load again with the verifier's log, only to explain the refusal.
        let mut log = vec![0u8; 1 << 16];
        match attempt(Some(&mut log)) {
            Ok(fd) => Ok(fd),
            Err(_) => {
                let text = String::from_utf8_lossy(&log);
                let text = text.trim_end_matches('\0');
                let last = text.lines().rev().find(|l| !l.trim().is_empty());
                Err(match last {
                    Some(line) => io::Error::new(first.kind(), format!("{first}: {line}")),
                    None => first,
                })
            }
        }
    })
}

/// Attach the program to its iterator.
pub fn link(prog: &OwnedFd) -> io::Result<OwnedFd> {
    let mut attr = Attr::new()
        .u32(0, prog.as_raw_fd() as u32)
        .u32(8, BPF_TRACE_ITER);
    bpf(BPF_LINK_CREATE, &mut attr)
}

/// A fresh pass of the iterator, read like a file.
pub fn iterate(link: &OwnedFd) -> io::Result<OwnedFd> {
    let mut attr = Attr::new().u32(0, link.as_raw_fd() as u32);
    bpf(BPF_ITER_CREATE, &mut attr)
}
