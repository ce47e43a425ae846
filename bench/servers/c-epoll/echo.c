/*
 * c-epoll: the benchmark's limit. An echo server of refserver's design written in C, with no
 * runtime at all: a thread per loop, each with an SO_REUSEPORT listener of its own and an
 * epoll instance, level-triggered; one 64 KiB read buffer per thread; output kept per
 * descriptor only when the socket is full, and reading stopped meanwhile (backpressure);
 * TCP_NODELAY on every connection, as refserver sets it. What refserver spends beyond this
 * server is what its Go and its design around the system calls cost.
 *
 *	cc -O2 -pthread -o bench/bin/c-epoll bench/servers/c-epoll/echo.c
 *	bench/bin/c-epoll -addr 127.0.0.1:0 -loops 2
 *
 * It takes the flags every benchmark server takes (-cpuprofile and -memprofile are accepted
 * and ignored: there is no Go profiler here) and prints the same "listening on ADDR" line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { READ_BUF = 64 << 10, EVENTS = 256, ACCEPT_BATCH = 64 };

/* What a connection keeps: only the output its socket had no room for. */
struct conn {
	char *out;
	size_t len, off;
};

static struct conn *conns; /* by descriptor; each belongs to the one thread that accepted it */
static size_t nconns;

struct loop {
	int listener, epfd;
	pthread_t thread;
};

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void watch(int epfd, int op, int fd, unsigned events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};
	if (epoll_ctl(epfd, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL)
		perror("epoll_ctl");
}

static void end(int fd)
{
	free(conns[fd].out);
	conns[fd] = (struct conn){0};
	close(fd); /* also leaves the epoll set: no other descriptor refers to the socket */
}

/* send_some writes until p is sent or the socket is full (EAGAIN), and returns what went, or -1. */
static ssize_t send_some(int fd, const char *p, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t m = write(fd, p + done, n - done);
		if (m < 0 && errno == EINTR)
			continue;
		if (m < 0 && errno == EAGAIN)
			break;
		if (m < 0)
			return -1; /* EPIPE, ECONNRESET: the peer is gone (SIGPIPE is ignored) */
		done += (size_t)m;
	}
	return (ssize_t)done;
}

static void readable(struct loop *l, int fd, char *buf)
{
	ssize_t n = read(fd, buf, READ_BUF);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) { /* 0: the peer's FIN, nothing owed (reading stops while output waits) */
		end(fd);
		return;
	}
	ssize_t sent = send_some(fd, buf, (size_t)n);
	if (sent < 0) {
		end(fd);
		return;
	}
	if (sent < n) { /* the socket is full: keep the rest, wait for room, read no more */
		struct conn *c = &conns[fd];
		c->len = (size_t)(n - sent);
		c->off = 0;
		c->out = malloc(c->len);
		if (!c->out)
			die("malloc");
		memcpy(c->out, buf + sent, c->len);
		watch(l->epfd, EPOLL_CTL_MOD, fd, EPOLLOUT);
	}
}

static void writable(struct loop *l, int fd)
{
	struct conn *c = &conns[fd];
	ssize_t sent = send_some(fd, c->out + c->off, c->len - c->off);
	if (sent < 0) {
		end(fd);
		return;
	}
	c->off += (size_t)sent;
	if (c->off == c->len) { /* all sent: drop the buffer, read again */
		free(c->out);
		*c = (struct conn){0};
		watch(l->epfd, EPOLL_CTL_MOD, fd, EPOLLIN);
	}
}

static void accept_queued(struct loop *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(l->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN: the queue is empty; EMFILE and the rest: try at the next wake-up */
		if ((size_t)fd >= nconns) {
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		watch(l->epfd, EPOLL_CTL_ADD, fd, EPOLLIN);
	}
}

static void *run(void *arg)
{
	struct loop *l = arg;
	char *buf = malloc(READ_BUF);
	struct epoll_event events[EVENTS];
	if (!buf)
		die("malloc");
	for (;;) {
		int n = epoll_wait(l->epfd, events, EVENTS, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;
			if (fd == l->listener)
				accept_queued(l);
			else if (conns[fd].out)
				writable(l, fd);
			else
				readable(l, fd, buf);
		}
	}
	return NULL;
}

/* listener opens one SO_REUSEPORT listener on addr (port 0: the kernel picks, and the later
 * listeners join the port the first one got). */
static int listener(struct sockaddr_in *addr)
{
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
		die("setsockopt");
	if (bind(fd, (struct sockaddr *)addr, sizeof *addr) < 0)
		die("bind");
	if (listen(fd, SOMAXCONN) < 0)
		die("listen");
	socklen_t len = sizeof *addr;
	if (getsockname(fd, (struct sockaddr *)addr, &len) < 0)
		die("getsockname");
	return fd;
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1:0";
	int nloops = (int)sysconf(_SC_NPROCESSORS_ONLN);
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-addr"))
			addr = argv[i + 1];
		else if (!strcmp(argv[i], "-loops") && atoi(argv[i + 1]) > 0)
			nloops = atoi(argv[i + 1]);
	}
	char host[64];
	const char *colon = strrchr(addr, ':');
	if (!colon || (size_t)(colon - addr) >= sizeof host) {
		fprintf(stderr, "c-epoll: -addr %s: want an IPv4 address and port\n", addr);
		return 2;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = 0;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "c-epoll: -addr %s: want an IPv4 address and port\n", addr);
		return 2;
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit");
	nconns = rl.rlim_cur;
	conns = calloc(nconns, sizeof *conns); /* untouched pages are not resident: no idle cost */
	if (!conns)
		die("calloc");
	struct sigaction ign = {.sa_handler = SIG_IGN};
	sigaction(SIGPIPE, &ign, NULL);

	struct loop *loops = calloc((size_t)nloops, sizeof *loops);
	for (int i = 0; i < nloops; i++) {
		loops[i].listener = listener(&sa);
		if ((loops[i].epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
			die("epoll_create1");
		watch(loops[i].epfd, EPOLL_CTL_ADD, loops[i].listener, EPOLLIN);
	}
	char shown[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sa.sin_addr, shown, sizeof shown);
	printf("listening on %s:%d (pid %d, %d threads)\n", shown, ntohs(sa.sin_port), (int)getpid(), nloops);
	fflush(stdout);
	for (int i = 0; i < nloops; i++)
		if (pthread_create(&loops[i].thread, NULL, run, &loops[i]) != 0)
			die("pthread_create");
	pthread_join(loops[0].thread, NULL);
	return 0;
}
