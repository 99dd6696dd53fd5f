//! What a person can run by hand for one socket (printed, never executed).
//! Kept as the facts and written out when rendered: 40,000 leaked sockets
//! would otherwise mean 40,000 near-identical command strings in memory.

use super::addr::AddrText;
use super::finding::{Blame, Line, SocketInfo};
use crate::model::Pid;
use serde::{Deserialize, Deserializer};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Mitigation {
    /// Close the blamed copy with a debugger, or destroy the socket (`ss -K`),
    /// inside its network namespace (entered through `ns_pid`) when not ours.
    Commands {
        close: Option<Blame>,
        ns_pid: Option<Pid>,
    },
    /// As read back from a JSON report.
    Text(Line),
}

impl Mitigation {
    /// The commands for `sock` (the socket of the finding this belongs to).
    pub fn text<'a>(&'a self, sock: &'a SocketInfo) -> Text<'a> {
        Text(self, sock)
    }
}

pub struct Text<'a>(&'a Mitigation, &'a SocketInfo);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Text(m, sock) = self;
        match m {
            Mitigation::Text(t) => f.write_str(t),
            Mitigation::Commands { close, ns_pid } => {
                if let Some(b) = close {
                    writeln!(
                        f,
                        "gdb -p {} -batch -ex 'call (int)close({})'   # closes the blamed copy{}; only if the program will not use fd {} again",
                        b.tid.unwrap_or(b.pid),
                        b.fd,
                        if b.tid.is_some() { " in that thread's own fd table" } else { "" },
                        b.fd
                    )?;
                }
                if let Some(p) = ns_pid {
                    write!(f, "nsenter --net=/proc/{p}/ns/net ")?;
                }
                write!(
                    f,
                    "ss -K src {} dst {}   # destroys the socket in the kernel (needs CONFIG_INET_DIAG_DESTROY)",
                    AddrText::of(&sock.local).as_str(),
                    AddrText::of(&sock.remote).as_str()
                )
            }
        }
    }
}

impl serde::Serialize for Text<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_display(self, s)
    }
}

/// Formatted into a reused buffer, then written as one string: serde_json's
/// `collect_str` escapes each of the dozen pieces `fmt` writes on its own,
/// which cost more than formatting itself over 40,000 findings.
fn serialize_display<S: serde::Serializer>(
    text: &impl fmt::Display,
    s: S,
) -> Result<S::Ok, S::Error> {
    use fmt::Write;
    thread_local! {
        static BUF: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    BUF.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            write!(buf, "{text}").map_err(serde::ser::Error::custom)?;
            s.serialize_str(&buf)
        }
        // Serializing from inside a serialization: no buffer to spare.
        Err(_) => s.collect_str(text),
    })
}

/// A group's commands: one gdb call closing all of its fds when there are a
/// few, a restart beyond, or the single finding's commands. Written from the
/// group's `fds` when rendered, like a finding's.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupMitigation {
    /// `tid`: the thread whose own fd table holds every one of the fds.
    CloseAll {
        tid: Option<Pid>,
    },
    Restart,
    One(Box<(Mitigation, SocketInfo)>),
    Text(Line),
}

/// gdb takes one `-ex` per fd: beyond this many, restarting is the way.
const MAX_GDB_FDS: usize = 64;

impl GroupMitigation {
    /// For a group blamed on `pid` with these fds, held in the fd tables of
    /// `tables` (None: the process's; a tid: that thread's own); `first` is
    /// its first finding's.
    pub fn new(
        pid: Option<Pid>,
        fds: &[i32],
        tables: &[Option<Pid>],
        first: Option<(&Mitigation, &SocketInfo)>,
    ) -> Self {
        match (pid, first) {
            // One gdb call closes fds of one table only.
            (Some(_), _) if fds.len() > 1 && tables.len() > 1 => GroupMitigation::Restart,
            (Some(_), _) if fds.len() > 1 && fds.len() <= MAX_GDB_FDS => {
                GroupMitigation::CloseAll {
                    tid: tables.first().copied().flatten(),
                }
            }
            (Some(_), _) if fds.len() > MAX_GDB_FDS => GroupMitigation::Restart,
            (_, Some((m, s))) => GroupMitigation::One(Box::new((m.clone(), s.clone()))),
            (_, None) => GroupMitigation::Text("".into()),
        }
    }

    pub fn text<'a>(&'a self, pid: Option<Pid>, fds: &'a [i32]) -> GroupText<'a> {
        GroupText(self, pid, fds)
    }
}

pub struct GroupText<'a>(&'a GroupMitigation, Option<Pid>, &'a [i32]);

impl fmt::Display for GroupText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let GroupText(m, pid, fds) = *self;
        let pid = pid.unwrap_or(0);
        match m {
            GroupMitigation::CloseAll { tid } => {
                write!(f, "gdb -p {} -batch", tid.unwrap_or(pid))?;
                for fd in fds {
                    write!(f, " -ex 'call (int)close({fd})'")?;
                }
                f.write_str("   # closes the blamed copies")?;
                if tid.is_some() {
                    f.write_str(" in that thread's own fd table")?;
                }
                f.write_str("; only if the program will not use these fds again")
            }
            GroupMitigation::Restart => write!(
                f,
                "restart pid {pid} gracefully (its {} leaked fds close on exit), then deploy the fix",
                fds.len()
            ),
            GroupMitigation::One(one) => one.0.text(&one.1).fmt(f),
            GroupMitigation::Text(t) => f.write_str(t),
        }
    }
}

impl serde::Serialize for GroupText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_display(self, s)
    }
}

impl<'de> Deserialize<'de> for GroupMitigation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|t| GroupMitigation::Text(t.into()))
    }
}

impl From<&str> for GroupMitigation {
    fn from(text: &str) -> Self {
        GroupMitigation::Text(text.into())
    }
}

impl<'de> Deserialize<'de> for Mitigation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|t| Mitigation::Text(t.into()))
    }
}

impl From<&str> for Mitigation {
    fn from(text: &str) -> Self {
        Mitigation::Text(text.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, TcpState};

    #[test]
    fn prints_commands_for_the_socket() {
        let sock = SocketInfo {
            inode: 5,
            netns: 1,
            family: Family::Ipv4,
            local: "127.0.0.1:80".parse().unwrap(),
            remote: "127.0.0.1:4000".parse().unwrap(),
            state: TcpState::CloseWait,
            recv_q: 1,
            send_q: 0,
            close_wait_ms: None,
        };
        let m = Mitigation::Commands {
            close: Some(Blame {
                pid: 10,
                fd: 7,
                tid: None,
            }),
            ns_pid: Some(10),
        };
        let text = m.text(&sock).to_string();
        assert!(
            text.starts_with("gdb -p 10 -batch -ex 'call (int)close(7)'"),
            "{text}"
        );
        assert!(text
            .contains("\nnsenter --net=/proc/10/ns/net ss -K src 127.0.0.1:80 dst 127.0.0.1:4000"));
        let json = serde_json::to_string(&m.text(&sock)).unwrap();
        let back: Mitigation = serde_json::from_str(&json).unwrap();
        assert_eq!(back.text(&sock).to_string(), text);
    }
}
