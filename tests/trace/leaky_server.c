/* A server that leaks CLOSE_WAIT sockets in one of four ways, for the
 * --trace tests. Built with -g -O0 -fomit-frame-pointer: the stack of each
 * call can only be unwound with the unwind tables (.eh_frame).
 *
 *   leaky_server MODE PIDFILE [N]
 *
 * The front process listens on 127.0.0.1 (an ephemeral port), forks the
 * server (which writes nothing to stdout), connects N clients, closes them
 * once the server has handled each, and exits 0. The server stays, holding
 * its leaked copies, until killed. MODE:
 *   fork   the server forks a child per connection; the child reads to EOF
 *          and closes; the parent never closes its copy (fork-parent-kept)
 *   exec   the child runs `sleep` without closing the fd (no SOCK_CLOEXEC);
 *          the parent closes its own copy (inherited-no-cloexec)
 *   dup    the server dup()s the fd, reads to EOF, closes the original and
 *          keeps the duplicate (dup-copy-kept)
 *   never  the server reads to EOF and never closes (never-closed)
 *   spawn  like never, and also runs `true` through fork+exec per
 *          connection, with an O_CLOEXEC socket (never-closed: a command
 *          it ran is not a handoff)
 *   pass-recv  the server passes each accepted fd to a worker (forked before
 *          the first accept) over a unix socket with SCM_RIGHTS, and closes
 *          its own copy; the worker reads to EOF and never closes
 *   pass-send  the same, but the worker closes what it received and the
 *          server keeps its copy after sendmsg()
 *   pass-lost  the server passes each accepted fd and closes its own copy,
 *          but the worker never calls recvmsg(): the connection stays in
 *          flight in the unix socket's queue, held by no process
 *   setfd  like exec, but the fd is accepted with SOCK_CLOEXEC and the flag
 *          is cleared with fcntl(F_SETFD) before the fork (inherited-no-cloexec)
 *   getfd  a helper (forked before the first accept) takes each accepted fd
 *          with pidfd_getfd() and keeps it; the server closes its own
 *   connect  the roles turn: the server connects to the front, which
 *          accepts and closes; the server never closes its client socket
 *   thread  a thread with its own fd table (unshare(CLONE_FILES)) accepts
 *          and never closes: the copies are in that thread's table only
 * The lines the tests look for are marked with @name comments.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void drain(int fd) {
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

static void tell(int status, char c) {
    if (write(status, &c, 1) != 1) {
        _exit(3);
    }
}

static int take(int lfd, int cloexec) {
    if (cloexec) {
        return accept4(lfd, NULL, NULL, SOCK_CLOEXEC); /* @accept4 */
    }
    return accept(lfd, NULL, NULL); /* @accept */
}

/* The front's listening address (the connect mode's server dials it). */
static struct sockaddr_in front;

/* getfd: the helper takes each fd the server names from the server. */
static void taker(int from, int to) {
    int fd;
    while (read(from, &fd, sizeof fd) == sizeof fd) {
        int pidfd = (int)syscall(SYS_pidfd_open, getppid(), 0);
        int got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0); /* @getfd */
        if (pidfd < 0 || got < 0) {
            _exit(9);
        }
        close(pidfd);
        tell(to, 'g');
    }
    for (;;) {
        pause();
    }
}

static void getfd(int lfd, int status, int n) {
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) || pipe2(up, O_CLOEXEC)) {
        _exit(8);
    }
    if (fork() == 0) {
        close(lfd);
        taker(down[0], up[1]);
    }
    for (int i = 0; i < n; i++) {
        int fd = take(lfd, 1);
        char ok;
        if (fd < 0 || write(down[1], &fd, sizeof fd) != sizeof fd || read(up[0], &ok, 1) != 1) {
            _exit(4);
        }
        close(fd);
        tell(status, 'k');
    }
    for (;;) {
        pause();
    }
}

struct job {
    int lfd, status, n;
};

static void *own_table(void *arg) {
    struct job *j = arg;
    if (unshare(CLONE_FILES)) {
        _exit(12);
    }
    for (int i = 0; i < j->n; i++) {
        int fd = take(j->lfd, 1);
        if (fd < 0) {
            _exit(4);
        }
        drain(fd);
        tell(j->status, 'k');
    }
    for (;;) {
        pause();
    }
    return NULL;
}

/* thread: the accepting thread has a table of its own. */
static void threaded(int lfd, int status, int n) {
    static struct job j;
    j.lfd = lfd;
    j.status = status;
    j.n = n;
    pthread_t t;
    if (pthread_create(&t, NULL, own_table, &j)) {
        _exit(13);
    }
    for (;;) {
        pause();
    }
}

/* connect: dial the front, which accepts and closes; never close. */
static void dial(int status, int n) {
    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* @client-socket */
        if (c < 0 || connect(c, (struct sockaddr *)&front, sizeof front)) { /* @connect */
            _exit(10);
        }
        drain(c);
        tell(status, 'k');
    }
    for (;;) {
        pause();
    }
}

