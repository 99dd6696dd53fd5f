//! bpf(2) as the task_file iterator and the tracer call it: `union bpf_attr`
//! written as bytes at the offsets of linux/bpf.h, and a program load that
//! explains a refusal with the verifier's last words.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

pub const PROG_LOAD: libc::c_long = 5;
const ATTR_SIZE: usize = 144;

/// A `union bpf_attr`, filled field by field at its byte offsets.
pub struct Attr([u8; ATTR_SIZE]);

impl Attr {
    pub fn new() -> Attr {
        Attr([0; ATTR_SIZE])
    }
    pub fn u32(mut self, at: usize, v: u32) -> Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u64(mut self, at: usize, v: u64) -> Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn bytes(mut self, at: usize, v: &[u8]) -> Attr {
        self.0[at..at + v.len()].copy_from_slice(v);
        self
    }
    /// A byte the kernel wrote back (a test run's return value).
    pub fn at(&self, at: usize) -> u8 {
        self.0[at]
    }
}

/// One bpf(2) call; its non-negative result.
pub fn call(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a bpf_attr-sized buffer; every pointer the callers
    // store in it (instructions, license, log, keys, values, names) outlives
    // this call.
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

/// A bpf(2) call that returns a new fd.
pub fn call_fd(cmd: libc::c_long, attr: &mut Attr) -> io::Result<OwnedFd> {
    let fd =
        i32::try_from(call(cmd, attr)?).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Load a program from `attr` (BPF_PROG_LOAD without a log). On failure,
/// load again with a verifier log of `log_size` bytes, only to explain the
/// refusal: its last line joins the error (the whole log on stderr with
/// `CWLEAK_BPF_LOG` set).
pub fn load(attr: impl Fn() -> Attr, log_size: usize) -> io::Result<OwnedFd> {
    call_fd(PROG_LOAD, &mut attr()).or_else(|first| {
        let mut log = vec![0u8; log_size];
        let mut logged = attr()
            .u32(24, 1)
            .u32(28, log.len() as u32)
            .u64(32, log.as_mut_ptr() as u64);
        match call_fd(PROG_LOAD, &mut logged) {
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
