//! The three bpf(2) calls a BPF iterator needs: load the program, attach it
//! to its iterator (a link), and open an iterator instance to read.
//! `union bpf_attr` is written as bytes at the offsets of linux/bpf.h.

use crate::source::bpf_sys::{self, Attr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_ITER: u32 = 28;

/// Load a tracing program, named `name` (at most 15 bytes), for the iterator
/// whose BTF function id is `attach_btf_id`. On failure the verifier's last
/// words are in the error.
pub fn load(insns: &[u64], attach_btf_id: u32, name: &str) -> io::Result<OwnedFd> {
    let license = b"GPL\0";
    let attr = || {
        Attr::new()
            .u32(0, BPF_PROG_TYPE_TRACING)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .bytes(48, name.as_bytes())
            .u32(68, BPF_TRACE_ITER)
            .u32(108, attach_btf_id)
    };
    bpf_sys::load(attr, 1 << 20)
}

/// `load` and `link`, the failure said as a reader of a timing note or an
/// error needs it: the program and its link.
pub fn attach(insns: &[u64], attach_btf_id: u32, name: &str) -> Result<(OwnedFd, OwnedFd), String> {
    let prog = load(insns, attach_btf_id, name).map_err(|e| format!("loading the program: {e}"))?;
    let link = link(&prog).map_err(|e| format!("attaching the iterator: {e}"))?;
    Ok((prog, link))
}

/// Attach the program to its iterator.
pub fn link(prog: &OwnedFd) -> io::Result<OwnedFd> {
    let mut attr = Attr::new()
        .u32(0, prog.as_raw_fd() as u32)
        .u32(8, BPF_TRACE_ITER);
    bpf_sys::call_fd(BPF_LINK_CREATE, &mut attr)
}

/// Attach the program to its iterator for the tasks of one process only
/// (`bpf_iter_link_info.task.pid`, Linux 6.1+). An older kernel ignores
/// the filter: its passes report every task, which the caller must check.
pub fn link_process(prog: &OwnedFd, pid: u32) -> io::Result<OwnedFd> {
    // union bpf_iter_link_info: task { tid u32, pid u32, pid_fd u32 }, 16 bytes.
    let mut info = [0u8; 16];
    info[4..8].copy_from_slice(&pid.to_ne_bytes());
    let mut attr = Attr::new()
        .u32(0, prog.as_raw_fd() as u32)
        .u32(8, BPF_TRACE_ITER)
        .u64(16, info.as_ptr() as u64)
        .u32(24, info.len() as u32);
    bpf_sys::call_fd(BPF_LINK_CREATE, &mut attr)
}

/// A fresh pass of the iterator, read like a file.
pub fn iterate(link: &OwnedFd) -> io::Result<OwnedFd> {
    let mut attr = Attr::new().u32(0, link.as_raw_fd() as u32);
    bpf_sys::call_fd(BPF_ITER_CREATE, &mut attr)
}

/// An iterator's output read to its end, each whole record of `size` bytes
/// handed to `each` as it comes (a record may span two reads), without
/// holding the whole output. Output that ends inside a record is an error.
pub fn records(from: impl io::Read, size: usize, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    stream(from, size, |out| {
        let whole = out.len() - out.len() % size;
        out[..whole].chunks_exact(size).for_each(&mut each);
        whole
    })
}

/// An iterator's output read to its end through a buffer that holds at
/// least `longest` bytes: `take` gets what is unread so far and says how
/// many bytes it used (whole items only; the rest waits for the next read).
/// Output that ends with bytes unused is an error.
pub fn stream(
    mut from: impl io::Read,
    longest: usize,
    mut take: impl FnMut(&[u8]) -> usize,
) -> io::Result<()> {
    let mut buf = vec![0u8; (1 << 16) / longest * longest + longest];
    let mut held = 0;
    loop {
        let n = match from.read(&mut buf[held..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let end = held + n;
        let used = take(&buf[..end]);
        buf.copy_within(used..end, 0);
        held = end - used;
    }
    if held != 0 {
        return Err(io::Error::other("output ends inside a record"));
    }
    Ok(())
}
