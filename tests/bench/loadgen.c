/*
 * loadgen: the load generator of `make bench`, and the targets it talks to.
 * One thread and one epoll loop per process, libc only. `loadgen target`
 * runs the echo, sink and source services in a process of its own (pinned
 * by the caller), so the far end is never what is measured; the client
 * modes reach the target directly, or through a SOCKS5 proxy (no auth,
 * RFC 1928) when --proxy is given. The proxy's CPU time, RSS and open fds
 * are read from /proc for its whole process tree, so forking proxies are
 * charged for their children too. `loadgen relay` is the reference relay
 * that run.sh sets beside the proxies: the least a single-threaded epoll
 * SOCKS5 proxy does (see its section).
 *
 * Connections through a proxy that the client closes leave TIME_WAIT
 * sockets on the proxy's side of its outbound leg, each holding a port of
 * the ephemeral range for a minute; a proxy that binds before it connects
 * (Dante) then runs out of ports when it follows another proxy's session
 * or memory run. So the session and
 * memory modes end each connection from the target instead: the echo
 * service closes once it has echoed an ECHO_QUIT byte, and the client
 * closes on the EOF that the proxy passes on.
 *
 * Output is one `metric=NAME value=V unit=U` line per result on stdout;
 * problems go to stderr and make the exit status non-zero. Scheduling,
 * rounds and the table are left to run.sh. Build with -D_GNU_SOURCE, as
 * the daemon is.
 */
#include <arpa/inet.h>
#include <crypt.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BIG_CHUNK (256 * 1024) /* bytes per read/write in the bulk paths */
#define ECHO_LEN 64            /* payload of sessions, latency and memory */
#define ECHO_QUIT 0xff         /* echoed, then the echo target closes */
#define MAX_EVENTS 256
#define SRC_ADDRS 64 /* client source addresses 127.0.0.2..65, see cli_open */

#define SOCKS_VERSION 5
#define SOCKS_METHOD_NONE 0
#define SOCKS_METHOD_PASSWORD 2
#define SOCKS_AUTH_VERSION 1 /* RFC 1929 */
#define SOCKS_CMD_CONNECT 1
#define SOCKS_CMD_UDP_ASSOCIATE 3
#define SOCKS_ATYP_IPV4 1
#define SOCKS_ATYP_DOMAIN 3
#define SOCKS_ATYP_IPV6 4
#define SOCKS_REP_SUCCEEDED 0

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* Something with an fd in the epoll set; epoll's data.ptr points here. */
struct watcher {
	int fd;
	void (*cb)(struct watcher *w, uint32_t events);
};

static int ep = -1;
static char big_buf[BIG_CHUNK]; /* shared scratch: contents never matter */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage(void) __attribute__((noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double
secs_since(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e9;
}

static void
metric(const char *name, double value, const char *unit)
{
	printf("metric=%s value=%.6g unit=%s\n", name, value, unit);
	fflush(stdout);
}

/* metric() with prefix + name as the name. */
static void
metric_p(const char *prefix, const char *name, double value, const char *unit)
{
	char full[64];

	snprintf(full, sizeof(full), "%s%s", prefix, name);
	metric(full, value, unit);
}

/* Every mode wants as many fds as it may have: the memory mode sizes
 * itself from what this returns. */
static rlim_t
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit: %s", strerror(errno));
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			die("setrlimit: %s", strerror(errno));
	}
	return rl.rlim_cur;
}

static void
watch(struct watcher *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, w->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
}

/* Closing drops the fd from the epoll set too; events of this batch for a
 * closed watcher are skipped by the callers through their own state. */
static void
watcher_close(struct watcher *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
}

/* Runs one epoll_wait and dispatches. Waits at most `ms`. */
static void
loop_once(int ms)
{
	struct epoll_event evs[MAX_EVENTS];
	int n = epoll_wait(ep, evs, MAX_EVENTS, ms);

	if (n < 0 && errno != EINTR)
		die("epoll_wait: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		struct watcher *w = evs[i].data.ptr;
		if (w->fd >= 0)
			w->cb(w, evs[i].events);
	}
}

static void
parse_addr(const char *s, struct sockaddr_in *sin)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		die("bad address '%s' (want IPV4:PORT)", s);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	port = strtol(colon + 1, &end, 10);
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	if (*end || port < 1 || port > 65535 || inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		die("bad address '%s' (want IPV4:PORT)", s);
}

static void
set_nodelay(int fd)
{
	int one = 1;

	/* Small messages are the point of the echo modes: no Nagle delays. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ------------------------------------------------------------------------
 * /proc accounting of the proxy's process tree
 */

struct proc_sample {
	double cpu_s; /* utime+stime (+ reaped children) over the tree */
	long rss_kib; /* VmRSS summed over the tree */
	long pss_kib; /* Pss summed: shared pages counted once in all */
	long fds;     /* entries of /proc/PID/fd summed */
	int nprocs;
};

/* Reads "pid (comm) state ppid ..." and the CPU fields. comm may hold
 * spaces and parentheses, so parsing starts after the last ')'. */
static int
read_stat(int pid, int *ppid, double *cpu_s)
{
	char path[64], line[1024], *p, *save = NULL;
	double ticks = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (!(f = fopen(path, "re")))
		return -1;
	p = fgets(line, sizeof(line), f);
	fclose(f);
	if (!p || !(p = strrchr(line, ')')))
		return -1;
	/* Fields after comm, numbered as in proc(5): 3 state, 4 ppid, 14
	 * utime, 15 stime, 16 cutime, 17 cstime. Reaped children's time
	 * lands in cutime/cstime of their parent, so a forking proxy's
	 * finished workers stay counted. */
	p = strtok_r(p + 1, " ", &save);
	for (int field = 3; p && field <= 17; field++, p = strtok_r(NULL, " ", &save)) {
		if (field == 4)
			*ppid = (int)strtol(p, NULL, 10);
		else if (field >= 14)
			ticks += strtod(p, NULL);
	}
	if (!p)
		return -1;
	*cpu_s = ticks / (double)sysconf(_SC_CLK_TCK);
	return 0;
}

static long
read_kib_field(const char *path, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	long v = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0) {
			v = strtol(line + klen, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static long
count_fds(int pid)
{
	char path[64];
	struct dirent *de;
	long n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	if (!(d = opendir(path)))
		return 0;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Samples `root` and every descendant. With `full` false only the CPU
 * times are read (cheap enough to bracket a measurement tightly). */
static void
proc_sample(int root, bool full, struct proc_sample *s)
{
	int *pids = NULL, *ppids = NULL, *tree = NULL;
	size_t n = 0, cap = 0, ntree = 0;
	struct dirent *de;
	DIR *d;

	memset(s, 0, sizeof(*s));
	if (root <= 0)
		return;
	if (!(d = opendir("/proc")))
		die("opendir /proc: %s", strerror(errno));
	while ((de = readdir(d))) {
		int pid, ppid;
		double cpu;
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (int)strtol(de->d_name, NULL, 10);
		if (read_stat(pid, &ppid, &cpu) < 0)
			continue;
		if (n == cap) {
			int *np, *npp;
			cap = cap ? cap * 2 : 256;
			np = realloc(pids, cap * sizeof(*pids));
			npp = np ? realloc(ppids, cap * sizeof(*ppids)) : NULL;
			if (!np || !npp)
				die("out of memory"); /* exits: nothing to free */
			pids = np;
			ppids = npp;
		}
		pids[n] = pid;
		ppids[n] = ppid;
		n++;
	}
	closedir(d);
	if (!(tree = malloc((n + 1) * sizeof(*tree))))
		die("out of memory");
	tree[ntree++] = root;
	/* Breadth-first over the parent links: the tree is small. */
	for (size_t i = 0; i < ntree; i++)
		for (size_t j = 0; j < n; j++)
			if (ppids[j] == tree[i] && pids[j] != root)
				tree[ntree++] = pids[j];
	for (size_t i = 0; i < ntree; i++) {
		char path[64];
		int ppid;
		double cpu;
		if (read_stat(tree[i], &ppid, &cpu) < 0)
			continue; /* exited in between */
		s->cpu_s += cpu;
		s->nprocs++;
		if (!full)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/status", tree[i]);
		s->rss_kib += read_kib_field(path, "VmRSS:");
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", tree[i]);
		s->pss_kib += read_kib_field(path, "Pss:");
		s->fds += count_fds(tree[i]);
	}
	free(pids);
	free(ppids);
	free(tree);
}

/* ------------------------------------------------------------------------
 * target: echo, sink and source services
 */

enum svc {
	SVC_ECHO,
	SVC_SINK,
	SVC_SOURCE,
	SVC_COUNT
};
static const char *const svc_names[SVC_COUNT] = { "echo", "sink", "source" };

struct tlisten {
	struct watcher w;
	enum svc kind;
};

struct tconn {
	struct watcher w;
	enum svc kind;
	bool quit;       /* echo: close once pend is written */
	char *pend;      /* echo bytes the peer has not taken yet */
	size_t pend_len; /* bytes at pend */
	size_t pend_off; /* of which already written */
};

static void
tconn_close(struct tconn *t)
{
	watcher_close(&t->w);
	free(t->pend);
	free(t);
}

/* Echo reads only while nothing is pending, so a slow reader holds one
 * pending chunk at most. Edge-triggered: every path runs to EAGAIN. Bytes
 * after an ECHO_QUIT are never read: the client sends none. */
static void
tconn_echo(struct tconn *t)
{
	static char buf[64 * 1024];

	for (;;) {
		ssize_t n, w;
		char *q;
		while (t->pend) {
			w = send(t->w.fd, t->pend + t->pend_off, t->pend_len - t->pend_off,
				MSG_NOSIGNAL);
			if (w < 0 && errno == EAGAIN)
				return;
			if (w < 0) {
				tconn_close(t);
				return;
			}
			t->pend_off += (size_t)w;
			if (t->pend_off == t->pend_len) {
				free(t->pend);
				t->pend = NULL;
			}
		}
		if (t->quit) {
			tconn_close(t);
			return;
		}
		n = read(t->w.fd, buf, sizeof(buf));
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			tconn_close(t);
			return;
		}
		if ((q = memchr(buf, ECHO_QUIT, (size_t)n))) {
			n = q - buf + 1;
			t->quit = true;
		}
		w = send(t->w.fd, buf, (size_t)n, MSG_NOSIGNAL);
		if (w < 0 && errno == EAGAIN)
			w = 0;
		if (w < 0) {
			tconn_close(t);
			return;
		}
		if (w < n) {
			if (!(t->pend = malloc((size_t)(n - w)))) {
				tconn_close(t);
				return;
			}
			memcpy(t->pend, buf + w, (size_t)(n - w));
			t->pend_len = (size_t)(n - w);
			t->pend_off = 0;
		}
		/* A quit with nothing pending closes on the next pass. */
	}
}

static void
tconn_sink(struct tconn *t)
{
	for (;;) {
		ssize_t n = read(t->w.fd, big_buf, sizeof(big_buf));
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			tconn_close(t);
			return;
		}
	}
}

static void
tconn_source(struct tconn *t, uint32_t events)
{
	/* The client never writes to a source: any readable event is its
	 * close, and the writes below would fail on it anyway. */
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		tconn_close(t);
		return;
	}
	for (;;) {
		ssize_t n = send(t->w.fd, big_buf, sizeof(big_buf), MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			tconn_close(t);
			return;
		}
	}
}

static void
tconn_on_io(struct watcher *w, uint32_t events)
{
	struct tconn *t = container_of(w, struct tconn, w);

	switch (t->kind) {
	case SVC_ECHO:
		tconn_echo(t);
		break;
	case SVC_SINK:
		tconn_sink(t);
		break;
	default:
		tconn_source(t, events);
		break;
	}
}

static void
tlisten_on_accept(struct watcher *w, uint32_t events)
{
	struct tlisten *l = container_of(w, struct tlisten, w);
	static bool warned;

	(void)events;
	for (;;) {
		/* Each t is owned through epoll's data.ptr once watched, which
		 * the analyzer cannot follow. */
		struct tconn *t; /* NOLINT(clang-analyzer-unix.Malloc) */
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED && !warned) {
				warned = true; /* once: EMFILE would repeat per event */
				fprintf(stderr, "loadgen target: accept: %s\n", strerror(errno));
			}
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		if (!(t = calloc(1, sizeof(*t)))) {
			close(fd);
			continue;
		}
		t->w.fd = fd;
		t->w.cb = tconn_on_io;
		t->kind = l->kind;
		if (t->kind == SVC_ECHO)
			set_nodelay(fd);
		watch(&t->w, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
	}
}

static int
listen_on(struct sockaddr_in *sin)
{
	socklen_t len = sizeof(*sin);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)sin, sizeof(*sin)) < 0 || listen(fd, SOMAXCONN) < 0 ||
		getsockname(fd, (struct sockaddr *)sin, &len) < 0)
		die("listen on port %u: %s", ntohs(sin->sin_port), strerror(errno));
	return fd;
}

