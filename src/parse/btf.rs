//! The kernel's own type information (BTF, `/sys/kernel/btf/vmlinux`): just
//! enough of it to find a function's type id and where a struct member sits,
//! so a BPF program can be built for the running kernel instead of compiled
//! against one kernel's headers. Format: Documentation/bpf/btf.rst.

use super::ParseResult;

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// One type's fixed part; `extra` is where its kind-specific tail starts.
#[derive(Clone, Copy)]
struct Type {
    name_off: u32,
    info: u32,
    size_or_type: u32,
    extra: usize,
}

impl Type {
    fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }
    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }
    fn kind_flag(&self) -> bool {
        self.info >> 31 == 1
    }
}

/// Where a member lives inside its struct, in bytes, and how wide it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub offset: u32,
    pub size: u32,
}

/// Parsed BTF: where each type starts, indexed by type id (id 0 is void).
pub struct Btf<'a> {
    starts: Vec<u32>,
    type_data: &'a [u8],
    strings: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> ParseResult<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

fn u32_at(b: &[u8], at: usize) -> ParseResult<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

fn type_at(b: &[u8], at: usize) -> ParseResult<Type> {
    Ok(Type {
        name_off: u32_at(b, at)?,
        info: u32_at(b, at + 4)?,
        size_or_type: u32_at(b, at + 8)?,
        extra: at + 12,
    })
}

fn section<'a>(b: &'a [u8], off: u32, len: u32, what: &str) -> ParseResult<&'a [u8]> {
    let (off, len) = (off as usize, len as usize);
    b.get(off..off + len)
        .ok_or_else(|| format!("{what} section out of bounds"))
}

impl<'a> Btf<'a> {
    /// Parse a little-endian BTF blob (the byte order of the machines cwleak runs on).
    pub fn parse(b: &'a [u8]) -> ParseResult<Btf<'a>> {
        if u16_at(b, 0)? != MAGIC {
            return Err("not BTF (bad magic)".into());
        }
        let hdr_len = u32_at(b, 4)?;
        let body = b
            .get(hdr_len as usize..)
            .ok_or("header longer than the data")?;
        let type_data = section(body, u32_at(b, 8)?, u32_at(b, 12)?, "type")?;
        let strings = section(body, u32_at(b, 16)?, u32_at(b, 20)?, "string")?;
        // Only offsets are kept: the table is ~150k types, of which a lookup
        // reads a handful.
        let mut starts = Vec::with_capacity(type_data.len() / 16);
        starts.push(u32::MAX);
        let mut at = 0;
        while at < type_data.len() {
            let t = type_at(type_data, at)?;
            let tail = match t.kind() {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * t.vlen(),
                KIND_ENUM | KIND_FUNC_PROTO => 8 * t.vlen(),
                k if k <= KIND_ENUM64 => 0,
                k => return Err(format!("unknown type kind {k} at byte {at}")),
            };
            starts.push(u32::try_from(at).map_err(|_| "type section too large")?);
            at = t.extra + tail;
        }
        Ok(Btf {
            starts,
            type_data,
            strings,
        })
    }

    fn ty(&self, id: usize) -> ParseResult<Type> {
        match self.starts.get(id) {
            Some(&at) if id > 0 => type_at(self.type_data, at as usize),
            _ => Err(format!("type id {id} out of range")),
        }
    }

    /// The first type id for which `pred` holds.
    fn find(&self, pred: impl Fn(&Type) -> bool) -> Option<usize> {
        (1..self.starts.len()).find(|&id| self.ty(id).is_ok_and(|t| pred(&t)))
    }

    /// Whether the string at `off` is `want` (without scanning for its end:
    /// the kernel's table has about 150k names).
    fn is_named(&self, off: u32, want: &[u8]) -> bool {
        let off = off as usize;
        self.strings.get(off..off + want.len()) == Some(want)
            && self.strings.get(off + want.len()) == Some(&0)
    }

    /// The type id of the function `name` (what a BPF program attaches to).
    pub fn func_id(&self, name: &str) -> Option<u32> {
        let id =
            self.find(|t| t.kind() == KIND_FUNC && self.is_named(t.name_off, name.as_bytes()))?;
        u32::try_from(id).ok()
    }

    /// The type id of `struct name` (a complete one, not a declaration).
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        let id = self.find(|t| {
            t.kind() == KIND_STRUCT && t.vlen() > 0 && self.is_named(t.name_off, name.as_bytes())
        })?;
        u32::try_from(id).ok()
    }

    /// The `members` of `struct name`, searched through anonymous structs
    /// and unions too (the kernel nests many fields in them).
    pub fn members<const N: usize>(
        &self,
        name: &str,
        members: [&str; N],
    ) -> ParseResult<[Member; N]> {
        let id = self
            .struct_id(name)
            .ok_or_else(|| format!("no struct {name}"))? as usize;
        let mut found = [Member { offset: 0, size: 0 }; N];
        for (slot, member) in found.iter_mut().zip(members) {
            *slot = self
                .find_member(id, member.as_bytes(), 0)?
                .ok_or_else(|| format!("struct {name} has no member {member}"))?;
        }
        Ok(found)
    }

