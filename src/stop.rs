//! Stopping a long-running command (`watch`, `serve`) on SIGINT or SIGTERM:
//! the handler only sets a flag, and the command's loop notices it between
//! two steps, so it can print its summary or finish its answers first. A
//! second signal while it does ends the process at once (status 130), for a
//! look that hangs on a stuck /proc read.

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

/// How often a sleeping loop looks at the flag: Ctrl-C feels immediate.
const STEP: Duration = Duration::from_millis(50);

extern "C" fn on_stop(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Route SIGINT and SIGTERM to the flag.
pub fn install() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls _exit.
        unsafe { sigaction(sig, &action) }
            .with_context(|| format!("installing a {sig} handler"))?;
    }
    Ok(())
}

/// A stop signal has arrived.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Ask to stop from inside the program (a reader that went away, a limit reached).
pub fn request() {
    STOP.store(true, Ordering::SeqCst);
}

/// Sleep until `deadline` in short steps; false when asked to stop.
pub fn sleep_until(deadline: Instant) -> bool {
    sleep_until_unless(deadline, || false)
}

/// Like `sleep_until`, also false as soon as stdout's reader has gone away:
/// `watch | head -1` must end when head does, not at its next write, which
/// may never come when nothing changes.
pub fn sleep_while_read(deadline: Instant) -> bool {
    sleep_until_unless(deadline, stdout_reader_gone)
}

fn sleep_until_unless(deadline: Instant, gone: impl Fn() -> bool) -> bool {
    loop {
        if requested() || gone() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(STEP));
    }
}

/// A pipe or socket on stdout whose other end is closed: poll reports
/// POLLERR (pipe) or POLLHUP (socket, hung-up terminal) without writing.
/// Regular files and /dev/null never do.
pub fn stdout_reader_gone() -> bool {
    let mut fds = [libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    }];
    // SAFETY: one valid pollfd, zero timeout: poll only fills revents.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    n > 0 && fds[0].revents & (libc::POLLERR | libc::POLLHUP) != 0
}