static void send_fd(int via, int fd) {
    char byte = 'f';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                       .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    if (sendmsg(via, &m, 0) != 1) { /* @sendmsg */
        _exit(6);
    }
}

static int recv_fd(int via) {
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                       .msg_controllen = sizeof ctl.buf};
    if (recvmsg(via, &m, 0) != 1) { /* @recvmsg */
        return -1;
    }
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_type != SCM_RIGHTS) {
        return -1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

/* The worker: takes each connection from the server, reads it to EOF. */
static void work(int via, int status, int n, int close_it) {
    for (int i = 0; i < n; i++) {
        int fd = recv_fd(via);
        if (fd < 0) {
            _exit(7);
        }
        drain(fd);
        if (close_it) {
            close(fd); /* @worker-close */
        }
        tell(status, 'k');
    }
    for (;;) {
        pause();
    }
}

static void pass(const char *mode, int lfd, int status, int n) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp)) {
        _exit(8);
    }
    int keep = strcmp(mode, "pass-send") == 0;
    int lost = strcmp(mode, "pass-lost") == 0;
    if (fork() == 0) { /* @worker-fork */
        close(sp[0]);
        close(lfd);
        while (lost) {
            pause();
        }
        work(sp[1], status, n, keep);
    }
    close(sp[1]);
    for (int i = 0; i < n; i++) {
        int fd = take(lfd, 1);
        if (fd < 0) {
            _exit(4);
        }
        send_fd(sp[0], fd);
        if (!keep) {
            close(fd); /* @sender-close */
        }
        if (lost) {
            tell(status, 'k');
        }
    }
    for (;;) {
        pause();
    }
}

static void serve(const char *mode, int lfd, int status, int n) {
    if (strncmp(mode, "pass-", 5) == 0) {
        pass(mode, lfd, status, n);
    }
    if (strcmp(mode, "getfd") == 0) {
        getfd(lfd, status, n);
    }
    if (strcmp(mode, "connect") == 0) {
        dial(status, n);
    }
    if (strcmp(mode, "thread") == 0) {
        threaded(lfd, status, n);
    }
    int setfd = strcmp(mode, "setfd") == 0;
    for (int i = 0; i < n; i++) {
        int fd = take(lfd, strcmp(mode, "spawn") == 0 || setfd);
        if (fd < 0) {
            _exit(4);
        }
        if (setfd && fcntl(fd, F_SETFD, 0)) { /* @setfd */
            _exit(11);
        }
        if (strcmp(mode, "fork") == 0) {
            pid_t pid = fork(); /* @fork */
            if (pid == 0) {
                drain(fd);
                close(fd); /* @child-close */
                tell(status, 'k');
                _exit(0);
            }
        } else if (strcmp(mode, "exec") == 0 || setfd) {
            pid_t pid = fork(); /* @exec-fork */
            if (pid == 0) {
                execl("/bin/sleep", "sleep", "600", (char *)NULL); /* @execl */
                _exit(5);
            }
            close(fd);
            tell(status, 'k');
        } else if (strcmp(mode, "dup") == 0) {
            int copy = dup(fd); /* @dup */
            drain(fd);
            close(fd);
            (void)copy;
            tell(status, 'k');
        } else if (strcmp(mode, "spawn") == 0) {
            pid_t pid = fork(); /* @spawn-fork */
            if (pid == 0) {
                execl("/bin/true", "true", (char *)NULL);
                _exit(5);
            }
            waitpid(pid, NULL, 0);
            drain(fd);
            tell(status, 'k');
        } else {
            drain(fd);
            tell(status, 'k');
        }
    }
    for (;;) {
        pause();
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: leaky_server fork|exec|dup|never|spawn|pass-recv|pass-send|pass-lost|setfd|getfd|connect|thread PIDFILE [N]\n");
        return 2;
    }
    const char *mode = argv[1];
    int n = argc > 3 ? atoi(argv[3]) : 2;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* @socket */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 16) ||
        getsockname(lfd, (struct sockaddr *)&a, &len)) {
        perror("listen");
        return 1;
    }
    int st[2];
    if (pipe2(st, O_CLOEXEC)) {
        return 1;
    }
    front = a;
    signal(SIGCHLD, SIG_IGN);
    pid_t server = fork();
    if (server == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        close(null);
        close(st[0]);
        serve(mode, lfd, st[1], n);
    }
    close(st[1]);
    FILE *pf = fopen(argv[2], "w");
    if (!pf || fprintf(pf, "%d\n", (int)server) < 0 || fclose(pf)) {
        return 1;
    }
    int dialed = strcmp(mode, "connect") == 0;
    for (int i = 0; i < n; i++) {
        /* connect mode: the server dials; the front accepts and closes. */
        int c = dialed ? accept(lfd, NULL, NULL) : socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || (!dialed && connect(c, (struct sockaddr *)&a, sizeof a))) {
            perror("connect");
            return 1;
        }
        close(c);
        char ok;
        if (read(st[0], &ok, 1) != 1) {
            return 1;
        }
    }
    printf("port %d server %d\n", ntohs(a.sin_port), (int)server);
    return 0;
}