    fn find_member(&self, id: usize, want: &[u8], base_bits: u32) -> ParseResult<Option<Member>> {
        let t = self.ty(id)?;
        for i in 0..t.vlen() {
            let at = t.extra + 12 * i;
            let name_off = u32_at(self.type_data, at)?;
            let ty = u32_at(self.type_data, at + 4)? as usize;
            let raw = u32_at(self.type_data, at + 8)?;
            // With kind_flag, the top byte is a bitfield's width.
            let bits = base_bits + if t.kind_flag() { raw & 0xff_ffff } else { raw };
            if name_off == 0 {
                let inner = self.resolve(ty)?;
                if matches!(self.ty(inner)?.kind(), KIND_STRUCT | KIND_UNION) {
                    if let Some(found) = self.find_member(inner, want, bits)? {
                        return Ok(Some(found));
                    }
                }
            } else if self.is_named(name_off, want) {
                if bits % 8 != 0 {
                    return Err("member is a bitfield".into());
                }
                return Ok(Some(Member {
                    offset: bits / 8,
                    size: self.size_of(ty)?,
                }));
            }
        }
        Ok(None)
    }

    /// Skip typedefs and qualifiers.
    fn resolve(&self, mut id: usize) -> ParseResult<usize> {
        for _ in 0..32 {
            let t = self.ty(id)?;
            match t.kind() {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type as usize;
                }
                _ => return Ok(id),
            }
        }
        Err("type chain too long".into())
    }

    fn size_of(&self, id: usize) -> ParseResult<u32> {
        let t = self.ty(self.resolve(id)?)?;
        match t.kind() {
            KIND_PTR => Ok(8),
            KIND_INT | KIND_ENUM | KIND_ENUM64 | KIND_STRUCT | KIND_UNION => Ok(t.size_or_type),
            // btf_array: element type, index type, number of elements.
            KIND_ARRAY => {
                let elem = u32_at(self.type_data, t.extra)? as usize;
                let n = u32_at(self.type_data, t.extra + 8)?;
                self.size_of(elem)?
                    .checked_mul(n)
                    .ok_or_else(|| "array too large".to_string())
            }
            k => Err(format!("member of kind {k} has no plain size")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny blob built by hand: int, struct s { int a; union { int b; long c; }; },
    /// and func f.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0s\0a\0b\0c\0long\0f\0";
        let off = |s: &str| {
            let pat = format!("\0{s}\0");
            strings
                .windows(pat.len())
                .position(|w| w == pat.as_bytes())
                .map(|p| p as u32 + 1)
                .unwrap_or(0)
        };
        let mut ty = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| ty.extend(w.to_le_bytes()));
        push(&[off("int"), KIND_INT << 24, 4, 32]); // 1
        push(&[off("long"), KIND_INT << 24, 8, 64]); // 2
        push(&[0, KIND_UNION << 24 | 2, 8, off("b"), 1, 0, off("c"), 2, 0]); // 3
        push(&[
            off("s"),
            KIND_STRUCT << 24 | 2,
            16,
            off("a"),
            1,
            0,
            0,
            3,
            64,
        ]); // 4
        push(&[off("f"), KIND_FUNC << 24, 0]); // 5
        let mut b = Vec::new();
        b.extend(MAGIC.to_le_bytes());
        b.extend([1u8, 0]);
        for w in [
            24u32,
            0,
            ty.len() as u32,
            ty.len() as u32,
            strings.len() as u32,
        ] {
            b.extend(w.to_le_bytes());
        }
        b.extend(ty);
        b.extend(strings);
        b
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let b = blob();
        let btf = Btf::parse(&b).unwrap();
        let [a, c] = btf.members("s", ["a", "c"]).unwrap();
        assert_eq!(a, Member { offset: 0, size: 4 });
        assert_eq!(c, Member { offset: 8, size: 8 });
        assert!(btf.members("s", ["zz"]).is_err());
        assert!(btf.members("t", ["a"]).is_err());
        assert_eq!(btf.func_id("f"), Some(5));
        assert_eq!(btf.func_id("g"), None);
    }

    #[test]
    fn rejects_bad_blobs_without_panicking() {
        let b = blob();
        assert!(Btf::parse(&b[..10]).is_err());
        assert!(Btf::parse(&b[..40]).is_err());
        assert!(Btf::parse(b"not btf at all, just text").is_err());
    }

    #[test]
    fn reads_the_running_kernels_btf() {
        let Ok(b) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            crate::skip::skip(
                "btf::reads_the_running_kernels_btf",
                "no /sys/kernel/btf/vmlinux: this kernel has no BTF",
            );
            return;
        };
        let btf = Btf::parse(&b).unwrap();
        assert!(btf.func_id("bpf_iter_task_file").is_some());
        let [tgid] = btf.members("task_struct", ["tgid"]).unwrap();
        assert_eq!(tgid.size, 4);
        let [f_inode] = btf.members("file", ["f_inode"]).unwrap();
        assert_eq!(f_inode.size, 8);
        // An array member: its whole size.
        let [comm] = btf.members("task_struct", ["comm"]).unwrap();
        assert_eq!(comm.size, 16);
    }
}
