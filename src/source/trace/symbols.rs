//! Recorded frames to function and file:line, with blazesym (ELF symbols and
//! DWARF line tables, including separate debug files under
//! /usr/lib/debug). Frames are grouped by file: one lookup per binary.

use crate::model::FastMap;
use crate::trace::{Frame, RawFrame};
use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use std::sync::Arc;

pub struct Symbols {
    symbolizer: Symbolizer,
    known: FastMap<(Arc<str>, u64), Frame>,
}

impl Default for Symbols {
    fn default() -> Symbols {
        Symbols {
            symbolizer: Symbolizer::builder()
                .enable_demangling(true)
                .enable_inlined_fns(false)
                .build(),
            known: FastMap::default(),
        }
    }
}

impl Symbols {
    /// Look up every frame of `stacks` (one pass per file).
    pub fn prepare(&mut self, stacks: &[Vec<RawFrame>]) {
        let mut by_file: FastMap<Arc<str>, Vec<u64>> = FastMap::default();
        for f in stacks.iter().flatten() {
            if let Some(m) = &f.module {
                if !self.known.contains_key(&(m.clone(), f.file_offset)) {
                    by_file.entry(m.clone()).or_default().push(f.file_offset);
                }
            }
        }
        for (file, mut offsets) in by_file {
            offsets.sort_unstable();
            offsets.dedup();
            let found = self.lookup(&file, &offsets, true);
            // A stripped library whose debug file is not installed: its
            // dynamic symbols still name the exported functions.
            let found = if found.iter().all(|s| s.is_none()) {
                self.lookup(&file, &offsets, false)
            } else {
                found
            };
            for (off, sym) in offsets.iter().zip(found) {
                let (function, path, line) = sym.unwrap_or((None, None, None));
                self.known.insert(
                    (file.clone(), *off),
                    Frame {
                        function,
                        file: path,
                        line,
                        module: Some(file.to_string()),
                        address: 0,
                    },
                );
            }
        }
    }

    /// (function, file, line) per offset; None where nothing was found.
    #[allow(clippy::type_complexity)]
    fn lookup(
        &self,
        file: &str,
        offsets: &[u64],
        debug: bool,
    ) -> Vec<Option<(Option<String>, Option<String>, Option<u32>)>> {
        let mut elf = Elf::new(file);
        elf.debug_syms = debug;
        let found = self
            .symbolizer
            .symbolize(&Source::Elf(elf), Input::FileOffset(offsets))
            .unwrap_or_default();
        let mut out: Vec<_> = found
            .into_iter()
            .map(|sym| match sym {
                Symbolized::Sym(s) => {
                    let (p, l) = s.code_info.map_or((None, None), |c| {
                        (Some(c.to_path().display().to_string()), c.line)
                    });
                    Some((Some(s.name.to_string()), p, l))
                }
                Symbolized::Unknown(_) => None,
            })
            .collect();
        out.resize(offsets.len(), None);
        out
    }

    /// The frames of one stack (prepared or not).
    pub fn frames(&self, stack: &[RawFrame]) -> Vec<Frame> {
        stack
            .iter()
            .map(|f| {
                let known = f
                    .module
                    .as_ref()
                    .and_then(|m| self.known.get(&(m.clone(), f.file_offset)));
                match known {
                    Some(k) => Frame {
                        address: f.addr,
                        ..k.clone()
                    },
                    None => Frame {
                        function: None,
                        file: None,
                        line: None,
                        module: f.module.as_ref().map(|m| m.to_string()),
                        address: f.addr,
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_libc_function_and_a_line_of_this_test() {
        // Where this function is, in this test binary's file.
        let here = names_a_libc_function_and_a_line_of_this_test as *const () as usize as u64;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut frames = Vec::new();
        for l in maps.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (a, b) = f[0].split_once('-').unwrap();
            let (a, b) = (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            );
            let off = u64::from_str_radix(f[2], 16).unwrap();
            let path = f.get(5).copied().unwrap_or("");
            let target = if path.contains("libc.so") {
                libc::close as *const () as usize as u64
            } else {
                here
            };
            if f[1].contains('x') && target >= a && target < b && path.starts_with('/') {
                frames.push(RawFrame {
                    addr: target,
                    module: Some(path.into()),
                    file_offset: target - a + off,
                });
            }
        }
        let mut s = Symbols::default();
        s.prepare(&[frames.clone()]);
        let got = s.frames(&frames);
        eprintln!("{got:?}");
        assert!(got.iter().any(|f| f
            .function
            .as_deref()
            .is_some_and(|n| n.contains("names_a_libc_function"))
            && f.file.as_deref().is_some_and(|p| p.ends_with("symbols.rs"))));
        if frames.len() > 1 {
            assert!(
                got.iter().any(|f| f.function.as_deref() == Some("close")
                    || f.function.as_deref().is_some_and(|n| n.contains("close"))),
                "{got:?}"
            );
        }
    }
}
