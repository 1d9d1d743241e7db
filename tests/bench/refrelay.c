/*
 * refrelay: the reference relay of `make bench`. It does the least that a
 * single-threaded epoll SOCKS5 relay has to do per connection: accept,
 * answer a no-auth greeting, read a CONNECT to an IPv4 address, connect
 * without blocking, reply with the bound address, move bytes both ways,
 * pass each FIN on, close. No other command or address type, no access
 * rules, no timers, no logging, no limits, no care for hostile clients.
 * Its row in the table is the floor this machine sets for any SOCKS5 proxy
 * built this way: what lies between it and direct is the cost of the extra
 * hop and of the protocol, not of one proxy's own work. It is a measurement
 * aid that trusts its only client (loadgen), never a server to run.
 *
 *   refrelay --port P [--splice]
 *
 * listens on 127.0.0.1:P. Data moves through a 16 KiB buffer per
 * direction (read/write: the cheaper way for small messages), or with
 * --splice through a 1 MiB pipe per direction, made when the direction
 * first reads (the cheaper way for bulk, as in socks5d). A direction reads
 * only when what it read before has been written: the simplest rule, and
 * on loopback the write takes all of it at once. Connections are kept on a
 * free list, so the steady state allocates nothing. Build with
 * -D_GNU_SOURCE.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define COPY_BUF (16 * 1024)
#define PIPE_BYTES ((size_t)1 << 20)
#define MAX_EVENTS 256
#define REQUEST_LEN 10 /* VER CMD RSV ATYP=IPv4 ADDR(4) PORT(2) */

struct conn;

/* One fd of a connection; epoll's data.ptr points here (NULL: listener). */
struct side {
	struct conn *c;
	int i; /* 0: client, 1: target; also the direction it reads for */
	int fd;
	unsigned mask; /* interest last given to epoll */
};

/* Bytes read from side i and not yet written to side 1 - i: in buf (the
 * handshake's leftovers, and everything when not splicing) or in the pipe. */
struct dir {
	size_t inbuf, off, inpipe;
	int pipe[2];
	bool eof, shut;
	char buf[COPY_BUF];
};

enum state { HELLO, CONNECTING, RELAY };

struct conn {
	struct side s[2];
	enum state state;
	bool greeted;
	bool closed;            /* its fds are gone; later events are stale */
	struct conn *next_free; /* free list, or the list closed this batch */
	struct dir d[2];        /* last: a reused conn clears what is above */
};

static int ep = -1;
static bool use_splice;
static struct conn *free_conns;
static struct conn *closed_conns; /* free once the epoll batch is over */

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

static void
conn_close(struct conn *c)
{
	for (int i = 0; i < 2; i++) {
		/* close() takes the fd out of the epoll set: never shared. */
		if (c->s[i].fd >= 0)
			close(c->s[i].fd);
		if (c->d[i].pipe[0] >= 0) {
			close(c->d[i].pipe[0]);
			close(c->d[i].pipe[1]);
			c->d[i].pipe[0] = c->d[i].pipe[1] = -1;
		}
	}
	c->closed = true;
	c->next_free = closed_conns;
	closed_conns = c;
}

