//! From a record's registers and copied stack to return addresses, with the
//! binaries' own unwind tables (`.eh_frame`, as `perf --call-graph dwarf`
//! does), through framehop: this gets through a libc and programs built
//! without frame pointers, where a frame-pointer walk stops or skips the
//! caller of the syscall wrapper. Each address is placed in its file (from
//! `/proc/PID/maps`, read when the process is first seen), so symbolizing
//! can happen after the process is gone.

use crate::model::{FastMap, Pid};
use crate::trace::RawFrame;
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use object::{Object, ObjectSection, ObjectSegment};
use std::ops::Range;
use std::sync::Arc;

const MAX_FRAMES: usize = 32;

type Data = Arc<[u8]>;

/// What unwinding needs from one ELF file.
struct Sections {
    eh_frame: Option<(Range<u64>, Data)>,
    eh_frame_hdr: Option<(Range<u64>, Data)>,
    text: Option<Range<u64>>,
    got: Option<Range<u64>>,
    /// PT_LOAD segments: (vaddr, file offset, file size).
    segments: Vec<(u64, u64, u64)>,
}

#[derive(Clone)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: Arc<str>,
}

/// One address space: a process after its last exec (forks share it).
struct Space {
    unwinder: UnwinderX86_64<Data>,
    maps: Vec<Mapping>,
}

#[derive(Default)]
pub struct Unwinding {
    spaces: FastMap<Pid, Arc<Space>>,
    files: FastMap<Arc<str>, Option<Arc<Sections>>>,
    cache: Option<Box<CacheX86_64>>,
    pub truncated: u64,
}

fn read_sections(path: &str) -> Option<Sections> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: a read-only private mapping of a binary; if it is changed
    // while mapped we may read wrong unwind data, never unsafe memory
    // (object checks every offset).
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let elf = object::File::parse(&*map).ok()?;
    let section = |name: &str| {
        let s = elf.section_by_name(name)?;
        let range = s.address()..s.address() + s.size();
        Some((range, s.data().ok()?))
    };
    let owned = |name: &str| section(name).map(|(r, d)| (r, Data::from(d)));
    Some(Sections {
        eh_frame: owned(".eh_frame"),
        eh_frame_hdr: owned(".eh_frame_hdr"),
        text: section(".text").map(|(r, _)| r),
        got: section(".got").map(|(r, _)| r),
        segments: elf
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (s.address(), off, size)
            })
            .collect(),
    })
}

/// `/proc/PID/maps`: executable file mappings.
fn read_maps(pid: Pid) -> Vec<Mapping> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    text.lines().filter_map(parse_map_line).collect()
}

fn parse_map_line(line: &str) -> Option<Mapping> {
    let mut f = line.split_whitespace();
    let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
    let (_dev, _inode) = (f.next()?, f.next()?);
    let path = f.collect::<Vec<_>>().join(" ");
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let (a, b) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(a, 16).ok()?,
        end: u64::from_str_radix(b, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path: path.into(),
    })
}

impl Unwinding {
    fn sections(&mut self, path: &Arc<str>) -> Option<Arc<Sections>> {
        self.files
            .entry(path.clone())
            .or_insert_with(|| read_sections(path).map(Arc::new))
            .clone()
    }

