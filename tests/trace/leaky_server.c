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
 * The lines the tests look for are marked with @name comments.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static void serve(const char *mode, int lfd, int status, int n) {
    for (int i = 0; i < n; i++) {
        int fd = take(lfd, strcmp(mode, "spawn") == 0);
        if (fd < 0) {
            _exit(4);
        }
        if (strcmp(mode, "fork") == 0) {
            pid_t pid = fork(); /* @fork */
            if (pid == 0) {
                drain(fd);
                close(fd); /* @child-close */
                tell(status, 'k');
                _exit(0);
            }
        } else if (strcmp(mode, "exec") == 0) {
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
        fprintf(stderr, "usage: leaky_server fork|exec|dup|never|spawn PIDFILE [N]\n");
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
    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a)) {
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
