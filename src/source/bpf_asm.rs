//! A small BPF assembler with forward labels: enough to write the tracing
//! programs as Rust calls instead of hand-counted jump offsets. Encodes the
//! kernel's `struct bpf_insn` (little endian, destination register in the low
//! nibble). Pure code.

pub type Reg = u8;
pub const R0: Reg = 0;
pub const R1: Reg = 1;
pub const R2: Reg = 2;
pub const R3: Reg = 3;
pub const R4: Reg = 4;
pub const R5: Reg = 5;
pub const R6: Reg = 6;
pub const R7: Reg = 7;
pub const R8: Reg = 8;
pub const R9: Reg = 9;
pub const FP: Reg = 10;

/// Helper functions called by more than one program (linux/bpf.h's list).
pub const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
pub const HELPER_MAP_UPDATE_ELEM: i32 = 2;
pub const HELPER_MAP_DELETE_ELEM: i32 = 3;
pub const HELPER_PROBE_READ_KERNEL: i32 = 113;
pub const HELPER_SEQ_WRITE: i32 = 127;

/// Access sizes.
#[derive(Clone, Copy)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    DW = 0x18,
}

impl Size {
    /// The access of `bytes` bytes, if one instruction makes it.
    pub fn of_bytes(bytes: u32) -> Option<Size> {
        match bytes {
            1 => Some(Size::B),
            2 => Some(Size::H),
            4 => Some(Size::W),
            8 => Some(Size::DW),
            _ => None,
        }
    }
}

/// Conditional jumps (BPF_JMP ops).
#[derive(Clone, Copy)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    Set = 0x40,
    Ne = 0x50,
    Lt = 0xa0,
    Slt = 0xc0,
}

#[derive(Clone, Copy)]
pub struct Label(usize);

#[derive(Default)]
pub struct Asm {
    insns: Vec<u64>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, usize)>,
    /// Loads of a function's address (a callback): the label goes in imm.
    func_fixups: Vec<(usize, usize)>,
}

pub fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst & 0xf) << 8
        | u64::from(src & 0xf) << 12
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

impl Asm {
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    fn emit(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) {
        self.insns.push(insn(code, dst, src, off, imm));
    }

