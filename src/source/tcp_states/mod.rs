//! Every TCP socket of a namespace counted by state by the kernel's TCP BPF
//! iterator (`iter/tcp`), one byte per socket, instead of a sock_diag
//! message per socket. `serve` publishes a count of every state at every
//! look; through sock_diag that was a message with addresses, queues and
//! timers for each of 200,000 sockets, of which it keeps 44,000. The
//! dump now asks the kernel only for the states it keeps records of.
//!
//! Used only where it runs: root with BPF allowed and a kernel with BTF and
//! the TCP iterator (5.9+); elsewhere the dump counts, as before.

mod prog;

use super::bpf_iter;
use super::kernel_btf::with_kernel_btf;
use super::sock_diag::Tally;
use crate::model::TcpState;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

/// The program attached to the iterator, made once per process. A refusal
/// is kept too: it comes from privileges or the kernel, which do not change
/// between looks, and trying again would parse the BTF at every look.
static LINK: OnceLock<Result<OwnedFd, String>> = OnceLock::new();

fn attached() -> Result<&'static OwnedFd, String> {
    LINK.get_or_init(attach).as_ref().map_err(Clone::clone)
}

fn attach() -> Result<OwnedFd, String> {
    let (insns, func) = with_kernel_btf(|btf| {
        let func = btf
            .func_id("bpf_iter_tcp")
            .ok_or("no TCP iterator in this kernel")?;
        Ok((prog::program(&prog::Offsets::from_btf(btf)?)?, func))
    })?;
    let prog = bpf_iter::load(&insns, func, "cwleak_states")
        .map_err(|e| format!("loading the program: {e}"))?;
    bpf_iter::link(&prog).map_err(|e| format!("attaching the iterator: {e}"))
}

/// Every TCP socket of the calling thread's network namespace, by state
/// (the iterator reads the namespace of whoever opens it).
pub fn count_here() -> Result<Tally, String> {
    let iter = bpf_iter::iterate(attached()?).map_err(|e| format!("opening the iterator: {e}"))?;
    let mut tally = Tally::default();
    bpf_iter::records(std::fs::File::from(iter), 1, |b| {
        if let Some(state) = b.first().and_then(|&b| state_of(b)) {
            tally.add(state);
        }
    })
    .map_err(|e| format!("reading the iterator: {e}"))?;
    Ok(tally)
}

/// A state byte as sock_diag would report the socket.
fn state_of(b: u8) -> Option<TcpState> {
    match TcpState::from_kernel(b) {
        // A request socket (a connection's SYN answered, its ACK not yet
        // in): sock_diag reports it as SYN_RECV.
        Some(TcpState::NewSynRecv) => Some(TcpState::SynRecv),
        // 0: the timewait substate could not be read (the helper zeroes its
        // output on a fault); the socket is a timewait one all the same.
        None if b == 0 => Some(TcpState::TimeWait),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_bytes_are_read_as_sock_diag_reports_them() {
        assert_eq!(state_of(1), Some(TcpState::Established));
        assert_eq!(state_of(8), Some(TcpState::CloseWait));
        assert_eq!(state_of(10), Some(TcpState::Listen));
        assert_eq!(state_of(12), Some(TcpState::SynRecv));
        assert_eq!(state_of(0), Some(TcpState::TimeWait));
        assert_eq!(state_of(13), None);
    }
}