/* The UDP echo: each datagram back to its sender, unchanged, read and
 * written in batches (recvmmsg, sendmmsg) so that the far end costs as
 * little as it can. Datagrams over UECHO_SLOT bytes come back cut (the
 * client counts them malformed): the bench sends at most 1,210. A batch the
 * socket cannot take now is dropped, as UDP may; the client counts it lost. */
#define UECHO_BATCH 64
#define UECHO_SLOT 2048

static void
uecho_on_io(struct watcher *w, uint32_t events)
{
	static char bufs[UECHO_BATCH][UECHO_SLOT];
	static struct sockaddr_storage names[UECHO_BATCH];
	struct mmsghdr m[UECHO_BATCH];
	struct iovec iov[UECHO_BATCH];
	int n, done;

	(void)events;
	do {
		memset(m, 0, sizeof(m));
		for (int i = 0; i < UECHO_BATCH; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = UECHO_SLOT;
			m[i].msg_hdr.msg_name = &names[i];
			m[i].msg_hdr.msg_namelen = sizeof(names[i]);
			m[i].msg_hdr.msg_iov = &iov[i];
			m[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(w->fd, m, UECHO_BATCH, MSG_DONTWAIT, NULL);
		for (int i = 0; i < n; i++)
			iov[i].iov_len = m[i].msg_len;
		for (done = 0; done < n;) {
			int k = sendmmsg(w->fd, m + done, (unsigned)(n - done), MSG_DONTWAIT);
			done += k > 0 ? k : 1; /* an error: that one is lost */
		}
	} while (n == UECHO_BATCH);
}

/* A UDP socket bound to *sin (port 0: any; *sin gets the port). Its
 * receive buffer holds what every flow may have in flight at once (the
 * echo serves them all): the default 208 KiB drops datagrams at 32 flows
 * of 8 x 1,200 bytes before any proxy is involved. As root the system's
 * rmem_max does not cap it (SO_RCVBUFFORCE). */
static int
udp_bound_on(struct sockaddr_in *sin)
{
	socklen_t len = sizeof(*sin);
	int size = 8 << 20;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (fd < 0 || bind(fd, (struct sockaddr *)sin, sizeof(*sin)) < 0 ||
		getsockname(fd, (struct sockaddr *)sin, &len) < 0)
		die("udp socket on port %u: %s", ntohs(sin->sin_port), strerror(errno));
	return fd;
}

/* Prints "echo=P sink=P source=P udp=P" once listening: that line is both
 * the port assignment and the readiness signal for run.sh. */
static int
cmd_target(const char *addr, double max_seconds)
{
	struct tlisten ls[SVC_COUNT];
	struct watcher uw = { .cb = uecho_on_io };
	struct sockaddr_in usin;
	uint64_t t0 = now_ns();
	char uspec[80];

	/* The target must not outlive the run that started it. */
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		return 1;
	raise_nofile();
	for (int i = 0; i < SVC_COUNT; i++) {
		struct sockaddr_in sin;
		char spec[80];
		snprintf(spec, sizeof(spec), "%s:1", addr);
		parse_addr(spec, &sin);
		sin.sin_port = 0;
		ls[i].w.fd = listen_on(&sin);
		ls[i].w.cb = tlisten_on_accept;
		ls[i].kind = (enum svc)i;
		watch(&ls[i].w, EPOLLIN | EPOLLET);
		printf("%s%s=%u", i ? " " : "", svc_names[i], ntohs(sin.sin_port));
	}
	snprintf(uspec, sizeof(uspec), "%s:1", addr);
	parse_addr(uspec, &usin);
	usin.sin_port = 0;
	uw.fd = udp_bound_on(&usin);
	watch(&uw, EPOLLIN);
	printf(" udp=%u\n", ntohs(usin.sin_port));
	fflush(stdout);
	while (secs_since(t0) < max_seconds)
		loop_once(1000);
	return 0;
}

/* ------------------------------------------------------------------------
 * relay: the reference relay (run.sh's "refrelay"). It does the least a
 * single-threaded epoll SOCKS5 proxy has to do per connection: accept,
 * answer a no-auth greeting, read a CONNECT to an IPv4 address, connect
 * without blocking, reply with the bound address, move bytes both ways,
 * pass each FIN on, close; or a UDP ASSOCIATE (its own section below). No
 * other command or address type, no access
 * rules, timers, logging or limits, no care for hostile clients: it trusts
 * loadgen, its only client, and is never a server to run.
 *
 * Data moves through a 16 KiB buffer per direction (read/write: the cheaper
 * way for small messages), or with --data splice through a 1 MiB pipe per
 * direction, made when the direction first reads (the cheaper way for
 * bulk, as in socks5d). A direction reads only once what it read before is
 * written: the simplest rule, and on loopback the write takes all of it at
 * once. Reading while the pipe drains, as socks5d does, measured no better
 * here (32-stream upload 0.58x against 0.68-0.72x, one 5-round run each).
 */

#define RELAY_COPY_BUF (16 * 1024)
#define RELAY_PIPE_BYTES ((size_t)1 << 20)
#define RELAY_REQUEST_LEN 10 /* VER CMD RSV ATYP=IPv4 ADDR(4) PORT(2) */

struct rconn;

/* One fd of a relayed connection. */
struct rside {
	struct watcher w;
	struct rconn *c;
	int i;         /* 0: client, 1: target; also the direction it reads for */
	uint32_t mask; /* interest last given to epoll */
};

/* Bytes read from side i and not yet written to side 1 - i: in buf (the
 * handshake's leftovers, and everything when copying) or in the pipe. */
struct rdir {
	size_t inbuf, off, inpipe;
	int pipe[2];
	bool eof, shut;
	char buf[RELAY_COPY_BUF];
};

enum rstate {
	RELAY_HELLO,
	RELAY_CONNECTING,
	RELAY_RELAYING,
	RELAY_UDP /* UDP ASSOCIATE: the connection only holds the association */
};

struct urelay;

struct rconn {
	struct rside s[2];
	enum rstate state;
	bool greeted;
	struct urelay *u;   /* RELAY_UDP; freed when the rconn is reused */
	struct rconn *next; /* free list, or the list closed this batch */
	struct rdir d[2];   /* last: a reused rconn clears what is above */
};

static bool relay_splice;
static int relay_udp_gso;          /* RELAY_GSO_*: which UDP sends go as UDP_SEGMENT */
static struct rconn *relay_free;   /* reusable */
static struct rconn *relay_closed; /* reusable once the epoll batch is over */

static int urelay_start(struct rconn *c);
static void urelay_close(struct urelay *u);

/* Closing the fds also makes loop_once skip their events still in the
 * batch; the rconn is reused only after the batch (cmd_relay). */
static void
rconn_close(struct rconn *c)
{
	if (c->u)
		urelay_close(c->u);
	for (int i = 0; i < 2; i++) {
		watcher_close(&c->s[i].w);
		if (c->d[i].pipe[0] >= 0) {
			close(c->d[i].pipe[0]);
			close(c->d[i].pipe[1]);
			c->d[i].pipe[0] = c->d[i].pipe[1] = -1;
		}
	}
	c->next = relay_closed;
	relay_closed = c;
}

static int
rside_interest(struct rside *s, uint32_t mask)
{
	struct epoll_event ev = { .events = mask, .data.ptr = &s->w };

	if (mask == s->mask)
		return 0;
	s->mask = mask;
	return epoll_ctl(ep, EPOLL_CTL_MOD, s->w.fd, &ev);
}

static size_t
rdir_held(const struct rdir *d)
{
	return d->inbuf + d->inpipe;
}

/* Side i is read until its EOF while its direction holds nothing, and
 * written while the other direction holds bytes. */
static int
rconn_interest(struct rconn *c)
{
	for (int i = 0; i < 2; i++) {
		uint32_t mask = 0;
		if (!c->d[i].eof && rdir_held(&c->d[i]) == 0)
			mask |= EPOLLIN;
		if (rdir_held(&c->d[1 - i]) > 0)
			mask |= EPOLLOUT;
		if (rside_interest(&c->s[i], mask) < 0)
			return -1;
	}
	return 0;
}

/* Moves what it can from side i to side 1 - i; -1: the connection failed. */
static int
rconn_pump(struct rconn *c, int i)
{
	struct rdir *d = &c->d[i];
	int src = c->s[i].w.fd, dst = c->s[1 - i].w.fd;
	ssize_t n;

	if (!d->eof && rdir_held(d) == 0) {
		/* A pipe for each direction that carries data (32 MiB for 32
		 * streams, within the default per-user pipe budget). */
		if (relay_splice && d->pipe[0] < 0 &&
			(pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0 ||
				fcntl(d->pipe[0], F_SETPIPE_SZ, (int)RELAY_PIPE_BYTES) < 0))
			return -1;
		if (relay_splice)
			n = splice(src, NULL, d->pipe[1], NULL, RELAY_PIPE_BYTES,
				SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		else
			n = read(src, d->buf, sizeof(d->buf));
		if (n > 0 && relay_splice) {
			d->inpipe = (size_t)n;
		} else if (n > 0) {
			d->inbuf = (size_t)n;
			d->off = 0;
		} else if (n == 0) {
			d->eof = true;
		} else if (errno != EAGAIN && errno != EINTR) {
			return -1;
		}
	}
	n = 0;
	if (d->inbuf > 0) {
		n = send(dst, d->buf + d->off, d->inbuf, MSG_NOSIGNAL);
		if (n > 0) {
			d->inbuf -= (size_t)n;
			d->off += (size_t)n;
		}
	} else if (d->inpipe > 0) {
		n = splice(d->pipe[0], NULL, dst, NULL, d->inpipe,
			SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0)
			d->inpipe -= (size_t)n;
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		return -1;
	if (d->eof && rdir_held(d) == 0 && !d->shut) {
		d->shut = true;
		if (shutdown(dst, SHUT_WR) < 0)
			return -1;
	}
	return 0;
}

/* Appends what the client sent to its buffer, which holds what the
 * handshake has not consumed: 0, or -1 on an error or on EOF before the
 * request is complete. An EOF after it is passed on once relaying. */
static int
rconn_read_client(struct rconn *c)
{
	struct rdir *d = &c->d[0];
	ssize_t n = read(c->s[0].w.fd, d->buf + d->inbuf, sizeof(d->buf) - d->inbuf);

	if (n < 0)
		return errno == EAGAIN ? 0 : -1;
	if (n == 0) {
		if (c->state != RELAY_CONNECTING)
			return -1;
		d->eof = true;
	}
	d->inbuf += (size_t)n;
	/* Full or ended before the target is up (a client sending ahead):
	 * stop reading, or level-triggered epoll would report it forever. */
	if (d->eof || d->inbuf == sizeof(d->buf))
		return rside_interest(&c->s[0], 0);
	return 0;
}

/* Starts the connect a complete request asks for. */
static int
rconn_connect(struct rconn *c, const unsigned char *req)
{
	struct sockaddr_in to = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = &c->s[1].w };
	int fd;

	if (req[0] != SOCKS_VERSION || req[1] != SOCKS_CMD_CONNECT || req[3] != SOCKS_ATYP_IPV4)
		return -1; /* all that loadgen asks for */
	memcpy(&to.sin_addr, req + 4, 4);
	memcpy(&to.sin_port, req + 8, 2);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	c->s[1].w.fd = fd;
	set_nodelay(fd);
	if ((connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0 && errno != EINPROGRESS) ||
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -1;
	c->s[1].mask = EPOLLOUT;
	c->state = RELAY_CONNECTING;
	return 0;
}

/* Reads the greeting, answers it, then reads the request; what follows the
 * request stays in the buffer for the target. */
static int
rconn_hello(struct rconn *c)
{
	struct rdir *d = &c->d[0];
	unsigned char *p = (unsigned char *)d->buf;
	size_t need;

	if (rconn_read_client(c) < 0)
		return -1;
	if (!c->greeted) {
		if (d->inbuf < 2 || d->inbuf < (need = 2 + (size_t)p[1]))
			return 0;
		if (p[0] != SOCKS_VERSION || send(c->s[0].w.fd, "\5\0", 2, MSG_NOSIGNAL) != 2)
			return -1;
		c->greeted = true;
		d->inbuf -= need;
		memmove(p, p + need, d->inbuf);
	}
	if (d->inbuf < RELAY_REQUEST_LEN)
		return 0;
	if (p[1] == SOCKS_CMD_UDP_ASSOCIATE)
		return urelay_start(c);
	if (rconn_connect(c, p) < 0)
		return -1;
	d->inbuf -= RELAY_REQUEST_LEN;
	memmove(p, p + RELAY_REQUEST_LEN, d->inbuf);
	d->off = 0;
	return 0;
}

/* The target connect finished: reply, then relay both ways. */
static int
rconn_connected(struct rconn *c, uint32_t events)
{
	int err = 0;
	socklen_t len = sizeof(err);
	struct sockaddr_in bound;
	socklen_t blen = sizeof(bound);
	unsigned char reply[RELAY_REQUEST_LEN] = { SOCKS_VERSION, SOCKS_REP_SUCCEEDED, 0,
		SOCKS_ATYP_IPV4 };

	if ((events & (EPOLLERR | EPOLLHUP)) &&
		(getsockopt(c->s[1].w.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err))
		return -1;
	if (getsockname(c->s[1].w.fd, (struct sockaddr *)&bound, &blen) < 0)
		return -1;
	memcpy(reply + 4, &bound.sin_addr, 4);
	memcpy(reply + 8, &bound.sin_port, 2);
	if (send(c->s[0].w.fd, reply, sizeof(reply), MSG_NOSIGNAL) != (ssize_t)sizeof(reply))
		return -1;
	c->state = RELAY_RELAYING;
	/* A client that sent ahead and ended: its bytes and FIN go on now,
	 * as no event of its will come for them. */
	return c->d[0].eof ? rconn_pump(c, 0) : 0;
}

static void
rside_on_io(struct watcher *w, uint32_t events)
{
	struct rside *s = container_of(w, struct rside, w);
	struct rconn *c = s->c;
	int rc = 0;

	switch (c->state) {
	case RELAY_HELLO:
		if (rconn_hello(c) < 0)
			rconn_close(c);
		return;
	case RELAY_UDP:
		/* The association lasts as long as its connection: anything
		 * on it (loadgen sends nothing) or its end closes both. */
		rconn_close(c);
		return;
	case RELAY_CONNECTING:
		/* The client stays readable meanwhile: no epoll_ctl for it
		 * now, none when relaying starts. */
		if (s->i == 0) {
			if (rconn_read_client(c) < 0)
				rconn_close(c);
			return;
		}
		rc = rconn_connected(c, events);
		break;
	case RELAY_RELAYING:
		/* An error (a reset) is reported whatever the interest: with
		 * nothing left to read or write on this side, pumping would
		 * not notice it, and the loop would spin. */
		if (events & EPOLLERR)
			rc = -1;
		else if (events & (EPOLLIN | EPOLLHUP))
			rc = rconn_pump(c, s->i);
		if (rc == 0 && (events & EPOLLOUT))
			rc = rconn_pump(c, 1 - s->i);
		if (rc == 0 && c->d[0].shut && c->d[1].shut)
			rc = -1; /* both FINs passed on: done */
		break;
	}
	if (rc < 0 || rconn_interest(c) < 0)
		rconn_close(c);
}

static void
relay_on_accept(struct watcher *w, uint32_t events)
{
	(void)events;
	for (int k = 0; k < MAX_EVENTS; k++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct rconn *c = relay_free;
		if (fd < 0)
			return;
		if (c)
			relay_free = c->next;
		else if (!(c = malloc(sizeof(*c))))
			die("out of memory");
		memset(c, 0, offsetof(struct rconn, d));
		for (int i = 0; i < 2; i++) {
			c->s[i].c = c;
			c->s[i].i = i;
			c->s[i].w.fd = -1;
			c->s[i].w.cb = rside_on_io;
			c->d[i].inbuf = c->d[i].off = c->d[i].inpipe = 0;
			c->d[i].eof = c->d[i].shut = false;
			c->d[i].pipe[0] = c->d[i].pipe[1] = -1;
		}
		/* TCP_NODELAY is inherited from the listener. */
		c->s[0].w.fd = fd;
		c->s[0].mask = EPOLLIN;
		watch(&c->s[0].w, EPOLLIN);
	}
}

/* ------------------------------------------------------------------------
 * The reference relay's UDP ASSOCIATE: the least a single-threaded epoll
 * SOCKS5 UDP relay does per datagram, and the cheapest way this machine
 * offers to do it, so that its CPU per datagram is the floor the proxies
 * are measured against. One socket toward the client and one toward the
 * destinations per association; each readiness event reads up to
 * URELAY_BATCH datagrams with one recvmmsg and sends them on with one
 * sendmmsg. Both sockets are connected as soon as their peer is known (the
 * client's address from its first datagram, the destination from the
 * first header), so the kernel neither looks up a route per send nor
 * copies an address per datagram either way; a datagram to another
 * destination still goes (sendto on a connected socket), but answers only
 * come from the first. Runs of equal datagrams go as one UDP_SEGMENT send
 * as --udp-gso says: toward the client (default), both ways, or none.
 * Datagrams over URELAY_SLOT bytes are cut: loadgen sends none. No access
 * rules, no FRAG, IPv4 only, nothing counted: it trusts loadgen.
 */

#define URELAY_BATCH 32
#define URELAY_SLOT 2048
#define URELAY_HDR 10 /* RSV RSV FRAG ATYP=1 ADDR(4) PORT(2) */
#define URELAY_GSO_BYTES 60000

enum {
	RELAY_GSO_NONE,
	RELAY_GSO_CLIENT,
	RELAY_GSO_BOTH
};

struct urelay {
	struct watcher w[2]; /* 0: toward the client, 1: toward the destinations */
	bool peer_known[2];
	struct sockaddr_in peer[2]; /* what each socket is connected to */
};

static struct {
	unsigned char buf[URELAY_BATCH][URELAY_SLOT];
	struct mmsghdr in[URELAY_BATCH], out[URELAY_BATCH];
	struct iovec in_iov[URELAY_BATCH], out_iov[URELAY_BATCH];
	struct sockaddr_in from[URELAY_BATCH];
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} gso[URELAY_BATCH];
} ur;

static void
urelay_close(struct urelay *u)
{
	watcher_close(&u->w[0]);
	watcher_close(&u->w[1]);
}

/* Reads up to URELAY_BATCH datagrams from side i into the slots, each at
 * offset off (the client's: header and all at 0; the destination's at
 * URELAY_HDR, leaving room for the header in front). Returns how many. */
static int
urelay_recv(struct urelay *u, int i, size_t off)
{
	int n;

	for (int k = 0; k < URELAY_BATCH; k++) {
		ur.in_iov[k].iov_base = ur.buf[k] + off;
		ur.in_iov[k].iov_len = URELAY_SLOT - off;
		ur.in[k].msg_hdr = (struct msghdr){ .msg_iov = &ur.in_iov[k], .msg_iovlen = 1 };
		if (!u->peer_known[i]) {
			ur.in[k].msg_hdr.msg_name = &ur.from[k];
			ur.in[k].msg_hdr.msg_namelen = sizeof(ur.from[k]);
		}
	}
	n = recvmmsg(u->w[i].fd, ur.in, URELAY_BATCH, MSG_DONTWAIT, NULL);
	return n < 0 ? 0 : n;
}

/* Sends out_iov[0..n) on side i, runs of equal lengths as UDP_SEGMENT sends
 * when gso; to: NULL for the connected peer. A datagram the kernel refuses
 * is lost, as a relay would lose it. */
static void
urelay_send(struct urelay *u, int i, size_t n, bool gso, const struct sockaddr_in *to)
{
	size_t nmsg = 0, sent = 0;

	for (size_t k = 0; k < n;) {
		struct msghdr *h = &ur.out[nmsg].msg_hdr;
		size_t len = ur.out_iov[k].iov_len, run = 1, total = len;

		while (gso && k + run < n && ur.out_iov[k + run].iov_len == len &&
			total + len <= URELAY_GSO_BYTES) {
			total += len;
			run++;
		}
		*h = (struct msghdr){ .msg_iov = &ur.out_iov[k], .msg_iovlen = run };
		if (to) {
			h->msg_name = (void *)to;
			h->msg_namelen = sizeof(*to);
		}
		if (run > 1) {
			uint16_t seg = (uint16_t)len;
			struct cmsghdr *cm = &ur.gso[nmsg].align;

			h->msg_control = ur.gso[nmsg].buf;
			h->msg_controllen = sizeof(ur.gso[nmsg].buf);
			cm->cmsg_level = SOL_UDP;
			cm->cmsg_type = UDP_SEGMENT;
			cm->cmsg_len = CMSG_LEN(sizeof(seg));
			memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
		}
		nmsg++;
		k += run;
	}
	while (sent < nmsg) {
		int r = sendmmsg(u->w[i].fd, ur.out + sent, (unsigned)(nmsg - sent), MSG_DONTWAIT);
		sent += r > 0 ? (size_t)r : 1;
	}
}

/* Connects side i to *peer the first time it is known. */
static int
urelay_connect(struct urelay *u, int i, const struct sockaddr_in *peer)
{
	if (u->peer_known[i])
		return 0;
	u->peer[i] = *peer;
	u->peer_known[i] = true;
	return connect(u->w[i].fd, (const struct sockaddr *)peer, sizeof(*peer));
}

/* Client to destinations: strip each header. A batch goes to one
 * destination, its last header's: loadgen's flows each have one. */
static void
urelay_on_client(struct watcher *w, uint32_t events)
{
	struct urelay *u = container_of(w, struct urelay, w[0]);
	int n = urelay_recv(u, 0, 0);
	size_t m = 0;
	struct sockaddr_in dst = { .sin_family = AF_INET };

	(void)events;
	if (n > 0 && urelay_connect(u, 0, &ur.from[0]) < 0)
		return;
	for (int k = 0; k < n; k++) {
		const unsigned char *p = ur.buf[k];
		size_t len = ur.in[k].msg_len;

		if (len < URELAY_HDR || p[2] != 0 || p[3] != SOCKS_ATYP_IPV4)
			continue;
		memcpy(&dst.sin_addr, p + 4, 4);
		memcpy(&dst.sin_port, p + 8, 2);
		if (m == 0 && urelay_connect(u, 1, &dst) < 0)
			return;
		ur.out_iov[m].iov_base = ur.buf[k] + URELAY_HDR;
		ur.out_iov[m++].iov_len = len - URELAY_HDR;
	}
	if (m > 0)
		urelay_send(u, 1, m, relay_udp_gso == RELAY_GSO_BOTH,
			memcmp(&dst, &u->peer[1], sizeof(dst)) == 0 ? NULL : &dst);
}

/* Destination to client: the header goes in front of each payload. */
static void
urelay_on_target(struct watcher *w, uint32_t events)
{
	struct urelay *u = container_of(w, struct urelay, w[1]);
	int n = urelay_recv(u, 1, URELAY_HDR);

	(void)events;
	for (int k = 0; k < n; k++) {
		unsigned char *p = ur.buf[k];

		memset(p, 0, 3);
		p[3] = SOCKS_ATYP_IPV4;
		memcpy(p + 4, &u->peer[1].sin_addr, 4);
		memcpy(p + 8, &u->peer[1].sin_port, 2);
		ur.out_iov[k].iov_base = p;
		ur.out_iov[k].iov_len = URELAY_HDR + ur.in[k].msg_len;
	}
	if (n > 0 && u->peer_known[0])
		urelay_send(u, 0, (size_t)n, relay_udp_gso != RELAY_GSO_NONE, NULL);
}

/* A UDP socket on *sin's address and a free port (*sin gets it), with the
 * kernel's default buffers, as socks5d's association sockets have. */
static int
urelay_socket(struct sockaddr_in *sin)
{
	socklen_t len = sizeof(*sin);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)sin, sizeof(*sin)) < 0 ||
		getsockname(fd, (struct sockaddr *)sin, &len) < 0)
		die("udp relay socket: %s", strerror(errno));
	return fd;
}

/* Opens the association's two sockets and replies with the client side's
 * address; the connection then only holds the association. */
static int
urelay_start(struct rconn *c)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	unsigned char reply[RELAY_REQUEST_LEN] = { SOCKS_VERSION, SOCKS_REP_SUCCEEDED, 0,
		SOCKS_ATYP_IPV4 };
	struct urelay *u = calloc(1, sizeof(*u));

	if (!u)
		die("out of memory");
	c->u = u;
	u->w[0].cb = urelay_on_client;
	u->w[1].cb = urelay_on_target;
	u->w[0].fd = urelay_socket(&sin);
	memcpy(reply + 4, &sin.sin_addr, 4);
	memcpy(reply + 8, &sin.sin_port, 2);
	sin.sin_port = 0;
	u->w[1].fd = urelay_socket(&sin);
	watch(&u->w[0], EPOLLIN);
	watch(&u->w[1], EPOLLIN);
	c->state = RELAY_UDP;
	if (send(c->s[0].w.fd, reply, sizeof(reply), MSG_NOSIGNAL) != (ssize_t)sizeof(reply))
		return -1;
	return 0;
}