    fn space(&mut self, pid: Pid) -> Option<Arc<Space>> {
        if let Some(s) = self.spaces.get(&pid) {
            return Some(s.clone());
        }
        let maps = read_maps(pid);
        if maps.is_empty() {
            return None;
        }
        let mut unwinder = UnwinderX86_64::new();
        for m in &maps {
            let Some(sec) = self.sections(&m.path) else {
                continue;
            };
            // The load bias: where the file's address 0 is in this process.
            // The mapping starts at its segment's page-aligned offset (a
            // segment's offset and address may differ by a page or more).
            let page = |x: u64| x & !0xfff;
            let Some(&(vaddr, off, _)) = sec
                .segments
                .iter()
                .find(|(_, off, _)| page(*off) == m.offset)
                .or_else(|| {
                    sec.segments
                        .iter()
                        .find(|(_, off, size)| m.offset >= *off && m.offset < off + size)
                })
            else {
                continue;
            };
            let base = m
                .start
                .wrapping_sub(page(vaddr))
                .wrapping_add(page(off))
                .wrapping_sub(m.offset);
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: sec.text.clone(),
                got_svma: sec.got.clone(),
                eh_frame_svma: sec.eh_frame.as_ref().map(|(r, _)| r.clone()),
                eh_frame: sec.eh_frame.as_ref().map(|(_, d)| d.clone()),
                eh_frame_hdr_svma: sec.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
                eh_frame_hdr: sec.eh_frame_hdr.as_ref().map(|(_, d)| d.clone()),
                ..Default::default()
            };
            unwinder.add_module(Module::new(m.path.to_string(), m.start..m.end, base, info));
        }
        let space = Arc::new(Space { unwinder, maps });
        self.spaces.insert(pid, space.clone());
        Some(space)
    }

    /// A forked child runs the parent's code until it execs.
    /// Read now, while the parent runs: a vfork child (posix_spawn) shares
    /// it until its exec, after which its own maps would be the new program's.
    pub fn fork(&mut self, parent: Pid, child: Pid) {
        if let Some(s) = self.space(parent) {
            self.spaces.insert(child, s);
        }
    }

    /// After exec (or exit) the old maps no longer apply.
    pub fn forget(&mut self, pid: Pid) {
        self.spaces.remove(&pid);
    }

    /// Return addresses of the stack at (ip, sp, bp) whose top is `stack`,
    /// innermost first, each placed in its file.
    pub fn unwind(&mut self, pid: Pid, ip: u64, sp: u64, bp: u64, stack: &[u8]) -> Vec<RawFrame> {
        let Some(space) = self.space(pid) else {
            return vec![RawFrame {
                addr: ip,
                module: None,
                file_offset: 0,
            }];
        };
        let cache = self
            .cache
            .get_or_insert_with(|| Box::new(CacheX86_64::new()));
        let mut read = |addr: u64| -> Result<u64, ()> {
            let at = usize::try_from(addr.checked_sub(sp).ok_or(())?).map_err(|_| ())?;
            let b = stack.get(at..at + 8).ok_or(())?;
            Ok(u64::from_ne_bytes([
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
            ]))
        };
        let regs = UnwindRegsX86_64::new(ip, sp, bp);
        let mut frames = Vec::new();
        let mut it = space.unwinder.iter_frames(ip, regs, cache, &mut read);
        let mut clean = false;
        while frames.len() < MAX_FRAMES {
            match it.next() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => {
                    clean = true;
                    break;
                }
                Err(e) => {
                    if std::env::var_os("CWLEAK_UNWIND_DEBUG").is_some() {
                        crate::diag!("unwind: {e:?} after {} frames", frames.len());
                    }
                    break;
                }
            }
        }
        if !clean && frames.len() < 2 {
            self.truncated += 1;
        }
        frames
            .into_iter()
            .map(|f| {
                // A return address points after the call: look up the call.
                let (addr, lookup) = match f {
                    FrameAddress::InstructionPointer(a) => (a, a),
                    FrameAddress::ReturnAddress(a) => (a.get(), a.get() - 1),
                };
                let m = space
                    .maps
                    .iter()
                    .find(|m| lookup >= m.start && lookup < m.end);
                RawFrame {
                    addr,
                    module: m.map(|m| m.path.clone()),
                    file_offset: m.map_or(0, |m| lookup - m.start + m.offset),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_executable_file_mappings() {
        let m = parse_map_line(
            "7f12a000-7f12c000 r-xp 00028000 08:01 1234   /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(
            (m.start, m.end, m.offset),
            (0x7f12a000, 0x7f12c000, 0x28000)
        );
        assert_eq!(&*m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert!(parse_map_line("7f12a000-7f12c000 rw-p 00000000 00:00 0 [heap]").is_none());
        assert!(parse_map_line("garbage").is_none());
    }

    #[test]
    fn unwinds_this_process() {
        // Our own stack, copied as the kernel would: from sp upward.
        let mut u = Unwinding::default();
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reading three registers into locals.
        unsafe {
            std::arch::asm!("lea {0}, [rip]", "mov {1}, rsp", "mov {2}, rbp",
                out(reg) ip, out(reg) sp, out(reg) bp);
        }
        // Up to 64 KiB above sp (a debug build's test frames are big), within
        // the mapping that holds the stack.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let end = maps
            .lines()
            .filter_map(|l| {
                let (a, b) = l.split_whitespace().next()?.split_once('-')?;
                Some((
                    u64::from_str_radix(a, 16).ok()?,
                    u64::from_str_radix(b, 16).ok()?,
                ))
            })
            .find(|(a, b)| sp >= *a && sp < *b)
            .unwrap()
            .1;
        let len = (end - sp).min(1 << 16) as usize;
        // SAFETY: these bytes are this thread's mapped, live stack.
        let stack = unsafe { std::slice::from_raw_parts(sp as *const u8, len) }.to_vec();
        let frames = u.unwind(std::process::id() as Pid, ip, sp, bp, &stack);
        assert!(frames.len() >= 3, "{frames:?}");
        assert!(frames[0].module.is_some());
    }
}
