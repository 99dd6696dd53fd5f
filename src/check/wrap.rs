//! Wrap mode: run the test command with cwleak's stdio, wait for it, and
//! forward SIGINT/SIGTERM to it meanwhile.
//!
//! CMD stays in cwleak's process group, so Ctrl-C in a terminal reaches it
//! directly (the terminal signals the whole foreground group) and an
//! interactive CMD can still read the terminal. A signal a process sends to
//! cwleak alone (`kill`, a CI runner cancelling the job) is passed on to CMD:
//! the kernel tells the two apart by `si_code`.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How often the wait loop looks at the child and at received signals.
const TICK: Duration = Duration::from_millis(10);
const FORWARDED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// The running command's pid, for the signal handler (0: none).
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The last SIGINT/SIGTERM cwleak received while CMD ran (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error("cannot run {program}: command not found")]
    NotFound { program: String },
    #[error("cannot run {program}")]
    CannotExecute {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("waiting for {program}")]
    Wait {
        program: String,
        #[source]
        source: io::Error,
    },
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
    /// cwleak itself got SIGINT or SIGTERM while CMD ran: the run was cut
    /// short, so no check is taken.
    pub interrupted: Option<i32>,
}

pub struct Running {
    child: Child,
    program: String,
    started: Instant,
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

/// Start `argv` with inherited stdin, stdout and stderr.
pub fn spawn(argv: &[OsString]) -> Result<Running, WrapError> {
    let Some((first, rest)) = argv.split_first() else {
        return Err(WrapError::NotFound {
            program: String::new(),
        });
    };
    let program = first.to_string_lossy().into_owned();
    RECEIVED.store(0, Ordering::SeqCst);
    // Before the spawn: a signal that comes right after it must not kill
    // cwleak and orphan CMD. exec resets caught signals, so CMD starts
    // with the default dispositions.
    let previous = install();
    let started = Instant::now();
    let child = match Command::new(first).args(rest).spawn() {
        Ok(c) => c,
        Err(source) => {
            restore(&previous);
            return Err(match source.kind() {
                io::ErrorKind::NotFound => WrapError::NotFound { program },
                _ => WrapError::CannotExecute { program, source },
            });
        }
    };
    CHILD.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
    Ok(Running {
        child,
        program,
        started,
        previous,
    })
}

impl Running {
    /// Wait for the command to exit; signals are forwarded meanwhile.
    pub fn wait(mut self) -> Result<Finished, WrapError> {
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => std::thread::sleep(TICK),
                Err(source) => {
                    self.stop_forwarding();
                    return Err(WrapError::Wait {
                        program: self.program.clone(),
                        source,
                    });
                }
            }
        };
        self.stop_forwarding();
        let received = RECEIVED.swap(0, Ordering::SeqCst);
        Ok(Finished {
            code: status.code(),
            signal: status.signal(),
            duration: self.started.elapsed(),
            interrupted: (received != 0).then_some(received),
        })
    }

    /// From here on (the check itself) Ctrl-C stops cwleak as usual.
    fn stop_forwarding(&mut self) {
        CHILD.store(0, Ordering::SeqCst);
        restore(&std::mem::take(&mut self.previous));
    }
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    RECEIVED.store(sig, Ordering::SeqCst);
    let child = CHILD.load(Ordering::SeqCst);
    if child <= 0 || info.is_null() {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo_t with SA_SIGINFO.
    let (code, sender) = unsafe { ((*info).si_code, (*info).si_pid()) };
    // si_code <= 0: sent by a process (SI_USER, SI_QUEUE, SI_TKILL), to us
    // alone. Kernel-sent ones (the terminal's Ctrl-C) went to the whole
    // group, CMD included: forwarding would deliver them twice.
    if code <= 0 && sender != child {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(child, sig) };
    }
}

fn install() -> Vec<(libc::c_int, libc::sigaction)> {
    let mut previous = Vec::new();
    for sig in FORWARDED {
        // SAFETY: sigaction is plain data; the handler only touches atomics
        // and calls kill, both async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&raw mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &raw const sa, &raw mut old) == 0 {
                previous.push((sig, old));
            }
        }
    }
    previous
}

fn restore(previous: &[(libc::c_int, libc::sigaction)]) {
    for (sig, old) in previous {
        // SAFETY: `old` is what sigaction returned for this signal.
        unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Finished, WrapError> {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        spawn(&argv)?.wait()
    }

    #[test]
    fn exit_codes_and_signals_come_back() {
        let f = run(&["sh", "-c", "exit 7"]).unwrap();
        assert_eq!((f.code, f.signal, f.interrupted), (Some(7), None, None));
        let f = run(&["sh", "-c", "kill -TERM $$"]).unwrap();
        assert_eq!((f.code, f.signal), (None, Some(libc::SIGTERM)));
    }

    #[test]
    fn a_missing_command_is_not_found() {
        let e = run(&["/nonexistent/cwleak-test-cmd"]).err();
        assert!(matches!(e, Some(WrapError::NotFound { .. })), "{e:?}");
        let e = run(&["/"]).err();
        assert!(matches!(e, Some(WrapError::CannotExecute { .. })), "{e:?}");
    }
}