/* Listens on 127.0.0.1:port and relays until killed. */
static int
cmd_relay(int port, const char *data, const char *udp_gso)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct watcher l = { .cb = relay_on_accept };

	if (port <= 0 || port > 65535 || (strcmp(data, "copy") != 0 && strcmp(data, "splice") != 0))
		usage();
	relay_splice = data[0] == 's';
	if (strcmp(udp_gso, "none") == 0)
		relay_udp_gso = RELAY_GSO_NONE;
	else if (strcmp(udp_gso, "client") == 0)
		relay_udp_gso = RELAY_GSO_CLIENT;
	else if (strcmp(udp_gso, "both") == 0)
		relay_udp_gso = RELAY_GSO_BOTH;
	else
		usage();
	/* Like the target: it must not outlive the run that started it. */
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	raise_nofile();
	l.fd = listen_on(&sin);
	set_nodelay(l.fd);
	watch(&l, EPOLLIN);
	for (;;) {
		loop_once(-1);
		while (relay_closed) {
			struct rconn *c = relay_closed;
			relay_closed = c->next;
			free(c->u);
			c->u = NULL;
			c->next = relay_free;
			relay_free = c;
		}
	}
}

/* ------------------------------------------------------------------------
 * client connections: connect, SOCKS5 handshake, then the mode's handler
 */

