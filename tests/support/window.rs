//! A cwleak run caught inside its settle window: stopped (SIGSTOP) while
//! its main thread sleeps between the first and the second look, so a test
//! can change the world in between and know the change lands inside the
//! window, whatever the machine's speed. Reading another process's
//! /proc/PID/syscall needs root.

use std::fs::File;
use std::io::{Read, Seek};
use std::process::{Child, Command, ExitStatus, Stdio};

/// The first field of /proc/PID/syscall: the syscall a stopped or blocked
/// thread is in.
fn syscall_of(pid: u32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn is_sleep(nr: Option<i64>) -> bool {
    nr == Some(libc::SYS_clock_nanosleep) || nr == Some(libc::SYS_nanosleep)
}

/// cwleak stopped in its settle window; killed and reaped on drop.
pub struct InWindow {
    child: Option<Child>,
    out: File,
}

/// Run cwleak with `args` (which must settle long enough to be caught, a
/// few seconds) and stop it inside its settle window: the first look is
/// done when the main thread sleeps, the settle window being the only
/// sleep of a scan. A very slow machine may miss it: five tries.
pub fn stop_in_settle(args: &[String]) -> InWindow {
    for _ in 0..5 {
        let out = tempfile::tempfile().expect("tempfile");
        let mut w = InWindow {
            child: Some(
                Command::new(env!("CARGO_BIN_EXE_cwleak"))
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(out.try_clone().expect("dup"))
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn cwleak"),
            ),
            out,
        };
        let pid = w.pid();
        while !is_sleep(syscall_of(pid)) {
            if w.child().try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::yield_now();
        }
        // SAFETY: plain syscall to our own child, not reaped yet.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        while !matches!(state_of(pid), Some('T' | 'Z') | None) {
            std::thread::yield_now();
        }
        if state_of(pid) == Some('T') && is_sleep(syscall_of(pid)) {
            return w;
        }
    }
    panic!("never caught cwleak {args:?} inside its settle window");
}

impl InWindow {
    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("not reaped")
    }

    fn pid(&mut self) -> u32 {
        self.child().id()
    }

    /// Let it take its second look and finish: (status, stdout).
    pub fn resume(mut self) -> (ExitStatus, String) {
        let pid = self.pid();
        // SAFETY: plain syscall to our own child, not reaped yet.
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
        let status = self.child().wait().expect("wait cwleak");
        self.child = None;
        let mut stdout = String::new();
        self.out.rewind().expect("rewind");
        self.out.read_to_string(&mut stdout).expect("read");
        (status, stdout)
    }
}

impl Drop for InWindow {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
