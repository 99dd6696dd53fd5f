//! The BPF program run by the kernel's TCP iterator (`iter/tcp`, once per
//! socket of the namespace the iterator was opened in), built from the
//! running kernel's struct offsets. It writes one byte per socket: its state,
//! or for a timewait mini-socket the state it stands for (`tw_substate`:
//! TIME_WAIT, or an orphaned FIN_WAIT2), as sock_diag reports it.
//! Pure code: offsets in, instructions out.

use crate::parse::btf::{Btf, Member};
use crate::parse::ParseResult;
use crate::source::bpf_asm::{Asm, Cond, Size, FP, R0, R1, R2, R3, R6, R7, R9};

const HELPER_PROBE_READ_KERNEL: i32 = 113;
const HELPER_SEQ_WRITE: i32 = 127;
/// The kernel's TCP_TIME_WAIT: the state of every timewait mini-socket.
const TCP_TIME_WAIT: i32 = 6;
/// Where the byte is built on the program's stack.
const SLOT: i16 = -8;

/// The struct members the program reads.
pub struct Offsets {
    ctx_meta: i16,
    ctx_sk: i16,
    meta_seq: i16,
    skc_state: i16,
    tw_substate: i32,
}

impl Offsets {
    pub fn from_btf(btf: &Btf) -> ParseResult<Offsets> {
        let [ctx_meta, ctx_sk] = btf.members("bpf_iter__tcp", ["meta", "sk_common"])?;
        let [meta_seq] = btf.members("bpf_iter_meta", ["seq"])?;
        let [skc_state] = btf.members("sock_common", ["skc_state"])?;
        let [tw_substate] = btf.members("inet_timewait_sock", ["tw_substate"])?;
        Ok(Offsets {
            ctx_meta: sized(ctx_meta, 8)?,
            ctx_sk: sized(ctx_sk, 8)?,
            meta_seq: sized(meta_seq, 8)?,
            skc_state: sized(skc_state, 1)?,
            tw_substate: i32::from(sized(tw_substate, 1)?),
        })
    }
}

/// The member's offset, when it has the size the program loads.
fn sized(m: Member, size: u32) -> ParseResult<i16> {
    if m.size != size {
        return Err(format!(
            "a {}-byte member where {size} was expected",
            m.size
        ));
    }
    i16::try_from(m.offset).map_err(|_| format!("member offset {} too large", m.offset))
}

pub fn program(o: &Offsets) -> ParseResult<Vec<u64>> {
    let mut a = Asm::default();
    let (write, out) = (a.label(), a.label());
    a.mov(R6, R1);
    a.ldx(Size::DW, R7, R6, o.ctx_sk);
    // No socket: the iteration's end.
    a.jmp_imm(Cond::Eq, R7, 0, out);
    a.ldx(Size::DW, R1, R6, o.ctx_meta);
    a.ldx(Size::DW, R9, R1, o.meta_seq);
    a.ldx(Size::B, R2, R7, o.skc_state);
    a.stx(Size::B, FP, SLOT, R2);
    a.jmp_imm(Cond::Ne, R2, TCP_TIME_WAIT, write);
    // A timewait mini-socket is no full socket: its substate is read past
    // the sock_common the verifier knows, so through the helper.
    a.mov(R1, FP);
    a.add_imm(R1, i32::from(SLOT));
    a.mov_imm(R2, 1);
    a.mov(R3, R7);
    a.add_imm(R3, o.tw_substate);
    a.call(HELPER_PROBE_READ_KERNEL);
    a.bind(write);
    a.mov(R1, R9);
    a.mov(R2, FP);
    a.add_imm(R2, i32::from(SLOT));
    a.mov_imm(R3, 1);
    a.call(HELPER_SEQ_WRITE);
    a.bind(out);
    a.mov_imm(R0, 0);
    a.exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_of_another_size_is_refused() {
        let m = Member {
            offset: 16,
            size: 4,
        };
        assert_eq!(sized(m, 4), Ok(16));
        assert!(sized(m, 1).is_err());
        assert!(sized(
            Member {
                offset: 1 << 16,
                size: 1
            },
            1
        )
        .is_err());
    }
}
