//! The smallest BTF a program with a callback needs. A program of more than
//! one function must name each function's type (`func_info`) in a BTF the
//! kernel holds; ours declares two: the program (`int f(void *ctx)`) and a
//! callback of bpf_for_each_map_elem (`int f(void *map, void *key, void
//! *value, void *ctx)`). Also the run of a raw tracepoint program on demand
//! (BPF_PROG_TEST_RUN), which is how such a program is called here.

use crate::source::bpf_sys::{call as bpf, call_fd as bpf_fd, Attr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const BTF_LOAD: libc::c_long = 18;
const PROG_TEST_RUN: libc::c_long = 10;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;

/// The type ids of the two functions in `blob`.
pub const MAIN_FUNC: u32 = 4;
pub const CALLBACK_FUNC: u32 = 6;

/// The BTF blob: header, types, strings (linux/btf.h).
pub fn blob() -> Vec<u8> {
    let strings = b"\0int\0ctx\0cwleak_main\0map\0key\0value\0cwleak_cb\0";
    let name = |s: &[u8]| -> u32 {
        let at = strings
            .windows(s.len() + 1)
            .position(|w| &w[1..] == s && w[0] == 0)
            .unwrap_or(0);
        at as u32 + 1
    };
    let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
    let mut types: Vec<u32> = Vec::new();
    // 1: int, 4 bytes, signed, 32 bits.
    types.extend([name(b"int"), info(KIND_INT, 0), 4, (1 << 24) | 32]);
    // 2: void *
    types.extend([0, info(KIND_PTR, 0), 0]);
    // 3: int (void *ctx)
    types.extend([0, info(KIND_FUNC_PROTO, 1), 1, name(b"ctx"), 2]);
    // 4: the program, static.
    types.extend([name(b"cwleak_main"), info(KIND_FUNC, 0), 3]);
    // 5: int (void *map, void *key, void *value, void *ctx)
    types.extend([0, info(KIND_FUNC_PROTO, 4), 1]);
    for p in [&b"map"[..], b"key", b"value", b"ctx"] {
        types.extend([name(p), 2]);
    }
    // 6: the callback, static.
    types.extend([name(b"cwleak_cb"), info(KIND_FUNC, 0), 5]);
    let types: Vec<u8> = types.iter().flat_map(|t| t.to_ne_bytes()).collect();
    let mut out = Vec::with_capacity(24 + types.len() + strings.len());
    out.extend(0xeb9f_u16.to_ne_bytes());
    out.extend([1u8, 0]);
    let header = [
        24u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ];
    out.extend(header.iter().flat_map(|h| h.to_ne_bytes()));
    out.extend(&types);
    out.extend(strings);
    out
}

/// The blob, held by the kernel.
pub fn load_blob() -> io::Result<OwnedFd> {
    let b = blob();
    let mut attr = Attr::new()
        .u64(0, b.as_ptr() as u64)
        .u32(16, b.len() as u32);
    bpf_fd(BTF_LOAD, &mut attr)
}

/// Load a raw tracepoint program of two functions: the program at
/// instruction 0, a callback at `callback_at`.
pub fn load_with_callback(
    insns: &[u64],
    callback_at: u32,
    btf: &OwnedFd,
    name: &str,
) -> io::Result<OwnedFd> {
    let funcs: Vec<u8> = [0, MAIN_FUNC, callback_at, CALLBACK_FUNC]
        .iter()
        .flat_map(|v: &u32| v.to_ne_bytes())
        .collect();
    crate::source::trace::bpf::load_with_funcs(insns, name, Some((btf, &funcs)))
}

/// Run a raw tracepoint program once, now, on this CPU (its context: no
/// arguments); its return value.
pub fn run(prog: &OwnedFd) -> io::Result<u32> {
    let args = [0u64; 1];
    let mut attr = Attr::new()
        .u32(0, prog.as_raw_fd() as u32)
        .u32(40, 8)
        .u64(48, args.as_ptr() as u64);
    bpf(PROG_TEST_RUN, &mut attr)?;
    Ok(u32::from(attr.at(4))
        | u32::from(attr.at(5)) << 8
        | u32::from(attr.at(6)) << 16
        | u32::from(attr.at(7)) << 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blob_parses_as_btf_with_its_two_functions() {
        let b = blob();
        let btf = crate::parse::btf::Btf::parse(&b).unwrap();
        assert_eq!(btf.func_id("cwleak_main"), Some(MAIN_FUNC));
        assert_eq!(btf.func_id("cwleak_cb"), Some(CALLBACK_FUNC));
    }
}