static int
set_interest(struct side *s, unsigned mask)
{
	struct epoll_event ev = { .events = mask, .data.ptr = s };

	if (mask == s->mask)
		return 0;
	s->mask = mask;
	return epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

static size_t
held(const struct dir *d)
{
	return d->inbuf + d->inpipe;
}

/* Whether direction d reads now: until EOF, and only once what it read
 * before is written (the simplest rule; it also keeps the handshake's
 * leftovers in buf ahead of anything spliced). Reading while the pipe
 * drains, as socks5d does, measured no better here (32-stream upload
 * 0.58x against 0.68-0.72x, one 5-round run each). */
static bool
wants_read(const struct dir *d)
{
	return !d->eof && held(d) == 0;
}

/* Side i is read while its direction wants to, and written while the other
 * direction holds bytes. */
static int
update_interest(struct conn *c)
{
	for (int i = 0; i < 2; i++) {
		unsigned mask = 0;
		if (wants_read(&c->d[i]))
			mask |= EPOLLIN;
		if (held(&c->d[1 - i]) > 0)
			mask |= EPOLLOUT;
		if (set_interest(&c->s[i], mask) < 0)
			return -1;
	}
	return 0;
}

/* Moves what it can from side i to side 1 - i; -1: the connection failed. */
static int
pump(struct conn *c, int i)
{
	struct dir *d = &c->d[i];
	int src = c->s[i].fd, dst = c->s[1 - i].fd;
	ssize_t n;

	if (wants_read(d)) {
		/* A pipe for each direction that carries data (one per bulk
		 * stream: 32 MiB for 32 streams, within the kernel's default
		 * per-user pipe budget of 64 MiB). */
		if (use_splice && d->pipe[0] < 0 &&
		    (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0 ||
			    fcntl(d->pipe[0], F_SETPIPE_SZ, (int)PIPE_BYTES) < 0))
			return -1;
		if (use_splice)
			n = splice(src, NULL, d->pipe[1], NULL, PIPE_BYTES,
				SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		else
			n = read(src, d->buf, sizeof(d->buf));
		if (n > 0 && use_splice) {
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
	if (d->inbuf > 0) {
		n = send(dst, d->buf + d->off, d->inbuf, MSG_NOSIGNAL);
		if (n > 0) {
			d->inbuf -= (size_t)n;
			d->off += (size_t)n;
		}
	} else if (d->inpipe > 0) {
		n = splice(d->pipe[0], NULL, dst, NULL, d->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0)
			d->inpipe -= (size_t)n;
	} else {
		n = 0;
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		return -1;
	if (d->eof && held(d) == 0 && !d->shut) {
		d->shut = true;
		if (shutdown(dst, SHUT_WR) < 0)
			return -1;
	}
	return 0;
}

static void
on_accept(int lfd)
{
	for (int k = 0; k < MAX_EVENTS; k++) {
		int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			return;
		struct conn *c = free_conns;
		if (c)
			free_conns = c->next_free;
		else if (!(c = malloc(sizeof(*c)))) {
			close(cfd);
			continue;
		}
		memset(c, 0, offsetof(struct conn, d));
		for (int i = 0; i < 2; i++) {
			c->s[i].c = c;
			c->s[i].i = i;
			c->s[i].fd = -1;
			c->d[i].inbuf = c->d[i].off = c->d[i].inpipe = 0;
			c->d[i].eof = c->d[i].shut = false;
			c->d[i].pipe[0] = c->d[i].pipe[1] = -1;
		}
		/* The listener's TCP_NODELAY is inherited by cfd. */
		c->s[0].fd = cfd;
		c->s[0].mask = EPOLLIN;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &c->s[0] };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev) < 0)
			conn_close(c);
	}
}

/* Starts the connect a complete request asks for. */
static int
start_connect(struct conn *c, const unsigned char *req)
{
	int one = 1, tfd;
	struct sockaddr_in to = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = &c->s[1] };

	if (req[0] != 5 || req[1] != 1 || req[3] != 1)
		return -1; /* CONNECT to IPv4 is all that loadgen asks for */
	memcpy(&to.sin_addr, req + 4, 4);
	memcpy(&to.sin_port, req + 8, 2);
	if ((tfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	c->s[1].fd = tfd;
	(void)setsockopt(tfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((connect(tfd, (struct sockaddr *)&to, sizeof(to)) < 0 && errno != EINPROGRESS) ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0)
		return -1;
	c->s[1].mask = EPOLLOUT;
	c->state = CONNECTING;
	return 0;
}

/* Appends what the client sent to its buffer, which holds what the
 * handshake has not consumed: 0, or -1 on an error or on EOF before the
 * request is complete. An EOF after it is passed on once relaying. */
static int
read_client(struct conn *c)
{
	struct dir *d = &c->d[0];
	ssize_t n = read(c->s[0].fd, d->buf + d->inbuf, sizeof(d->buf) - d->inbuf);

	if (n < 0)
		return errno == EAGAIN ? 0 : -1;
	if (n == 0) {
		if (c->state != CONNECTING)
			return -1;
		d->eof = true;
	}
	d->inbuf += (size_t)n;
	/* Full or ended before the target is up (a client sending ahead):
	 * stop reading, or level-triggered epoll would report it forever. */
	if (d->eof || d->inbuf == sizeof(d->buf))
		return set_interest(&c->s[0], 0);
	return 0;
}

/* Reads the greeting, answers it, then reads the request; what follows the
 * request stays in the buffer for the target. */
static int
on_hello(struct conn *c)
{
	struct dir *d = &c->d[0];
	unsigned char *p = (unsigned char *)d->buf;
	size_t need;

	if (read_client(c) < 0)
		return -1;
	if (!c->greeted) {
		if (d->inbuf < 2 || d->inbuf < (need = 2 + (size_t)p[1]))
			return 0;
		if (p[0] != 5 || send(c->s[0].fd, "\5\0", 2, MSG_NOSIGNAL) != 2)
			return -1;
		c->greeted = true;
		d->inbuf -= need;
		memmove(p, p + need, d->inbuf);
	}
	if (d->inbuf < REQUEST_LEN)
		return 0;
	if (start_connect(c, p) < 0)
		return -1;
	d->inbuf -= REQUEST_LEN;
	memmove(p, p + REQUEST_LEN, d->inbuf);
	d->off = 0;
	return 0;
}

/* The target connect finished: reply, then relay both ways. */
static int
on_connected(struct conn *c, unsigned events)
{
	int err = 0;
	socklen_t len = sizeof(err);
	struct sockaddr_in bound;
	socklen_t blen = sizeof(bound);
	unsigned char reply[REQUEST_LEN] = { 5, 0, 0, 1 };

	if ((events & (EPOLLERR | EPOLLHUP)) &&
	    (getsockopt(c->s[1].fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err))
		return -1;
	if (getsockname(c->s[1].fd, (struct sockaddr *)&bound, &blen) < 0)
		return -1;
	memcpy(reply + 4, &bound.sin_addr, 4);
	memcpy(reply + 8, &bound.sin_port, 2);
	if (send(c->s[0].fd, reply, sizeof(reply), MSG_NOSIGNAL) != (ssize_t)sizeof(reply))
		return -1;
	c->state = RELAY;
	/* A client that sent ahead and ended: its bytes and FIN go on now,
	 * as no event of its will come for them. */
	return c->d[0].eof ? pump(c, 0) : 0;
}

static void
on_event(struct side *s, unsigned events)
{
	struct conn *c = s->c;
	int rc = 0;

	if (c->closed)
		return;
	switch (c->state) {
	case HELLO:
		if (on_hello(c) < 0)
			conn_close(c);
		return;
	case CONNECTING:
		/* The client stays readable meanwhile: no epoll_ctl for it
		 * now, none when relaying starts. */
		rc = s->i == 0 ? read_client(c) : on_connected(c, events);
		if (rc < 0 || s->i == 0) {
			if (rc < 0)
				conn_close(c);
			return;
		}
		break;
	case RELAY:
		/* An error (a reset) is reported whatever the interest: with
		 * nothing left to read or write on this side, pumping would
		 * not notice it, and the loop would spin. */
		if (events & EPOLLERR)
			rc = -1;
		else if (events & (EPOLLIN | EPOLLHUP))
			rc = pump(c, s->i);
		if (rc == 0 && (events & EPOLLOUT))
			rc = pump(c, 1 - s->i);
		if (rc == 0 && c->d[0].shut && c->d[1].shut)
			rc = -1; /* both FINs passed on: done */
		break;
	}
	if (rc < 0 || update_interest(c) < 0)
		conn_close(c);
}

/* A TCP port from the command line, or -1. */
static int
port_arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s && !*end && v > 0 && v <= 65535 ? (int)v : -1;
}

int
main(int argc, char **argv)
{
	int port = 0, one = 1;
	struct sockaddr_in addr = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }, evs[MAX_EVENTS];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = port_arg(argv[++i]);
		else if (strcmp(argv[i], "--splice") == 0)
			use_splice = true;
		else
			port = -1;
	}
	if (port <= 0) {
		fprintf(stderr, "usage: refrelay --port P [--splice]\n");
		return 2;
	}
	/* A peer gone mid-splice is an error return, not the end of us. */
	signal(SIGPIPE, SIG_IGN);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons((uint16_t)port);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	(void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	(void)setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 4096) < 0)
		die("listen");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll");
	for (;;) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int k = 0; k < n; k++) {
			if (!evs[k].data.ptr)
				on_accept(lfd);
			else
				on_event(evs[k].data.ptr, evs[k].events);
		}
		/* Only now may a closed conn be reused: until the batch is
		 * over, events of its old fds may still follow. */
		while (closed_conns) {
			struct conn *c = closed_conns;
			closed_conns = c->next_free;
			c->next_free = free_conns;
			free_conns = c;
		}
	}
}
