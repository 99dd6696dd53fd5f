//! Running a read inside another network namespace: /proc/thread-self/net,
//! /proc/sys/net and netlink sockets show the namespace of the thread that
//! opens them, so a short-lived thread setns()es into the namespace, reads,
//! and ends. The caller's thread never changes namespace.

use std::path::Path;

/// Run `read` on a thread inside the namespace of `ns_file`.
pub fn in_netns<T: Send + 'static>(
    ns_file: &Path,
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    // Opened here, so a vanished process fails before any thread is spawned.
    let f = std::fs::File::open(ns_file).map_err(|e| format!("open {}: {e}", ns_file.display()))?;
    let shown = ns_file.display().to_string();
    let handle = std::thread::Builder::new()
        .name("cwleak-netns".into())
        .spawn(move || -> Result<T, String> {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {shown}: {}", e.desc()))?;
            drop(f);
            Ok(read())
        })
        .map_err(|e| format!("spawn namespace thread: {e}"))?;
    handle
        .join()
        .map_err(|_| "namespace thread panicked".to_string())?
}