    fn jump(&mut self, code: u8, dst: Reg, src: Reg, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to.0));
        self.emit(code, dst, src, 0, imm);
    }

    /// if dst <cond> imm goto to
    pub fn jmp_imm(&mut self, c: Cond, dst: Reg, imm: i32, to: Label) {
        self.jump(0x05 | c as u8, dst, 0, imm, to);
    }

    /// if dst <cond> src goto to
    pub fn jmp_reg(&mut self, c: Cond, dst: Reg, src: Reg, to: Label) {
        self.jump(0x05 | 0x08 | c as u8, dst, src, 0, to);
    }

    pub fn goto(&mut self, to: Label) {
        self.jump(0x05, 0, 0, 0, to);
    }

    pub fn mov(&mut self, dst: Reg, src: Reg) {
        self.emit(0xbf, dst, src, 0, 0);
    }

    pub fn mov_imm(&mut self, dst: Reg, imm: i32) {
        self.emit(0xb7, dst, 0, 0, imm);
    }

    pub fn add_imm(&mut self, dst: Reg, imm: i32) {
        self.emit(0x07, dst, 0, 0, imm);
    }

    pub fn add(&mut self, dst: Reg, src: Reg) {
        self.emit(0x0f, dst, src, 0, 0);
    }

    pub fn sub(&mut self, dst: Reg, src: Reg) {
        self.emit(0x1f, dst, src, 0, 0);
    }

    pub fn or(&mut self, dst: Reg, src: Reg) {
        self.emit(0x4f, dst, src, 0, 0);
    }

    pub fn xor(&mut self, dst: Reg, src: Reg) {
        self.emit(0xaf, dst, src, 0, 0);
    }

    /// dst *= src (64 bits, wrapping)
    pub fn mul(&mut self, dst: Reg, src: Reg) {
        self.emit(0x2f, dst, src, 0, 0);
    }

    /// dst = imm, all 64 bits (a two-slot load).
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) {
        self.emit(0x18, dst, 0, 0, imm as u32 as i32);
        self.insns.push(insn(0, 0, 0, 0, (imm >> 32) as u32 as i32));
    }

    pub fn and_imm(&mut self, dst: Reg, imm: i32) {
        self.emit(0x57, dst, 0, 0, imm);
    }

    pub fn lsh_imm(&mut self, dst: Reg, imm: i32) {
        self.emit(0x67, dst, 0, 0, imm);
    }

    pub fn rsh_imm(&mut self, dst: Reg, imm: i32) {
        self.emit(0x77, dst, 0, 0, imm);
    }

    /// dst = *(size *)(src + off)
    pub fn ldx(&mut self, s: Size, dst: Reg, src: Reg, off: i16) {
        self.emit(0x61 | s as u8, dst, src, off, 0);
    }

    /// *(size *)(dst + off) = src
    pub fn stx(&mut self, s: Size, dst: Reg, off: i16, src: Reg) {
        self.emit(0x63 | s as u8, dst, src, off, 0);
    }

    /// *(size *)(dst + off) = imm
    pub fn st_imm(&mut self, s: Size, dst: Reg, off: i16, imm: i32) {
        self.emit(0x62 | s as u8, dst, 0, off, imm);
    }

    /// lock *(u64 *)(dst + off) += src
    pub fn atomic_add64(&mut self, dst: Reg, off: i16, src: Reg) {
        self.emit(0xdb, dst, src, off, 0);
    }

    /// r0 = *(u64 *)(dst + off); lock *(u64 *)(dst + off) += src, the old
    /// value into src.
    pub fn atomic_fetch_add64(&mut self, dst: Reg, off: i16, src: Reg) {
        // BPF_ADD | BPF_FETCH
        self.emit(0xdb, dst, src, off, 0x01);
    }

    /// dst = the function at `to` (a callback for a helper such as
    /// bpf_for_each_map_elem): a two-slot load, BPF_PSEUDO_FUNC.
    pub fn ld_func(&mut self, dst: Reg, to: Label) {
        self.func_fixups.push((self.insns.len(), to.0));
        self.emit(0x18, dst, 4, 0, 0);
        self.insns.push(0);
    }

    /// Where `l` was bound (a function's first instruction), once bound.
    pub fn at(&self, l: Label) -> Option<usize> {
        self.labels[l.0]
    }

    /// dst = the map behind fd (a two-slot load the kernel rewrites).
    pub fn ld_map(&mut self, dst: Reg, fd: i32) {
        self.emit(0x18, dst, 1, 0, fd);
        self.insns.push(0);
    }

    pub fn call(&mut self, helper: i32) {
        self.emit(0x85, 0, 0, 0, helper);
    }

    /// Call the kernel function whose BTF id (in vmlinux's BTF) is `id`:
    /// BPF_PSEUDO_KFUNC_CALL. Clobbers r0-r5.
    pub fn call_kfunc(&mut self, id: u32) {
        self.emit(0x85, 0, 2, 0, id as i32);
    }

    /// r0 = map[fp + key] (NULL if absent); clobbers r0-r5.
    pub fn map_lookup(&mut self, map: i32, key: i16) {
        self.map_args(map, key);
        self.call(HELPER_MAP_LOOKUP_ELEM);
    }

    /// map[fp + key] = fp + value (`flags`: BPF_ANY 0, BPF_NOEXIST 1);
    /// r0 is 0 or an error. Clobbers r0-r5.
    pub fn map_update(&mut self, map: i32, key: i16, value: i16, flags: i32) {
        self.map_args(map, key);
        self.mov(R3, FP);
        self.add_imm(R3, i32::from(value));
        self.mov_imm(R4, flags);
        self.call(HELPER_MAP_UPDATE_ELEM);
    }

    /// Delete map[fp + key]; clobbers r0-r5.
    pub fn map_delete(&mut self, map: i32, key: i16) {
        self.map_args(map, key);
        self.call(HELPER_MAP_DELETE_ELEM);
    }

    /// r1 = map, r2 = fp + key.
    fn map_args(&mut self, map: i32, key: i16) {
        self.ld_map(R1, map);
        self.mov(R2, FP);
        self.add_imm(R2, i32::from(key));
    }

    /// bpf_probe_read_kernel(fp + dst, size, src + off): r0 is 0 once read,
    /// and a failed read leaves zeros. Clobbers r0-r5 (`src` is taken first,
    /// so it may be any of them).
    pub fn probe_read(&mut self, dst: i16, size: i32, src: Reg, off: i32) {
        if src != R3 {
            self.mov(R3, src);
        }
        if off != 0 {
            self.add_imm(R3, off);
        }
        self.mov(R1, FP);
        self.add_imm(R1, i32::from(dst));
        self.mov_imm(R2, size);
        self.call(HELPER_PROBE_READ_KERNEL);
    }

    /// bpf_seq_write(seq, fp + at, len): the iterator's output; clobbers r0-r5.
    pub fn seq_write(&mut self, seq: Reg, at: i16, len: i32) {
        self.mov(R1, seq);
        self.mov(R2, FP);
        self.add_imm(R2, i32::from(at));
        self.mov_imm(R3, len);
        self.call(HELPER_SEQ_WRITE);
    }

    pub fn exit(&mut self) {
        self.emit(0x95, 0, 0, 0, 0);
    }

    pub fn finish(mut self) -> Result<Vec<u64>, String> {
        for (at, label) in std::mem::take(&mut self.func_fixups) {
            let to = self.labels[label].ok_or("a function never bound")?;
            let off = i32::try_from(to as i64 - at as i64 - 1).map_err(|_| "function too far")?;
            self.insns[at] |= u64::from(off as u32) << 32;
        }
        for (at, label) in std::mem::take(&mut self.fixups) {
            let to = self.labels[label].ok_or("a jump to a label never bound")?;
            let off = i16::try_from(to as i64 - at as i64 - 1).map_err(|_| "jump too far")?;
            self.insns[at] |= u64::from(off as u16) << 16;
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_64_bit_constant_takes_two_slots() {
        let mut a = Asm::default();
        a.ld_imm64(R3, 0xbf58_476d_1ce4_e5b9);
        a.xor(R1, R2);
        a.mul(R1, R3);
        let p = a.finish().unwrap();
        assert_eq!(p[0], insn(0x18, 3, 0, 0, 0x1ce4_e5b9));
        assert_eq!(p[1], insn(0, 0, 0, 0, 0xbf58_476d_u32 as i32));
        assert_eq!(p[2], insn(0xaf, 1, 2, 0, 0));
        assert_eq!(p[3], insn(0x2f, 1, 3, 0, 0));
    }

    #[test]
    fn labels_resolve_to_relative_offsets() {
        let mut a = Asm::default();
        let out = a.label();
        a.jmp_imm(Cond::Eq, R0, 0, out); // 0: skips 1
        a.mov_imm(R0, 1); // 1
        a.bind(out);
        a.exit(); // 2
        let p = a.finish().unwrap();
        assert_eq!(p[0], insn(0x15, 0, 0, 1, 0));
        assert_eq!(p[2], 0x95);
        // r2 = *(u32 *)(r7 + 2452), as the kernel lays it out.
        let mut a = Asm::default();
        a.ldx(Size::W, R2, R7, 2452);
        assert_eq!(a.finish().unwrap()[0], 0x0000_0000_0994_7261);
        let mut a = Asm::default();
        let never = a.label();
        a.goto(never);
        assert!(a.finish().is_err());
    }

    #[test]
    fn a_function_load_points_past_itself() {
        let mut a = Asm::default();
        let f = a.label();
        a.ld_func(R2, f); // 0-1
        a.exit(); // 2
        a.bind(f);
        a.exit(); // 3: 3 - 0 - 1 = 2
        let p = a.finish().unwrap();
        assert_eq!(p[0], insn(0x18, 2, 4, 0, 2));
        assert_eq!(p[1], 0);
    }
}