enum cli_state {
	CLI_FREE,       /* slot unused */
	CLI_CONNECTING, /* nonblocking connect in progress; waits for EPOLLOUT */
	CLI_GREETING,   /* greeting sent; waits for the 2-byte method choice */
	CLI_AUTH,       /* RFC 1929 request sent; waits for the 2-byte status */
	CLI_REQUEST,    /* CONNECT sent; waits for the whole reply */
	CLI_READY,      /* relayed (or direct): the mode owns the connection */
};

struct cli {
	struct watcher w;
	enum cli_state state;
	uint8_t in[300]; /* handshake bytes received so far */
	size_t in_len;
	size_t need;     /* bytes of the reply to have before it is parsed */
	uint64_t t0;     /* when this connection or session began */
	uint64_t t_send; /* when the last echo payload left */
	size_t got;      /* echo bytes received of ECHO_LEN */
	bool quit;       /* the payload ends in ECHO_QUIT: EOF follows it */
	int phase;       /* mode-specific */
	uint8_t tag;     /* byte the echo payload is filled with */
};

struct client_cfg {
	bool use_proxy;
	struct sockaddr_in proxy;
	struct sockaddr_in target; /* address of the service this mode uses */
	int proxy_pid;
	const char *user, *pass; /* RFC 1929 credentials, or NULL: no authentication */
	const char *prefix;      /* of the sessions mode's metric names, or NULL */
	void (*on_ready)(struct cli *c);
	void (*on_io)(struct cli *c, uint32_t events);
	void (*on_fail)(struct cli *c, const char *why);
};

static struct client_cfg cfg;
static unsigned src_seq;

static void cli_on_io(struct watcher *w, uint32_t events);

static void
cli_close(struct cli *c)
{
	watcher_close(&c->w);
	c->state = CLI_FREE;
}

static void
cli_fail(struct cli *c, const char *why)
{
	cli_close(c);
	cfg.on_fail(c, why);
}

/* Opens one connection. Each comes from one of SRC_ADDRS loopback
 * addresses (port chosen at connect time, IP_BIND_ADDRESS_NO_PORT), so the
 * session mode's closed connections in TIME_WAIT do not run the client out
 * of ephemeral ports towards a single proxy address. */
