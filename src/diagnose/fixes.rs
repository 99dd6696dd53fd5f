//! The fix (a code change that removes the leak) and the mitigation (what a
//! person can run by hand now; printed, never executed), per cause.

use super::finding::Cause;

pub fn fix(cause: Cause, accept_queue: bool) -> &'static str {
    match cause {
        Cause::ForkParentKept => "close the accepted socket in the parent right after fork(): the child owns the connection now \
            (C: `if (fork() > 0) close(connfd);`; Python: `conn.close()` in the parent branch)"
           ,
        Cause::InheritedNoCloexec => "create sockets close-on-exec (SOCK_CLOEXEC on socket()/accept4(), or fcntl FD_CLOEXEC) \
            and spawn helpers without inherited fds (Python subprocess close_fds=True, posix_spawn with closefrom, \
            systemd-run); then an exec'd helper never holds a connection it does not use"
           ,
        Cause::NeverClosed => "close the socket when the peer's FIN arrives: read()/recv() returning 0 means the peer closed, \
            so call close() there, and on every error and timeout path (a finally/defer/RAII guard makes it impossible to forget)"
           ,
        Cause::DupCopyKept => "close every copy: dup()/dup2()/F_DUPFD (or fdopen, or an fd handed to a second wrapper object) \
            made another reference and close() of one drops only that one; close the duplicate, or call shutdown(fd, SHUT_RDWR) \
            when the connection is finished"
           ,
        Cause::PassedFdKept => "the process that received the fd (recvmsg SCM_RIGHTS, pidfd_getfd) must close it when the \
            connection ends, and the sender should close its own copy right after sendmsg()"
           ,
        Cause::NoVisibleHolder if accept_queue => "the owner of the listener is not calling accept(): its accept loop is \
            blocked, hung or overloaded; fix that loop (or raise workers), and closed connections will be accepted and closed"
           ,
        Cause::NoVisibleHolder => "find the holder first: run cwleak as root (and from the host's pid namespace); if the socket \
            is in flight over a unix socket, the receiver must recvmsg() it and close it"
           ,
    }
}

/// A handler given the connection as its stdin/stdout/stderr.
pub const STDIO_HANDLER: &str = "the handler was given the connection as its stdin/stdout/stderr and is its only user: \
    it must finish when the peer closes (exit, or close stdin and stdout, when read() on stdin returns 0); \
    if it is meant to run on without the client, the service or its super-server configuration is at fault \
    (inetd/socat EXEC/CGI should start a program that ends with the connection)";

/// A job that inherited a handler's stdio.
pub const STDIO_JOB: &str = "start background jobs with their stdio redirected away from the connection \
    (`nohup cmd >/dev/null 2>&1 </dev/null &`, or close fds 0-2 and others before exec; subprocess with \
    stdin/stdout/stderr=DEVNULL); a job that inherits a handler's stdout keeps the client's connection open";

/// `fix(cause)`, then the fix of each alternative, hedged: never a
/// confident fix for a cause the evidence does not decide. Alternatives come
/// only from the rules for a socket someone holds, so never one in an
/// accept queue.
pub fn hedged(cause: Cause, alternatives: &[Cause]) -> String {
    let mut out = fix(cause, false).to_string();
    for alt in alternatives {
        out.push_str(&format!(
            "\nif it is {} instead: {}",
            alt.name(),
            fix(*alt, false)
        ));
    }
    out
}
