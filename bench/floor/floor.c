/*
 * floor: the least work that answers "which TCP sockets are held by which
 * process", as a baseline for cwleak's benchmark (bench/run.sh).
 *
 *   floor [-c]
 *
 * 1. Every /proc/PID/fd entry is read with readlink(2); "socket:[INODE]"
 *    inodes go into a hash set (one per fd, so a socket held twice counts
 *    twice in socket_fds).
 * 2. Every TCP socket of the current network namespace, IPv4 then IPv6, is
 *    dumped over NETLINK_SOCK_DIAG (inet_diag_req_v2); with -c the kernel is
 *    asked for CLOSE_WAIT only.
 * 3. The two are joined on the inode: a socket is "held" when some fd refers
 *    to it.
 *
 * It prints one line of counts. Single-threaded, no diagnosis, no output
 * per socket: cwleak does all of that and more, so this is a floor, not a
 * rival. Build: cc -O2 -o floor floor.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCP_CLOSE_WAIT 8

/* An open-addressing set of socket inodes (0 is the empty slot). */
static uint64_t *set;
static size_t set_cap, set_len;

static size_t slot(uint64_t ino)
{
	uint64_t h = ino * 0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 17) & (set_cap - 1);
}

static void set_add(uint64_t ino);

static void set_grow(void)
{
	uint64_t *old = set;
	size_t old_cap = set_cap;
	set_cap = set_cap ? set_cap * 2 : 1 << 16;
	set = calloc(set_cap, sizeof *set);
	if (!set) {
		perror("floor: calloc");
		exit(2);
	}
	set_len = 0;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i])
			set_add(old[i]);
	free(old);
}

static void set_add(uint64_t ino)
{
	if ((set_len + 1) * 2 > set_cap)
		set_grow();
	size_t i = slot(ino);
	while (set[i]) {
		if (set[i] == ino)
			return;
		i = (i + 1) & (set_cap - 1);
	}
	set[i] = ino;
	set_len++;
}

static int set_has(uint64_t ino)
{
	if (!set_cap)
		return 0;
	size_t i = slot(ino);
	while (set[i]) {
		if (set[i] == ino)
			return 1;
		i = (i + 1) & (set_cap - 1);
	}
	return 0;
}

static unsigned long procs, fds, socket_fds, unreadable;

/* Step 1: readlink every /proc/PID/fd entry. */
static void walk_fds(void)
{
	DIR *proc = opendir("/proc");
	if (!proc) {
		perror("floor: /proc");
		exit(2);
	}
	struct dirent *p;
	while ((p = readdir(proc))) {
		if (p->d_name[0] < '0' || p->d_name[0] > '9')
			continue;
		char path[300];
		snprintf(path, sizeof path, "/proc/%s/fd", p->d_name);
		int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			unreadable++;
			continue;
		}
		DIR *fdd = fdopendir(dfd);
		if (!fdd) {
			close(dfd);
			unreadable++;
			continue;
		}
		procs++;
		struct dirent *f;
		while ((f = readdir(fdd))) {
			if (f->d_name[0] == '.')
				continue;
			char link[64];
			ssize_t n = readlinkat(dfd, f->d_name, link, sizeof link - 1);
			if (n < 0)
				continue;
			link[n] = 0;
			fds++;
			if (strncmp(link, "socket:[", 8) == 0) {
				socket_fds++;
				set_add(strtoull(link + 8, NULL, 10));
			}
		}
		closedir(fdd);
	}
	closedir(proc);
}

static unsigned long tcp, close_wait, held, close_wait_held;

/* Step 2 and 3: dump one family's TCP sockets and join each on its inode. */
static void dump(int family, uint32_t states)
{
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0) {
		perror("floor: netlink socket");
		exit(2);
	}
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg;
	memset(&msg, 0, sizeof msg);
	msg.nlh.nlmsg_len = sizeof msg;
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	msg.req.sdiag_family = family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	msg.req.idiag_states = states;
	if (send(nl, &msg, sizeof msg, 0) < 0) {
		perror("floor: netlink send");
		exit(2);
	}
	static char buf[1 << 16];
	for (;;) {
		ssize_t n = recv(nl, buf, sizeof buf, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("floor: netlink recv");
			exit(2);
		}
		struct nlmsghdr *h = (struct nlmsghdr *)buf;
		for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				close(nl);
				return;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);
				fprintf(stderr, "floor: sock_diag: %s\n", strerror(-e->error));
				exit(2);
			}
			struct inet_diag_msg *d = NLMSG_DATA(h);
			int is_held = set_has(d->idiag_inode);
			tcp++;
			held += is_held;
			if (d->idiag_state == TCP_CLOSE_WAIT) {
				close_wait++;
				close_wait_held += is_held;
			}
		}
	}
}

int main(int argc, char **argv)
{
	uint32_t states = ~0u;
	if (argc == 2 && strcmp(argv[1], "-c") == 0)
		states = 1u << TCP_CLOSE_WAIT;
	else if (argc != 1) {
		fprintf(stderr, "usage: floor [-c]\n");
		return 2;
	}
	walk_fds();
	dump(AF_INET, states);
	dump(AF_INET6, states);
	printf("procs=%lu unreadable=%lu fds=%lu socket_fds=%lu socket_inodes=%zu "
	       "tcp_sockets=%lu held=%lu close_wait=%lu close_wait_held=%lu\n",
	       procs, unreadable, fds, socket_fds, set_len, tcp, held, close_wait,
	       close_wait_held);
	return 0;
}