static void
cli_open(struct cli *c)
{
	const struct sockaddr_in *to = cfg.use_proxy ? &cfg.proxy : &cfg.target;
	struct sockaddr_in src = { .sin_family = AF_INET };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	/* phase and tag belong to the mode and survive a reopen. */
	c->w.fd = -1;
	c->state = CLI_FREE;
	c->in_len = 0;
	c->need = 0;
	c->got = 0;
	c->t0 = now_ns();
	if (fd < 0) {
		cli_fail(c, "socket");
		return;
	}
	c->w.fd = fd;
	c->w.cb = cli_on_io;
	src.sin_addr.s_addr = htonl(0x7f000002u + src_seq++ % SRC_ADDRS);
	(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		cli_fail(c, "bind");
		return;
	}
	set_nodelay(fd);
	if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) < 0 && errno != EINPROGRESS) {
		cli_fail(c, "connect");
		return;
	}
	c->state = CLI_CONNECTING;
	watch(&c->w, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

/* Handshake messages are tiny and each is the first unacknowledged data on
 * its socket, so a short write means the connection is broken. */
static bool
cli_send_all(struct cli *c, const void *p, size_t len)
{
	return send(c->w.fd, p, len, MSG_NOSIGNAL) == (ssize_t)len;
}

/* Reads until c->need bytes are in c->in. Returns 1 when complete, 0 on
 * EAGAIN, -1 on EOF or error. Reads no further than needed, so payload the
 * proxy sends right after its reply stays in the socket for the mode. */
static int
cli_fill(struct cli *c)
{
	while (c->in_len < c->need) {
		ssize_t n = read(c->w.fd, c->in + c->in_len, c->need - c->in_len);
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		c->in_len += (size_t)n;
	}
	return 1;
}

static void
cli_ready(struct cli *c)
{
	c->state = CLI_READY;
	cfg.on_ready(c);
}

/* RFC 1929: VER ULEN UNAME PLEN PASSWD, in one segment. */
static bool
cli_send_auth(struct cli *c)
{
	uint8_t req[3 + 255 + 255];
	size_t ul = strlen(cfg.user), pl = strlen(cfg.pass), n = 0;

	req[n++] = SOCKS_AUTH_VERSION;
	req[n++] = (uint8_t)ul;
	memcpy(req + n, cfg.user, ul);
	n += ul;
	req[n++] = (uint8_t)pl;
	memcpy(req + n, cfg.pass, pl);
	n += pl;
	return cli_send_all(c, req, n);
}

static bool
cli_send_request(struct cli *c)
{
	uint8_t req[10] = { SOCKS_VERSION, SOCKS_CMD_CONNECT, 0, SOCKS_ATYP_IPV4 };

	memcpy(req + 4, &cfg.target.sin_addr, 4);
	memcpy(req + 8, &cfg.target.sin_port, 2);
	return cli_send_all(c, req, sizeof(req));
}

/* Walks the handshake as far as the bytes at hand allow (RFC 1928 §3, §4,
 * §6; RFC 1929 with --user): greeting offering one method, CONNECT to an
 * IPv4 target, reply with any address type. */
static void
cli_on_io(struct watcher *w, uint32_t events)
{
	struct cli *c = container_of(w, struct cli, w);
	int err = 0, r;
	socklen_t len = sizeof(err);

	switch (c->state) {
	case CLI_CONNECTING:
		if (getsockopt(c->w.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			cli_fail(c, "connect");
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		if (!cfg.use_proxy) {
			cli_ready(c);
			return;
		}
		{
			const uint8_t greeting[] = { SOCKS_VERSION, 1,
				cfg.user ? SOCKS_METHOD_PASSWORD : SOCKS_METHOD_NONE };
			if (!cli_send_all(c, greeting, sizeof(greeting))) {
				cli_fail(c, "send greeting");
				return;
			}
		}
		c->state = CLI_GREETING;
		c->need = 2;
		/* The choice may already be here. */
		__attribute__((fallthrough));
	case CLI_GREETING:
		if ((r = cli_fill(c)) <= 0) {
			if (r < 0)
				cli_fail(c, "greeting reply");
			return;
		}
		if (c->in[0] != SOCKS_VERSION ||
			c->in[1] != (cfg.user ? SOCKS_METHOD_PASSWORD : SOCKS_METHOD_NONE)) {
			cli_fail(c, "method refused");
			return;
		}
		if (cfg.user && !cli_send_auth(c)) {
			cli_fail(c, "send auth");
			return;
		}
		c->state = CLI_AUTH;
		c->in_len = 0;
		c->need = cfg.user ? 2 : 0;
		__attribute__((fallthrough));
	case CLI_AUTH:
		if ((r = cli_fill(c)) <= 0) {
			if (r < 0)
				cli_fail(c, "auth reply");
			return;
		}
		if (cfg.user && (c->in[0] != SOCKS_AUTH_VERSION || c->in[1] != 0)) {
			cli_fail(c, "auth refused");
			return;
		}
		if (!cli_send_request(c)) {
			cli_fail(c, "send request");
			return;
		}
		c->state = CLI_REQUEST;
		c->in_len = 0;
		c->need = 5; /* up to the domain length byte, if any */
		__attribute__((fallthrough));
	case CLI_REQUEST:
		if ((r = cli_fill(c)) <= 0) {
			if (r < 0)
				cli_fail(c, "request reply");
			return;
		}
		if (c->need == 5) {
			if (c->in[0] != SOCKS_VERSION || c->in[1] != SOCKS_REP_SUCCEEDED) {
				cli_fail(c, "request refused");
				return;
			}
			switch (c->in[3]) {
			case SOCKS_ATYP_IPV4:
				c->need = 10;
				break;
			case SOCKS_ATYP_IPV6:
				c->need = 22;
				break;
			case SOCKS_ATYP_DOMAIN:
				c->need = 7 + (size_t)c->in[4];
				break;
			default:
				cli_fail(c, "reply address type");
				return;
			}
			if ((r = cli_fill(c)) <= 0) {
				if (r < 0)
					cli_fail(c, "request reply");
				return;
			}
		}
		cli_ready(c);
		return;
	case CLI_READY:
		cfg.on_io(c, events);
		return;
	case CLI_FREE:
		return;
	}
}

/* Sends one ECHO_LEN payload filled with c->tag; with `quit` its last
 * byte is ECHO_QUIT, and the target closes after echoing it. */
static bool
cli_send_echo(struct cli *c, bool quit)
{
	uint8_t p[ECHO_LEN];

	memset(p, c->tag, sizeof(p));
	if (quit)
		p[ECHO_LEN - 1] = ECHO_QUIT;
	c->quit = quit;
	c->got = 0;
	c->t_send = now_ns();
	return cli_send_all(c, p, sizeof(p));
}

/* Reads what has come back of the payload. Returns 1 when all ECHO_LEN
 * bytes are back and right (and, after a quit, the EOF too), 0 to wait,
 * -1 on early EOF, error or wrong bytes. */
static int
cli_recv_echo(struct cli *c)
{
	uint8_t p[ECHO_LEN];
	ssize_t n;

	while (c->got < ECHO_LEN) {
		n = read(c->w.fd, p, ECHO_LEN - c->got);
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		for (ssize_t i = 0; i < n; i++) {
			size_t at = c->got + (size_t)i;
			if (p[i] != (c->quit && at == ECHO_LEN - 1 ? ECHO_QUIT : c->tag))
				return -1;
		}
		c->got += (size_t)n;
	}
	if (!c->quit)
		return 1;
	n = read(c->w.fd, p, 1);
	if (n < 0 && errno == EAGAIN)
		return 0;
	return n == 0 ? 1 : -1;
}

/* ------------------------------------------------------------------------
 * throughput: N bulk streams up (client -> sink) or down (source -> client)
 */

static struct {
	bool upload;
	int nready, nfailed;
	uint64_t bytes;
	const char *why;
} tp;

static void
tp_pump(struct cli *c)
{
	for (;;) {
		ssize_t n = tp.upload ? send(c->w.fd, big_buf, sizeof(big_buf), MSG_NOSIGNAL)
				      : read(c->w.fd, big_buf, sizeof(big_buf));
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			cli_fail(c, tp.upload ? "stream write" : "stream closed");
			return;
		}
		tp.bytes += (uint64_t)n;
	}
}

static void
tp_on_ready(struct cli *c)
{
	tp.nready++;
	/* Edge-triggered: start at once, or the first edge is lost. */
	tp_pump(c);
}

static void
tp_on_io(struct cli *c, uint32_t events)
{
	(void)events;
	tp_pump(c);
}

static void
tp_on_fail(struct cli *c, const char *why)
{
	(void)c;
	tp.nfailed++;
	tp.why = why;
}

static int
cmd_throughput(int streams, double seconds, uint64_t max_bytes, double warmup)
{
	struct cli *cs = calloc((size_t)streams, sizeof(*cs));
	struct proc_sample p0, p1;
	uint64_t t_setup = now_ns(), t0, b0, moved;
	double elapsed, gbit;
	char name[64];

	if (!cs)
		die("out of memory");
	cfg.on_ready = tp_on_ready;
	cfg.on_io = tp_on_io;
	cfg.on_fail = tp_on_fail;
	for (int i = 0; i < streams; i++)
		cli_open(&cs[i]);
	while (tp.nready + tp.nfailed < streams && secs_since(t_setup) < 10)
		loop_once(100);
	if (tp.nready < streams)
		die("throughput: %d of %d streams not established (%s)", streams - tp.nready,
			streams, tp.why ? tp.why : "timeout");
	/* Measure between two moments of steady state, so what sits in socket
	 * and proxy buffers is about the same at both ends and cancels out. */
	t0 = now_ns();
	while (secs_since(t0) < warmup)
		loop_once(10);
	proc_sample(cfg.proxy_pid, false, &p0);
	b0 = tp.bytes;
	t0 = now_ns();
	for (;;) {
		loop_once(10);
		if (tp.nfailed)
			die("throughput: a stream failed mid-run (%s)", tp.why);
		if (secs_since(t0) >= seconds || (max_bytes && tp.bytes - b0 >= max_bytes))
			break;
	}
	elapsed = secs_since(t0);
	moved = tp.bytes - b0;
	proc_sample(cfg.proxy_pid, false, &p1);
	gbit = (double)moved * 8 / elapsed / 1e9;
	snprintf(name, sizeof(name), "%s%d", tp.upload ? "upload" : "download", streams);
	metric(name, gbit, "Gbit/s");
	if (cfg.proxy_pid > 0) {
		snprintf(name, sizeof(name), "%s%d_cpu", tp.upload ? "upload" : "download",
			streams);
		metric(name, (p1.cpu_s - p0.cpu_s) / ((double)moved / 1e9), "cpu-s/GB");
	}
	for (int i = 0; i < streams; i++)
		cli_close(&cs[i]);
	free(cs);
	return 0;
}

/* ------------------------------------------------------------------------
 * session rate: workers each doing connect, handshake, one echo (after
 * which the target closes), close; a session's time runs from connect()
 * to the EOF
 */

static struct {
	bool running;                /* start new sessions when one ends */
	uint64_t win_start, win_end; /* sessions ending inside count */
	uint32_t *us;                /* durations of counted sessions, microseconds */
	size_t n, cap;
	uint64_t nfailed;
	const char *why;
} sr;

enum sr_phase {
	SR_BUSY,
	SR_RESTART
};

static void
sr_next(struct cli *c)
{
	if (sr.running)
		cli_open(c);
}

static void
sr_on_ready(struct cli *c)
{
	c->tag = (uint8_t)(0x41 + (src_seq & 0x1f));
	if (!cli_send_echo(c, true)) {
		cli_fail(c, "send payload");
		return;
	}
	/* fall into reading: the echo may be back already */
	cfg.on_io(c, 0);
}

static void
sr_on_io(struct cli *c, uint32_t events)
{
	uint64_t t;
	int r = cli_recv_echo(c);

	(void)events;
	if (r == 0)
		return;
	if (r < 0) {
		cli_fail(c, "echo");
		return;
	}
	t = now_ns();
	if (t >= sr.win_start && t < sr.win_end) {
		if (sr.n == sr.cap) {
			sr.cap = sr.cap ? sr.cap * 2 : 65536;
			if (!(sr.us = realloc(sr.us, sr.cap * sizeof(*sr.us))))
				die("out of memory");
		}
		sr.us[sr.n++] = (uint32_t)((t - c->t0) / 1000);
	}
	cli_close(c);
	sr_next(c);
}

static void
sr_on_fail(struct cli *c, const char *why)
{
	uint64_t t = now_ns();

	if (t >= sr.win_start && t < sr.win_end) {
		sr.nfailed++;
		sr.why = why;
	}
	/* Not reopened from here: a failure inside cli_open would recurse. */
	c->phase = SR_RESTART;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double
percentile(uint32_t *v, size_t n, double q)
{
	size_t i;

	if (!n)
		return 0;
	i = (size_t)(q * (double)(n - 1) + 0.5);
	return v[i];
}

static int
cmd_sessions(int workers, double seconds, double warmup)
{
	struct cli *cs = calloc((size_t)workers, sizeof(*cs));
	struct proc_sample p0 = { 0 }, p1 = { 0 };
	const char *pfx = cfg.prefix ? cfg.prefix : "";
	bool sampled = false;
	uint64_t t;

	if (!cs)
		die("out of memory");
	cfg.on_ready = sr_on_ready;
	cfg.on_io = sr_on_io;
	cfg.on_fail = sr_on_fail;
	t = now_ns();
	sr.win_start = t + (uint64_t)(warmup * 1e9);
	sr.win_end = sr.win_start + (uint64_t)(seconds * 1e9);
	sr.running = true;
	for (int i = 0; i < workers; i++)
		cli_open(&cs[i]);
	while ((t = now_ns()) < sr.win_end) {
		if (!sampled && t >= sr.win_start) {
			proc_sample(cfg.proxy_pid, false, &p0);
			sampled = true;
		}
		loop_once(1);
		for (int i = 0; i < workers; i++) {
			if (cs[i].phase == SR_RESTART) {
				cs[i].phase = SR_BUSY;
				cli_open(&cs[i]);
			}
		}
	}
	proc_sample(cfg.proxy_pid, false, &p1);
	sr.running = false;
	for (int i = 0; i < workers; i++)
		cli_close(&cs[i]);
	if (sr.nfailed)
		fprintf(stderr, "loadgen: sessions: %" PRIu64 " failed (last: %s)\n", sr.nfailed,
			sr.why);
	if (!sr.n)
		die("sessions: none completed");
	qsort(sr.us, sr.n, sizeof(*sr.us), cmp_u32);
	/* With --prefix pw: pwsessions_rate, pwsession_p50, ... */
	metric_p(pfx, "sessions_rate", (double)sr.n / seconds, "sessions/s");
	metric_p(pfx, "session_p50", percentile(sr.us, sr.n, 0.50), "us");
	metric_p(pfx, "session_p99", percentile(sr.us, sr.n, 0.99), "us");
	if (cfg.proxy_pid > 0)
		metric_p(pfx, "session_cpu", (p1.cpu_s - p0.cpu_s) * 1e6 / (double)sr.n,
			"cpu-us/session");
	metric_p(pfx, "session_failed", (double)sr.nfailed, "sessions");
	free(cs);
	return sr.nfailed ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * latency: ECHO_LEN-byte ping-pong on one relayed connection
 */

static struct {
	uint32_t *ns; /* round trips, nanoseconds */
	size_t n, want, skip;
	bool done, failed;
	const char *why;
} lt;

static void
lt_ping(struct cli *c)
{
	/* Tags stay clear of ECHO_QUIT: this connection lives on. */
	c->tag = (uint8_t)(c->tag % 0x7f + 1);
	if (!cli_send_echo(c, false))
		cli_fail(c, "send");
}

static void
lt_on_ready(struct cli *c)
{
	lt_ping(c);
}

static void
lt_on_io(struct cli *c, uint32_t events)
{
	(void)events;
	for (;;) {
		int r = cli_recv_echo(c);
		if (r == 0)
			return;
		if (r < 0) {
			cli_fail(c, "echo");
			return;
		}
		/* The first round trips warm caches and the proxy's allocator. */
		if (lt.skip)
			lt.skip--;
		else
			lt.ns[lt.n++] = (uint32_t)(now_ns() - c->t_send);
		if (lt.n == lt.want) {
			lt.done = true;
			return;
		}
		lt_ping(c);
		if (c->state != CLI_READY)
			return;
	}
}

static void
lt_on_fail(struct cli *c, const char *why)
{
	(void)c;
	lt.failed = true;
	lt.why = why;
}

static int
cmd_latency(size_t count, double max_seconds)
{
	struct cli c;
	uint64_t t0 = now_ns();

	cfg.on_ready = lt_on_ready;
	cfg.on_io = lt_on_io;
	cfg.on_fail = lt_on_fail;
	lt.want = count;
	lt.skip = count / 20 < 200 ? count / 20 : 200;
	if (!(lt.ns = calloc(count, sizeof(*lt.ns))))
		die("out of memory");
	cli_open(&c);
	while (!lt.done && !lt.failed && secs_since(t0) < max_seconds)
		loop_once(100);
	if (lt.failed)
		die("latency: connection failed (%s)", lt.why);
	if (lt.n < 2)
		die("latency: no round trips in %.0f s", max_seconds);
	if (!lt.done)
		fprintf(stderr, "loadgen: latency: %zu of %zu round trips in the time limit\n",
			lt.n, count);
	qsort(lt.ns, lt.n, sizeof(*lt.ns), cmp_u32);
	metric("latency_p50", percentile(lt.ns, lt.n, 0.50) / 1000, "us");
	metric("latency_p99", percentile(lt.ns, lt.n, 0.99) / 1000, "us");
	cli_close(&c);
	return 0;
}

/* ------------------------------------------------------------------------
 * memory: hold K idle relayed connections, each checked with one echo
 */

enum mem_phase {
	MEM_OPENING,
	MEM_IDLE,
	MEM_VERIFY,
	MEM_ANSWERED,
	MEM_DEAD
};

static struct {
	int nidle, nanswered, ndead, inflight;
	const char *why;
} mm;

static void
mm_on_ready(struct cli *c)
{
	c->phase = MEM_OPENING;
	c->tag = 0x5a;
	if (!cli_send_echo(c, false)) {
		cli_fail(c, "send");
		return;
	}
	cfg.on_io(c, 0);
}

static void
mm_on_io(struct cli *c, uint32_t events)
{
	int r;

	(void)events;
	if (c->phase == MEM_IDLE) {
		/* Nothing is expected here but the proxy closing on us. */
		char b[16];
		ssize_t n = read(c->w.fd, b, sizeof(b));
		if (n < 0 && errno == EAGAIN)
			return;
		cli_fail(c, n == 0 ? "closed while idle" : "data or error while idle");
		return;
	}
	if ((r = cli_recv_echo(c)) == 0)
		return;
	if (r < 0) {
		cli_fail(c, "echo");
		return;
	}
	if (c->phase == MEM_OPENING) {
		c->phase = MEM_IDLE;
		mm.nidle++;
		mm.inflight--;
	} else {
		/* Answered, and closed by the target: done with it. */
		c->phase = MEM_ANSWERED;
		mm.nanswered++;
		cli_close(c);
	}
}

static void
mm_on_fail(struct cli *c, const char *why)
{
	if (c->phase == MEM_IDLE)
		mm.nidle--;
	else if (c->phase == MEM_OPENING)
		mm.inflight--;
	c->phase = MEM_DEAD;
	mm.ndead++;
	mm.why = why;
}

static int
cmd_memory(long k, double max_seconds, int concurrency)
{
	struct proc_sample p0, p1;
	rlim_t lim = raise_nofile();
	struct cli *cs;
	long next = 0;
	uint64_t t0;
	int rc = 0;

	/* The proxy holds 2K fds and this process and the target K each, all
	 * under the same hard limit; keep a margin for listeners and stdio. */
	if (k <= 0)
		k = ((long)lim - 200) / 2;
	if (k <= 0 || (rlim_t)k + 50 > lim)
		die("memory: K=%ld does not fit RLIMIT_NOFILE %lu", k, (unsigned long)lim);
	if (!(cs = calloc((size_t)k, sizeof(*cs))))
		die("out of memory");
	for (long i = 0; i < k; i++)
		cs[i].w.fd = -1;
	cfg.on_ready = mm_on_ready;
	cfg.on_io = mm_on_io;
	cfg.on_fail = mm_on_fail;
	proc_sample(cfg.proxy_pid, true, &p0);
	t0 = now_ns();
	/* A bounded number of handshakes at a time: the proxy's accept backlog
	 * must not overflow into SYN retries (1 s each). */
	while (secs_since(t0) < max_seconds) {
		while (next < k && mm.inflight < concurrency) {
			mm.inflight++;
			cs[next].phase = MEM_OPENING;
			cli_open(&cs[next]);
			next++;
		}
		if (next == k && mm.inflight == 0)
			break;
		loop_once(100);
	}
	/* Whatever has not finished its handshake by now counts as failed,
	 * and so does what was never started. */
	mm.ndead += (int)(k - next);
	for (long i = 0; i < k; i++) {
		if (i >= next || cs[i].phase != MEM_OPENING)
			continue;
		if (cs[i].state != CLI_FREE)
			cli_fail(&cs[i], "setup timed out");
	}
	metric("mem_conns", mm.nidle, "conns");
	if (mm.nidle < k) {
		fprintf(stderr, "loadgen: memory: %ld of %ld connections not established (%s)\n",
			k - mm.nidle, k, mm.why ? mm.why : "timeout");
		rc = 1;
	}
	/* Let the proxy finish whatever the last echoes set off before it is
	 * sampled. */
	t0 = now_ns();
	while (secs_since(t0) < 0.5)
		loop_once(50);
	proc_sample(cfg.proxy_pid, true, &p1);
	if (cfg.proxy_pid > 0 && mm.nidle > 0) {
		metric("mem_rss_per_conn", (double)(p1.rss_kib - p0.rss_kib) / mm.nidle,
			"KiB/conn");
		metric("mem_pss_per_conn", (double)(p1.pss_kib - p0.pss_kib) / mm.nidle,
			"KiB/conn");
		metric("mem_fds_per_conn", (double)(p1.fds - p0.fds) / mm.nidle, "fds/conn");
		metric("mem_procs", p1.nprocs, "procs");
	}
	/* Every held connection must still relay: one more echo on each,
	 * which also has the target close it. */
	for (long i = 0; i < k; i++) {
		struct cli *c = &cs[i];
		if (c->phase != MEM_IDLE)
			continue;
		c->phase = MEM_VERIFY;
		mm.nidle--;
		c->tag = 0xa5;
		if (!cli_send_echo(c, true)) {
			cli_fail(c, "send");
			continue;
		}
		cfg.on_io(c, 0);
	}
	t0 = now_ns();
	while (mm.nanswered + mm.ndead < k && secs_since(t0) < 30)
		loop_once(100);
	metric("mem_alive", mm.nanswered, "conns");
	if (mm.nanswered < k) {
		fprintf(stderr,
			"loadgen: memory: %ld of %ld connections did not answer at the end\n",
			k - mm.nanswered, k);
		rc = 1;
	}
	for (long i = 0; i < k; i++)
		if (cs[i].state != CLI_FREE)
			cli_close(&cs[i]);
	free(cs);
	return rc;
}

/* ------------------------------------------------------------------------
 * udp: flows of echoed datagrams. Each flow is one UDP socket (and through
 * a proxy, one control connection with a UDP ASSOCIATE naming DST
 * 0.0.0.0:0, RFC 1928 §7) that keeps `window` datagrams in flight to the
 * target's UDP echo: one reply lets the next datagram go. Every datagram
 * carries its flow, sequence number and send time and a pattern of both,
 * so each reply is checked whole. Replies are counted as ok, late (after
 * its datagram was given up as lost), malformed (wrong length, header or
 * bytes) or foreign (from another address than the relay or target, or a
 * header naming another source); a datagram without a reply is lost.
 */

#define UDP_HDR_LEN 10   /* RSV RSV FRAG ATYP=1 ADDR(4) PORT(2) */
#define UDP_STAMP_LEN 20 /* flow (4), seq (8), send time (8) */
#define UDP_MAX_WINDOW 64
#define UDP_RECV_BATCH 64
#define UDP_SLOT 2048 /* the largest reply a flow expects, and then some */
#define UDP_REP_CMD_UNSUPPORTED 7
#define UDP_NO_UDP 3 /* exit status: the proxy does not do UDP ASSOCIATE */

struct uslot {
	uint64_t seq, sent_ns;
	bool used;
};

struct uflow {
	struct watcher w;
	int ctl; /* the control connection (proxy), or -1 */
	uint32_t id;
	struct sockaddr_in to; /* the relay (proxy) or the echo (direct) */
	uint64_t next_seq;
	struct uslot slot[UDP_MAX_WINDOW];
};

static struct {
	size_t size;         /* DATA bytes per datagram */
	unsigned window;     /* in flight per flow */
	uint64_t timeout_ns; /* a datagram without a reply by then is lost */
	bool sending;
	uint64_t win_start, win_end;                     /* replies inside count */
	uint64_t ok, late, timedout, malformed, foreign; /* over the whole run */
	uint64_t ok_in_window;
	uint32_t *rtt_us;
	size_t n, cap;
	uint8_t hdr[UDP_HDR_LEN]; /* the header a proxied reply must have */
} ud;

static uint8_t
udp_pattern(uint32_t flow, uint64_t seq, size_t k)
{
	return (uint8_t)(seq * 31 + k * 7 + flow);
}

/* Sends the flow's next datagram in a free slot. */
static void
uflow_send(struct uflow *f, struct uslot *sl)
{
	uint8_t p[UDP_HDR_LEN + UDP_SLOT];
	size_t h = cfg.use_proxy ? UDP_HDR_LEN : 0;
	uint64_t t = now_ns();

	sl->seq = f->next_seq++;
	sl->sent_ns = t;
	sl->used = true;
	memcpy(p, ud.hdr, h);
	memcpy(p + h, &f->id, 4);
	memcpy(p + h + 4, &sl->seq, 8);
	memcpy(p + h + 12, &t, 8);
	for (size_t k = UDP_STAMP_LEN; k < ud.size; k++)
		p[h + k] = udp_pattern(f->id, sl->seq, k);
	/* Not sent (a full buffer): the slot times out and counts as lost. */
	(void)sendto(f->w.fd, p, h + ud.size, MSG_DONTWAIT, (struct sockaddr *)&f->to,
		sizeof(f->to));
}

/* One reply of n bytes from `from`. */
static void
uflow_reply(struct uflow *f, const uint8_t *p, size_t n, const struct sockaddr_in *from)
{
	size_t h = cfg.use_proxy ? UDP_HDR_LEN : 0;
	uint64_t seq, t = now_ns();
	uint32_t id;

	if (from->sin_addr.s_addr != f->to.sin_addr.s_addr || from->sin_port != f->to.sin_port ||
		(h && n >= h && p[3] == SOCKS_ATYP_IPV4 && memcmp(p + 4, ud.hdr + 4, 6) != 0)) {
		ud.foreign++;
		return;
	}
	if (n != h + ud.size || memcmp(p, ud.hdr, h) != 0) {
		ud.malformed++;
		return;
	}
	p += h;
	memcpy(&id, p, 4);
	memcpy(&seq, p + 4, 8);
	for (size_t k = UDP_STAMP_LEN; k < ud.size; k++)
		if (p[k] != udp_pattern(id, seq, k) || id != f->id) {
			ud.malformed++;
			return;
		}
	for (unsigned i = 0; i < ud.window; i++) {
		struct uslot *sl = &f->slot[i];
		if (!sl->used || sl->seq != seq)
			continue;
		sl->used = false;
		ud.ok++;
		if (t >= ud.win_start && t < ud.win_end) {
			ud.ok_in_window++;
			if (ud.n == ud.cap) {
				ud.cap = ud.cap ? ud.cap * 2 : 65536;
				if (!(ud.rtt_us = realloc(ud.rtt_us, ud.cap * sizeof(*ud.rtt_us))))
					die("out of memory");
			}
			ud.rtt_us[ud.n++] = (uint32_t)((t - sl->sent_ns) / 1000);
		}
		if (ud.sending)
			uflow_send(f, sl);
		return;
	}
	if (seq < f->next_seq)
		ud.late++;
	else
		ud.malformed++;
}

static void
uflow_on_io(struct watcher *w, uint32_t events)
{
	static uint8_t bufs[UDP_RECV_BATCH][UDP_SLOT];
	static struct sockaddr_in names[UDP_RECV_BATCH];
	struct uflow *f = container_of(w, struct uflow, w);
	struct mmsghdr m[UDP_RECV_BATCH];
	struct iovec iov[UDP_RECV_BATCH];
	int n;

	(void)events;
	do {
		memset(m, 0, sizeof(m));
		for (int i = 0; i < UDP_RECV_BATCH; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = UDP_SLOT;
			m[i].msg_hdr.msg_name = &names[i];
			m[i].msg_hdr.msg_namelen = sizeof(names[i]);
			m[i].msg_hdr.msg_iov = &iov[i];
			m[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(w->fd, m, UDP_RECV_BATCH, MSG_DONTWAIT, NULL);
		for (int i = 0; i < n; i++)
			uflow_reply(f, bufs[i], m[i].msg_len, &names[i]);
	} while (n == UDP_RECV_BATCH);
}

/* Slots without a reply for timeout_ns: lost (unless a late reply comes),
 * and the slot sends again. */
static void
uflow_expire(struct uflow *f, uint64_t t)
{
	for (unsigned i = 0; i < ud.window; i++) {
		struct uslot *sl = &f->slot[i];
		if (!sl->used || sl->sent_ns + ud.timeout_ns > t)
			continue;
		sl->used = false;
		ud.timedout++;
		if (ud.sending)
			uflow_send(f, sl);
	}
}

/* Blocking read of exactly n bytes from the control connection. */
static bool
ctl_read(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = read(fd, p, n);
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
	}
	return true;
}

/* The SOCKS5 handshake on a blocking control connection: greeting (with
 * --user, RFC 1929), UDP ASSOCIATE with DST 0.0.0.0:0, the reply. Sets
 * *relay from BND (0.0.0.0 there means the proxy's own address). Returns
 * 0, UDP_NO_UDP when the proxy refuses the command, or -1. */
static int
ctl_associate(int fd, struct sockaddr_in *relay)
{
	uint8_t b[512];
	size_t n = 0;

	b[n++] = SOCKS_VERSION;
	b[n++] = 1;
	b[n++] = cfg.user ? SOCKS_METHOD_PASSWORD : SOCKS_METHOD_NONE;
	if (write(fd, b, n) != (ssize_t)n || !ctl_read(fd, b, 2) || b[0] != SOCKS_VERSION ||
		b[1] != (cfg.user ? SOCKS_METHOD_PASSWORD : SOCKS_METHOD_NONE))
		return -1;
	if (cfg.user) {
		size_t ul = strlen(cfg.user), pl = strlen(cfg.pass);
		n = 0;
		b[n++] = SOCKS_AUTH_VERSION;
		b[n++] = (uint8_t)ul;
		memcpy(b + n, cfg.user, ul);
		n += ul;
		b[n++] = (uint8_t)pl;
		memcpy(b + n, cfg.pass, pl);
		n += pl;
		if (write(fd, b, n) != (ssize_t)n || !ctl_read(fd, b, 2) || b[1] != 0)
			return -1;
	}
	const uint8_t req[10] = { SOCKS_VERSION, SOCKS_CMD_UDP_ASSOCIATE, 0, SOCKS_ATYP_IPV4 };
	if (write(fd, req, sizeof(req)) != (ssize_t)sizeof(req) || !ctl_read(fd, b, 4))
		return -1;
	if (b[1] != SOCKS_REP_SUCCEEDED)
		return b[1] == UDP_REP_CMD_UNSUPPORTED ? UDP_NO_UDP : -1;
	if (b[3] != SOCKS_ATYP_IPV4 || !ctl_read(fd, b + 4, 6))
		return -1; /* the flows are IPv4 */
	*relay = cfg.proxy;
	if (memcmp(b + 4, "\0\0\0\0", 4) != 0)
		memcpy(&relay->sin_addr, b + 4, 4);
	memcpy(&relay->sin_port, b + 8, 2);
	return 0;
}

/* Opens flow f: its UDP socket on 127.0.0.1 and, through a proxy, its
 * association. Returns 0, UDP_NO_UDP or -1 (why in *why). */
static int
uflow_open(struct uflow *f, uint32_t id, const char **why)
{
	struct sockaddr_in src = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 10 };
	int rc;

	memset(f, 0, sizeof(*f));
	f->id = id;
	f->ctl = -1;
	f->w.fd = -1;
	f->to = cfg.target;
	f->w.cb = uflow_on_io;
	if (cfg.use_proxy) {
		*why = "control connection";
		if ((f->ctl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			return -1;
		(void)setsockopt(f->ctl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		(void)setsockopt(f->ctl, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(f->ctl, (struct sockaddr *)&cfg.proxy, sizeof(cfg.proxy)) < 0)
			return -1;
		*why = "UDP ASSOCIATE";
		if ((rc = ctl_associate(f->ctl, &f->to)) != 0)
			return rc;
	}
	*why = "UDP socket";
	src.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->w.fd = udp_bound_on(&src);
	watch(&f->w, EPOLLIN);
	return 0;
}

static void
uflow_close(struct uflow *f)
{
	watcher_close(&f->w);
	if (f->ctl >= 0)
		close(f->ctl);
	f->ctl = -1;
}

static unsigned
udp_outstanding(const struct uflow *fs, int flows)
{
	unsigned n = 0;

	for (int i = 0; i < flows; i++)
		for (unsigned j = 0; j < ud.window; j++)
			n += fs[i].slot[j].used;
	return n;
}

static void
udp_report(int flows, double seconds, const struct proc_sample *p0, const struct proc_sample *p1)
{
	char prefix[32];

	snprintf(prefix, sizeof(prefix), "udp%d_", flows);
	if (ud.n)
		qsort(ud.rtt_us, ud.n, sizeof(*ud.rtt_us), cmp_u32);
	metric_p(prefix, "rate", (double)ud.ok_in_window / seconds, "dgrams/s");
	if (cfg.proxy_pid > 0 && ud.ok_in_window)
		metric_p(prefix, "cpu", (p1->cpu_s - p0->cpu_s) * 1e6 / (double)ud.ok_in_window,
			"cpu-us/dgram");
	metric_p(prefix, "p50", percentile(ud.rtt_us, ud.n, 0.50), "us");
	metric_p(prefix, "p99", percentile(ud.rtt_us, ud.n, 0.99), "us");
	metric_p(prefix, "lost", (double)(ud.timedout - ud.late), "dgrams");
	metric_p(prefix, "late", (double)ud.late, "dgrams");
	metric_p(prefix, "malformed", (double)ud.malformed, "dgrams");
	metric_p(prefix, "foreign", (double)ud.foreign, "dgrams");
}

static int
cmd_udp(int flows, size_t size, unsigned window, double seconds, double warmup, double timeout_ms)
{
	struct uflow *fs = calloc((size_t)flows, sizeof(*fs));
	struct proc_sample p0 = { 0 }, p1 = { 0 };
	const char *why = "";
	uint64_t t, last_expire = 0;
	bool sampled = false;

	if (!fs)
		die("out of memory");
	if (size < UDP_STAMP_LEN || size > UDP_SLOT - UDP_HDR_LEN || window < 1 ||
		window > UDP_MAX_WINDOW)
		die("udp: --size %u..%u, --window 1..%u", UDP_STAMP_LEN, UDP_SLOT - UDP_HDR_LEN,
			UDP_MAX_WINDOW);
	ud.size = size;
	ud.window = window;
	ud.timeout_ns = (uint64_t)(timeout_ms * 1e6);
	ud.hdr[3] = SOCKS_ATYP_IPV4;
	memcpy(ud.hdr + 4, &cfg.target.sin_addr, 4);
	memcpy(ud.hdr + 8, &cfg.target.sin_port, 2);
	for (int i = 0; i < flows; i++) {
		int rc = uflow_open(&fs[i], (uint32_t)i, &why);
		if (rc == UDP_NO_UDP) {
			fprintf(stderr, "loadgen: udp: no UDP (the proxy refuses UDP ASSOCIATE)\n");
			for (int j = 0; j <= i; j++)
				uflow_close(&fs[j]);
			free(fs);
			return UDP_NO_UDP;
		}
		if (rc < 0)
			die("udp: flow %d: %s: %s", i, why, strerror(errno));
	}
	t = now_ns();
	ud.win_start = t + (uint64_t)(warmup * 1e9);
	ud.win_end = ud.win_start + (uint64_t)(seconds * 1e9);
	ud.sending = true;
	for (int i = 0; i < flows; i++)
		for (unsigned j = 0; j < window; j++)
			uflow_send(&fs[i], &fs[i].slot[j]);
	while ((t = now_ns()) < ud.win_end) {
		if (!sampled && t >= ud.win_start) {
			proc_sample(cfg.proxy_pid, false, &p0);
			sampled = true;
		}
		loop_once(1);
		if (t - last_expire > 10000000) {
			for (int i = 0; i < flows; i++)
				uflow_expire(&fs[i], t);
			last_expire = t;
		}
	}
	proc_sample(cfg.proxy_pid, false, &p1);
	/* What is still in flight gets its time to come back. */
	ud.sending = false;
	for (t = now_ns(); udp_outstanding(fs, flows) && now_ns() - t < ud.timeout_ns + 100000000;)
		loop_once(10);
	for (int i = 0; i < flows; i++)
		uflow_expire(&fs[i], UINT64_MAX / 2);
	if (!ud.ok_in_window)
		die("udp: no datagram came back");
	udp_report(flows, seconds, &p0, &p1);
	for (int i = 0; i < flows; i++)
		uflow_close(&fs[i]);
	free(fs);
	return 0;
}

/* ------------------------------------------------------------------------
 * shaping (issue 18): N download streams through a proxy that limits them
 * together to --limit-mbit; what each stream received in the measured
 * window gives the delivered rate (against the limit) and the spread of
 * the shares (the largest over the smallest). Counted where the bytes
 * arrive, so nothing buffered on the way counts.
 */

static struct {
	struct cli *cs;
	uint64_t *got; /* per stream */
	int nready, nfailed;
	const char *why;
} sh;

static void
sh_pump(struct cli *c)
{
	for (;;) {
		ssize_t n = read(c->w.fd, big_buf, sizeof(big_buf));
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			cli_fail(c, "stream closed");
			return;
		}
		sh.got[c - sh.cs] += (uint64_t)n;
	}
}

static void
sh_on_ready(struct cli *c)
{
	sh.nready++;
	sh_pump(c); /* edge-triggered: the first edge may have come */
}

static void
sh_on_io(struct cli *c, uint32_t events)
{
	(void)events;
	sh_pump(c);
}

static void
sh_on_fail(struct cli *c, const char *why)
{
	(void)c;
	sh.nfailed++;
	sh.why = why;
}

static int
cmd_shaping(int streams, double seconds, double limit_mbit, double warmup)
{
	uint64_t *g0 = calloc((size_t)streams, sizeof(*g0)), t0, total = 0, lo = UINT64_MAX, hi = 0;
	double elapsed, mbit;
	char name[64];

	sh.cs = calloc((size_t)streams, sizeof(*sh.cs));
	sh.got = calloc((size_t)streams, sizeof(*sh.got));
	if (!g0 || !sh.cs || !sh.got)
		die("out of memory");
	cfg.on_ready = sh_on_ready;
	cfg.on_io = sh_on_io;
	cfg.on_fail = sh_on_fail;
	for (int i = 0; i < streams; i++)
		cli_open(&sh.cs[i]);
	t0 = now_ns();
	while (sh.nready + sh.nfailed < streams && secs_since(t0) < 10)
		loop_once(100);
	if (sh.nready < streams)
		die("shaping: %d of %d streams not established (%s)", streams - sh.nready, streams,
			sh.why ? sh.why : "timeout");
	/* The buckets' first burst and the sockets' buffers fill first. */
	t0 = now_ns();
	while (secs_since(t0) < warmup)
		loop_once(10);
	memcpy(g0, sh.got, (size_t)streams * sizeof(*g0));
	t0 = now_ns();
	while (secs_since(t0) < seconds) {
		loop_once(10);
		if (sh.nfailed)
			die("shaping: a stream failed mid-run (%s)", sh.why);
	}
	elapsed = secs_since(t0);
	for (int i = 0; i < streams; i++) {
		uint64_t d = sh.got[i] - g0[i];
		total += d;
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	mbit = (double)total * 8 / elapsed / 1e6;
	snprintf(name, sizeof(name), "shp%.0f_%d", limit_mbit, streams);
	metric(name, mbit, "Mbit/s");
	snprintf(name, sizeof(name), "shp%.0f_%d_err", limit_mbit, streams);
	metric(name, (mbit / limit_mbit - 1) * 100, "%");
	snprintf(name, sizeof(name), "shp%.0f_%d_spread", limit_mbit, streams);
	metric(name, lo ? ((double)hi / (double)lo - 1) * 100 : 100, "%");
	for (int i = 0; i < streams; i++)
		cli_close(&sh.cs[i]);
	free(sh.cs);
	free(sh.got);
	free(g0);
	return 0;
}

/* ------------------------------------------------------------------------
 * helpers for run.sh: a free port, and waiting for a listener
 */

static int
cmd_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
		getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		die("port: %s", strerror(errno));
	printf("%u\n", ntohs(sin.sin_port));
	close(fd);
	return 0;
}

/* A yescrypt hash of pass, for the users run.sh gives socks5d and Dante. */
static int
cmd_hash(const char *pass)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;
	const char *h;

	memset(&cd, 0, sizeof(cd));
	if (!pass || !crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) ||
		!(h = crypt_r(pass, salt, &cd)) || h[0] == '*')
		die("hash: yescrypt: %s", strerror(errno));
	printf("%s\n", h);
	return 0;
}

static int
cmd_wait_port(const char *addr, double max_seconds)
{
	struct sockaddr_in sin;
	uint64_t t0 = now_ns();

	parse_addr(addr, &sin);
	while (secs_since(t0) < max_seconds) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		if (fd >= 0)
			close(fd);
		if (ok)
			return 0;
		usleep(20000);
	}
	fprintf(stderr, "loadgen: nothing listening on %s after %.0f s\n", addr, max_seconds);
	return 1;
}

/* ------------------------------------------------------------------------
 * command line
 */

/* A numeric option's value: all of it must be a number, or usage fails. */
static double
opt_num(const char *opt, const char *val)
{
	char *end;
	double v = strtod(val, &end);

	if (end == val || *end)
		die("%s: '%s' is not a number", opt, val);
	return v;
}

static void
usage(void)
{
	fputs("usage: loadgen target [--addr IP] [--max-seconds S]\n"
	      "       loadgen port | wait-port IP:PORT [--seconds S]\n"
	      "       loadgen MODE --target IP:PORT [--proxy IP:PORT] [--pid PID] [options]\n"
	      "MODE and its options (--target is the echo, sink or source port it needs):\n"
	      "  upload|download --streams N --seconds S [--bytes B] [--warmup S]  (sink|source)\n"
	      "  sessions --workers N --seconds S [--warmup S] [--prefix NAME]     (echo)\n"
	      "  latency --count N [--seconds S]                                   (echo)\n"
	      "  memory [--conns K] [--seconds S] [--concurrency N]                (echo)\n"
	      "  udp --flows N --size B --window W --seconds S [--timeout-ms T]    (udp)\n"
	      "  shaping --streams N --seconds S --limit-mbit M [--warmup S]      (source)\n"
	      "  through a proxy: [--user U --pass P] for RFC 1929 (sessions, udp)\n"
	      "       loadgen relay --port P [--data copy|splice] [--udp-gso client|both|none]\n"
	      "                                                   (the reference relay)\n"
	      "       loadgen hash PASSWORD                       (a yescrypt hash of it)\n",
		stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *mode, *target = NULL, *proxy = NULL, *addr = "127.0.0.1", *data = "copy";
	const char *udp_gso = "client";
	double seconds = -1, warmup = 0.5, limit_mbit = 0;
	long streams = 1, workers = 64, count = 20000, conns = 0, concurrency = 128;
	long flows = 1, size = 64, window = 8;
	double timeout_ms = 500;
	uint64_t bytes = 0;
	int pid = 0, port = 0;

	if (argc < 2)
		usage();
	mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *opt = argv[i], *val;
		if (opt[0] != '-') {
			target = opt; /* wait-port's one positional argument */
			continue;
		}
		if (++i >= argc)
			usage();
		val = argv[i];
		if (strcmp(opt, "--addr") == 0)
			addr = val;
		else if (strcmp(opt, "--target") == 0)
			target = val;
		else if (strcmp(opt, "--proxy") == 0)
			proxy = val;
		else if (strcmp(opt, "--pid") == 0)
			pid = (int)opt_num(opt, val);
		else if (strcmp(opt, "--seconds") == 0 || strcmp(opt, "--max-seconds") == 0)
			seconds = opt_num(opt, val);
		else if (strcmp(opt, "--warmup") == 0)
			warmup = opt_num(opt, val);
		else if (strcmp(opt, "--streams") == 0)
			streams = (long)opt_num(opt, val);
		else if (strcmp(opt, "--workers") == 0)
			workers = (long)opt_num(opt, val);
		else if (strcmp(opt, "--count") == 0)
			count = (long)opt_num(opt, val);
		else if (strcmp(opt, "--conns") == 0)
			conns = (long)opt_num(opt, val);
		else if (strcmp(opt, "--concurrency") == 0)
			concurrency = (long)opt_num(opt, val);
		else if (strcmp(opt, "--bytes") == 0)
			bytes = (uint64_t)opt_num(opt, val);
		else if (strcmp(opt, "--port") == 0)
			port = (int)opt_num(opt, val);
		else if (strcmp(opt, "--data") == 0)
			data = val;
		else if (strcmp(opt, "--udp-gso") == 0)
			udp_gso = val;
		else if (strcmp(opt, "--user") == 0)
			cfg.user = val;
		else if (strcmp(opt, "--prefix") == 0)
			cfg.prefix = val;
		else if (strcmp(opt, "--pass") == 0)
			cfg.pass = val;
		else if (strcmp(opt, "--flows") == 0)
			flows = (long)opt_num(opt, val);
		else if (strcmp(opt, "--size") == 0)
			size = (long)opt_num(opt, val);
		else if (strcmp(opt, "--window") == 0)
			window = (long)opt_num(opt, val);
		else if (strcmp(opt, "--timeout-ms") == 0)
			timeout_ms = opt_num(opt, val);
		else if (strcmp(opt, "--limit-mbit") == 0)
			limit_mbit = opt_num(opt, val);
		else
			usage();
	}
	signal(SIGPIPE, SIG_IGN);
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %s", strerror(errno));
	if (strcmp(mode, "target") == 0)
		return cmd_target(addr, seconds > 0 ? seconds : 3600);
	if (strcmp(mode, "relay") == 0)
		return cmd_relay(port, data, udp_gso);
	if (strcmp(mode, "port") == 0)
		return cmd_port();
	if (strcmp(mode, "hash") == 0)
		return cmd_hash(target);
	if (strcmp(mode, "wait-port") == 0) {
		if (!target)
			usage();
		return cmd_wait_port(target, seconds > 0 ? seconds : 5);
	}
	if (!target || streams < 1 || workers < 1 || count < 2 || concurrency < 1 || flows < 1 ||
		size < 0 || window < 0 || timeout_ms <= 0 || !cfg.user != !cfg.pass ||
		(cfg.user && (strlen(cfg.user) > 255 || strlen(cfg.pass) > 255)))
		usage();
	parse_addr(target, &cfg.target);
	if (proxy) {
		cfg.use_proxy = true;
		parse_addr(proxy, &cfg.proxy);
	}
	cfg.proxy_pid = pid;
	raise_nofile();
	/* A run that hangs must still end: the caller's timeout is the second
	 * line of defence, this is the first. */
	alarm((unsigned)((seconds > 0 ? seconds : 120) * 2 + warmup + 60));
	if (strcmp(mode, "upload") == 0 || strcmp(mode, "download") == 0) {
		tp.upload = mode[0] == 'u';
		return cmd_throughput((int)streams, seconds > 0 ? seconds : 5, bytes, warmup);
	}
	if (strcmp(mode, "sessions") == 0)
		return cmd_sessions((int)workers, seconds > 0 ? seconds : 5, warmup);
	if (strcmp(mode, "latency") == 0)
		return cmd_latency((size_t)count, seconds > 0 ? seconds : 30);
	if (strcmp(mode, "memory") == 0)
		return cmd_memory(conns, seconds > 0 ? seconds : 120, (int)concurrency);
	if (strcmp(mode, "udp") == 0)
		return cmd_udp((int)flows, (size_t)size, (unsigned)window,
			seconds > 0 ? seconds : 5, warmup, timeout_ms);
	if (strcmp(mode, "shaping") == 0 && limit_mbit > 0)
		return cmd_shaping((int)streams, seconds > 0 ? seconds : 10, limit_mbit, warmup);
	usage();
	return 2;
}
