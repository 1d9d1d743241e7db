/*
 * fake_dns: a scriptable DNS server for the tests of socks5d's own resolver.
 * It runs in a forked child on one port for UDP and TCP (127.0.0.1, or an
 * address and interface of a test's network namespace); the test
 * process scripts it per name (answer A/AAAA, NXDOMAIN, answer late, send a
 * spoofed answer first, truncate over UDP) and asks how many queries each
 * name received, over a SEQPACKET control socket. One poll() loop serves
 * everything: a late answer waits in a queue, never in a sleep, so one slow
 * name does not hold up the others. Answers follow RFC 1035 §4.1 with the
 * question copied and compression pointers to it; a name without the asked
 * type gets NOERROR with an SOA (RFC 2308 NODATA, so the result is
 * cacheable), unknown names get REFUSED.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define IT_DNS_LIFETIME_S 300
#define IT_DNS_CTL_TIMEOUT_MS 2000
#define IT_DNS_MAX_RULES 128
#define IT_DNS_MAX_PENDING 256
#define IT_DNS_MAX_TCP 32
#define IT_DNS_MSG_MAX 512 /* our answers are far smaller */
#define IT_DNS_TYPE_A 1
#define IT_DNS_TYPE_SOA 6
#define IT_DNS_TYPE_AAAA 28

enum it_dns_op {
	IT_DNS_OP_SET = 1,
	IT_DNS_OP_COUNTS,
};

struct it_dns_ctl_msg {
	enum it_dns_op op;
	struct it_dns_rule rule; /* SET: the rule; COUNTS: rule.name only */
};

struct it_dns_ctl_reply {
	int ok;
	struct it_dns_counts counts;
};

/* ---- the server (child process) ------------------------------------------ */

struct it_dns_entry {
	bool used;
	struct it_dns_rule rule;
	struct it_dns_counts counts;
};

struct it_dns_tcp {
	int fd;       /* -1: free slot */
	unsigned gen; /* bumped on close: stale answers are dropped */
	uint8_t in[2 + IT_DNS_MSG_MAX];
	size_t got;
};

/* An answer waiting for its due time. */
struct it_dns_pending {
	bool used;
	uint64_t due_ms;
	bool tcp;
	int slot; /* TCP: connection slot and its generation */
	unsigned gen;
	struct sockaddr_storage to; /* UDP: the asker */
	socklen_t tolen;
	uint8_t msg[2 + IT_DNS_MSG_MAX]; /* TCP: with the length prefix */
	size_t len;
};

struct it_dns_server {
	int udp, spoof, tcp, ctl;
	struct it_dns_entry rules[IT_DNS_MAX_RULES];
	struct it_dns_tcp conns[IT_DNS_MAX_TCP];
	struct it_dns_pending pending[IT_DNS_MAX_PENDING];
};

static struct it_dns_entry *
it_dns_find(struct it_dns_server *s, const char *name)
{
	for (size_t i = 0; i < IT_DNS_MAX_RULES; i++)
		if (s->rules[i].used && strcasecmp(s->rules[i].rule.name, name) == 0)
			return &s->rules[i];
	return NULL;
}

/* The question of a query: its name as text (lowercase, no final dot),
 * QTYPE, and where the question ends. Returns 0 or -1 (not a query we
 * answer: the server stays silent, the resolver times out). */
static int
it_dns_question(const uint8_t *q, size_t n, char *name, size_t cap, uint16_t *qtype, size_t *qend)
{
	size_t pos = 12, out = 0;

	if (n < 12 || (q[2] & 0x80) != 0 || q[4] != 0 || q[5] != 1)
		return -1;
	for (;;) {
		if (pos >= n)
			return -1;
		uint8_t l = q[pos++];
		if (l == 0)
			break;
		if (l > 63 || pos + l > n || out + l + 2 > cap)
			return -1;
		if (out > 0)
			name[out++] = '.';
		for (uint8_t i = 0; i < l; i++) {
			char c = (char)q[pos + i];
			name[out++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		}
		pos += l;
	}
	name[out] = '\0';
	if (pos + 4 > n)
		return -1;
	*qtype = (uint16_t)(q[pos] << 8 | q[pos + 1]);
	*qend = pos + 4;
	return 0;
}

static size_t
it_dns_put16(uint8_t *p, size_t pos, uint16_t v)
{
	p[pos] = (uint8_t)(v >> 8);
	p[pos + 1] = (uint8_t)v;
	return pos + 2;
}

static size_t
it_dns_put32(uint8_t *p, size_t pos, uint32_t v)
{
	pos = it_dns_put16(p, pos, (uint16_t)(v >> 16));
	return it_dns_put16(p, pos, (uint16_t)v);
}

/* An answer to query q (question ending at qend): header with id and
 * rcode, the question, then one address record (addr non-NULL) or, for
 * NODATA/NXDOMAIN (soa), an SOA in the authority section. */
static size_t
it_dns_build(uint8_t *out, const uint8_t *q, size_t qend, uint16_t id, uint8_t rcode, bool tc,
	uint16_t qtype, const uint8_t *addr, bool soa, uint32_t ttl)
{
	uint16_t qflags = (uint16_t)(q[2] << 8 | q[3]);
	uint16_t flags = (uint16_t)(0x8000 | (qflags & 0x7800) | 0x0400 | (qflags & 0x0100) |
		0x0080 | (tc ? 0x0200 : 0) | rcode);
	size_t pos = 0;

	pos = it_dns_put16(out, pos, id);
	pos = it_dns_put16(out, pos, flags);
	pos = it_dns_put16(out, pos, 1);                    /* QDCOUNT */
	pos = it_dns_put16(out, pos, addr != NULL ? 1 : 0); /* ANCOUNT */
	pos = it_dns_put16(out, pos, soa ? 1 : 0);          /* NSCOUNT */
	pos = it_dns_put16(out, pos, 0);                    /* ARCOUNT */
	memcpy(out + pos, q + 12, qend - 12);
	pos += qend - 12;
	if (tc)
		return pos;
	if (addr != NULL) {
		size_t alen = qtype == IT_DNS_TYPE_A ? 4 : 16;
		pos = it_dns_put16(out, pos, 0xc00c); /* the question's name */
		pos = it_dns_put16(out, pos, qtype);
		pos = it_dns_put16(out, pos, 1); /* IN */
		pos = it_dns_put32(out, pos, ttl);
		pos = it_dns_put16(out, pos, (uint16_t)alen);
		memcpy(out + pos, addr, alen);
		pos += alen;
	}
	if (soa) {
		/* MNAME and RNAME the root, then SERIAL REFRESH RETRY EXPIRE
		 * MINIMUM; the negative TTL is min(TTL, MINIMUM). */
		pos = it_dns_put16(out, pos, 0xc00c);
		pos = it_dns_put16(out, pos, IT_DNS_TYPE_SOA);
		pos = it_dns_put16(out, pos, 1);
		pos = it_dns_put32(out, pos, ttl);
		pos = it_dns_put16(out, pos, 2 + 20);
		out[pos++] = 0;
		out[pos++] = 0;
		pos = it_dns_put32(out, pos, 1);
		pos = it_dns_put32(out, pos, 3600);
		pos = it_dns_put32(out, pos, 600);
		pos = it_dns_put32(out, pos, 86400);
		pos = it_dns_put32(out, pos, ttl);
	}
	return pos;
}

static void
it_dns_queue(struct it_dns_server *s, const struct it_dns_pending *p)
{
	for (size_t i = 0; i < IT_DNS_MAX_PENDING; i++) {
		if (!s->pending[i].used) {
			s->pending[i] = *p;
			s->pending[i].used = true;
			return;
		}
	}
	/* Full: the answer is lost, as on a real network. */
}

static void
it_dns_send_pending(struct it_dns_server *s, struct it_dns_pending *p)
{
	if (p->tcp) {
		struct it_dns_tcp *c = &s->conns[p->slot];
		if (c->fd >= 0 && c->gen == p->gen)
			(void)send(c->fd, p->msg, p->len, MSG_NOSIGNAL | MSG_DONTWAIT);
	} else {
		(void)sendto(s->udp, p->msg, p->len, MSG_DONTWAIT, (struct sockaddr *)&p->to,
			p->tolen);
	}
	p->used = false;
}

/* One query, from UDP (from/fromlen) or a TCP slot. */
static void
it_dns_query(struct it_dns_server *s, const uint8_t *q, size_t n, bool tcp, int slot,
	const struct sockaddr_storage *from, socklen_t fromlen)
{
	char name[256];
	uint16_t qtype, id;
	size_t qend;
	struct it_dns_pending p;
	struct it_dns_entry *e;

	if (it_dns_question(q, n, name, sizeof(name), &qtype, &qend) < 0 || qend > 12 + 255 + 4)
		return;
	id = (uint16_t)(q[0] << 8 | q[1]);
	memset(&p, 0, sizeof(p));
	p.tcp = tcp;
	p.slot = slot;
	p.gen = tcp ? s->conns[slot].gen : 0;
	if (!tcp) {
		p.to = *from;
		p.tolen = fromlen;
	}
	uint8_t *msg = tcp ? p.msg + 2 : p.msg;
	e = it_dns_find(s, name);
	if (e == NULL) {
		p.len = it_dns_build(msg, q, qend, id, 5 /* REFUSED */, false, qtype, NULL, false,
			0);
		p.due_ms = it_now_ms();
		goto queue;
	}
	const struct it_dns_rule *r = &e->rule;
	uint32_t ttl = r->ttl ? r->ttl : 300;
	bool is_a = qtype == IT_DNS_TYPE_A, is_aaaa = qtype == IT_DNS_TYPE_AAAA;
	if (is_a)
		(*(tcp ? &e->counts.tcp_a : &e->counts.udp_a))++;
	else if (is_aaaa)
		(*(tcp ? &e->counts.tcp_aaaa : &e->counts.udp_aaaa))++;
	if (!tcp && (is_a || is_aaaa) && (r->spoof_id_first || r->spoof_port_first)) {
		static const uint8_t bad4[4] = IT_DNS_SPOOF_A;
		static const uint8_t bad6[16] = { [15] = 0x99 };
		uint8_t bad[IT_DNS_MSG_MAX];
		size_t bl;

		/* The forgeries leave now, before the real answer. */
		if (r->spoof_id_first) {
			bl = it_dns_build(bad, q, qend, (uint16_t)(id ^ 0x5a5a), 0, false, qtype,
				is_a ? bad4 : bad6, false, ttl);
			(void)sendto(s->udp, bad, bl, 0, (const struct sockaddr *)from, fromlen);
		}
		if (r->spoof_port_first) {
			bl = it_dns_build(bad, q, qend, id, 0, false, qtype, is_a ? bad4 : bad6,
				false, ttl);
			(void)sendto(s->spoof, bad, bl, 0, (const struct sockaddr *)from, fromlen);
		}
	}
	if (!tcp && r->truncate_udp) {
		p.len = it_dns_build(msg, q, qend, id, 0, true, qtype, NULL, false, 0);
	} else if (r->nxdomain) {
		p.len = it_dns_build(msg, q, qend, id, 3, false, qtype, NULL, true, ttl);
	} else if (is_a && r->has_a) {
		p.len = it_dns_build(msg, q, qend, id, 0, false, qtype, r->a, false, ttl);
	} else if (is_aaaa && r->has_aaaa) {
		p.len = it_dns_build(msg, q, qend, id, 0, false, qtype, r->aaaa, false, ttl);
	} else {
		p.len = it_dns_build(msg, q, qend, id, 0, false, qtype, NULL, true, ttl);
	}
	p.due_ms = it_now_ms() + r->delay_ms;
queue:
	if (tcp) {
		p.msg[0] = (uint8_t)(p.len >> 8);
		p.msg[1] = (uint8_t)p.len;
		p.len += 2;
	}
	it_dns_queue(s, &p);
}

static void
it_dns_on_udp(struct it_dns_server *s)
{
	uint8_t q[IT_DNS_MSG_MAX];
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	ssize_t r = recvfrom(s->udp, q, sizeof(q), MSG_DONTWAIT, (struct sockaddr *)&from, &flen);

	if (r > 0)
		it_dns_query(s, q, (size_t)r, false, 0, &from, flen);
}

static void
it_dns_tcp_close(struct it_dns_tcp *c)
{
	close(c->fd);
	c->fd = -1;
	c->gen++;
	c->got = 0;
}

static void
it_dns_on_accept(struct it_dns_server *s)
{
	int fd = accept4(s->tcp, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	for (int i = 0; i < IT_DNS_MAX_TCP; i++) {
		if (s->conns[i].fd < 0) {
			s->conns[i].fd = fd;
			s->conns[i].got = 0;
			return;
		}
	}
	close(fd);
}

/* RFC 1035 §4.2.2: two-byte length, then the message; several per
 * connection are allowed. */
static void
it_dns_on_tcp(struct it_dns_server *s, int slot)
{
	struct it_dns_tcp *c = &s->conns[slot];
	ssize_t r = recv(c->fd, c->in + c->got, sizeof(c->in) - c->got, MSG_DONTWAIT);

	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		it_dns_tcp_close(c);
		return;
	}
	if (r < 0)
		return;
	c->got += (size_t)r;
	while (c->got >= 2) {
		size_t len = (size_t)c->in[0] << 8 | c->in[1];
		if (len > IT_DNS_MSG_MAX) {
			it_dns_tcp_close(c);
			return;
		}
		if (c->got < 2 + len)
			return;
		it_dns_query(s, c->in + 2, len, true, slot, NULL, 0);
		memmove(c->in, c->in + 2 + len, c->got - 2 - len);
		c->got -= 2 + len;
	}
}

/* Returns false when the test process has gone. */
static bool
it_dns_on_ctl(struct it_dns_server *s)
{
	struct it_dns_ctl_msg m;
	struct it_dns_ctl_reply rep;
	ssize_t r = recv(s->ctl, &m, sizeof(m), 0);

	if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
		return false;
	if (r != (ssize_t)sizeof(m))
		return true;
	m.rule.name[sizeof(m.rule.name) - 1] = '\0';
	memset(&rep, 0, sizeof(rep));
	struct it_dns_entry *e = it_dns_find(s, m.rule.name);
	if (m.op == IT_DNS_OP_SET) {
		for (size_t i = 0; e == NULL && i < IT_DNS_MAX_RULES; i++)
			if (!s->rules[i].used)
				e = &s->rules[i];
		if (e != NULL) {
			e->used = true;
			e->rule = m.rule;
			memset(&e->counts, 0, sizeof(e->counts));
			rep.ok = 1;
		}
	} else if (m.op == IT_DNS_OP_COUNTS) {
		rep.ok = 1;
		if (e != NULL)
			rep.counts = e->counts;
	}
	(void)send(s->ctl, &rep, sizeof(rep), MSG_NOSIGNAL);
	return true;
}

static void __attribute__((noreturn)) it_dns_main(struct it_dns_server *s)
{
	signal(SIGPIPE, SIG_IGN);
	alarm(IT_DNS_LIFETIME_S);
	for (int i = 0; i < IT_DNS_MAX_TCP; i++)
		s->conns[i].fd = -1;
	for (;;) {
		struct pollfd pfd[4 + IT_DNS_MAX_TCP];
		int slot_of[4 + IT_DNS_MAX_TCP];
		nfds_t n = 0;
		uint64_t now = it_now_ms(), next = now + 1000;

		for (size_t i = 0; i < IT_DNS_MAX_PENDING; i++) {
			if (!s->pending[i].used)
				continue;
			if (s->pending[i].due_ms <= now)
				it_dns_send_pending(s, &s->pending[i]);
			else if (s->pending[i].due_ms < next)
				next = s->pending[i].due_ms;
		}
		pfd[n++] = (struct pollfd){ .fd = s->ctl, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = s->udp, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = s->tcp, .events = POLLIN };
		for (int i = 0; i < IT_DNS_MAX_TCP; i++) {
			if (s->conns[i].fd >= 0) {
				slot_of[n] = i;
				pfd[n++] = (struct pollfd){ .fd = s->conns[i].fd,
					.events = POLLIN };
			}
		}
		int pr = poll(pfd, n, (int)(next - now));
		if (pr < 0 && errno != EINTR)
			_exit(1);
		if (pr <= 0)
			continue;
		if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) && !it_dns_on_ctl(s))
			_exit(0);
		if (pfd[1].revents & POLLIN)
			it_dns_on_udp(s);
		if (pfd[2].revents & POLLIN)
			it_dns_on_accept(s);
		for (nfds_t i = 3; i < n; i++)
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				it_dns_on_tcp(s, slot_of[i]);
	}
}

/* ---- the test side ------------------------------------------------------- */

/* A socket of type on ip:port, bound to device when not NULL (it then
 * sees only what arrives through that interface). -1 with errno. */
static int
it_dns_socket(int type, const char *ip, uint16_t port, const char *device)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if ((device && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, strlen(device)) < 0) ||
		it_sockaddr(ip, port, &ss, &len) < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* UDP and TCP on the same port of ip: the UDP port is the kernel's
 * choice, and TCP must be free there too (retried a few times). */
static int
it_dns_sockets(const char *ip, const char *device, int *udp, int *tcp, uint16_t *port)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		*udp = it_dns_socket(SOCK_DGRAM | SOCK_NONBLOCK, ip, 0, device);
		if (*udp < 0)
			return -1;
		*port = it_local_port(*udp);
		*tcp = it_dns_socket(SOCK_STREAM | SOCK_NONBLOCK, ip, *port, device);
		if (*tcp >= 0 && listen(*tcp, 64) == 0)
			return 0;
		if (*tcp >= 0)
			close(*tcp);
		close(*udp);
	}
	return -1;
}

int
it_dns_start(struct it_dns *dns)
{
	return it_dns_start_at(dns, "127.0.0.1", NULL);
}

int
it_dns_start_at(struct it_dns *dns, const char *ip, const char *device)
{
	static struct it_dns_server s; /* the child's copy is the one used */
	int sv[2], spoof;

	memset(dns, 0, sizeof(*dns));
	dns->ctl = -1;
	memset(&s, 0, sizeof(s));
	if (it_dns_sockets(ip, device, &s.udp, &s.tcp, &dns->port) < 0) {
		fprintf(stderr, "fake DNS: cannot bind UDP+TCP on one port: %s\n", strerror(errno));
		return -1;
	}
	spoof = it_dns_socket(SOCK_DGRAM, ip, 0, device);
	if (spoof < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		fprintf(stderr, "fake DNS: sockets: %s\n", strerror(errno));
		close(s.udp);
		close(s.tcp);
		if (spoof >= 0)
			close(spoof);
		return -1;
	}
	s.spoof = spoof;
	s.ctl = sv[1];
	pid_t parent = getpid();
	dns->pid = fork();
	if (dns->pid == 0) {
		int keep[4] = { s.udp, s.spoof, s.tcp, s.ctl }, low = 10;
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		/* Keep only our four sockets: a copy of a test's client socket
		 * here would keep its session open in the daemon. Copies above
		 * every original first, then down to 3..6. */
		for (int i = 0; i < 4; i++)
			if (keep[i] >= low)
				low = keep[i] + 1;
		for (int i = 0; i < 4; i++)
			if ((keep[i] = fcntl(keep[i], F_DUPFD, low)) < 0)
				_exit(126);
		for (int i = 0; i < 4; i++)
			if (dup2(keep[i], 3 + i) < 0)
				_exit(126);
		close_range(7, ~0U, 0);
		s.udp = 3;
		s.spoof = 4;
		s.tcp = 5;
		s.ctl = 6;
		it_dns_main(&s);
	}
	close(s.udp);
	close(s.tcp);
	close(spoof);
	close(sv[1]);
	if (dns->pid < 0) {
		close(sv[0]);
		return -1;
	}
	dns->ctl = sv[0];
	return 0;
}

void
it_dns_stop(struct it_dns *dns)
{
	int status;

	if (dns->ctl >= 0)
		close(dns->ctl);
	dns->ctl = -1;
	if (dns->pid > 0) {
		kill(dns->pid, SIGKILL);
		waitpid(dns->pid, &status, 0);
	}
	dns->pid = 0;
}

static int
it_dns_call(struct it_dns *dns, const struct it_dns_ctl_msg *m, struct it_dns_ctl_reply *rep)
{
	struct pollfd pfd = { .fd = dns->ctl, .events = POLLIN };

	if (dns->ctl < 0 || send(dns->ctl, m, sizeof(*m), MSG_NOSIGNAL) != (ssize_t)sizeof(*m))
		return -1;
	if (poll(&pfd, 1, IT_DNS_CTL_TIMEOUT_MS) != 1)
		return -1;
	if (recv(dns->ctl, rep, sizeof(*rep), 0) != (ssize_t)sizeof(*rep) || !rep->ok)
		return -1;
	return 0;
}

int
it_dns_set(struct it_dns *dns, const struct it_dns_rule *rule)
{
	struct it_dns_ctl_msg m = { .op = IT_DNS_OP_SET, .rule = *rule };
	struct it_dns_ctl_reply rep;

	return it_dns_call(dns, &m, &rep);
}

int
it_dns_counts(struct it_dns *dns, const char *name, struct it_dns_counts *out)
{
	struct it_dns_ctl_msg m = { .op = IT_DNS_OP_COUNTS };
	struct it_dns_ctl_reply rep;

	snprintf(m.rule.name, sizeof(m.rule.name), "%s", name);
	if (it_dns_call(dns, &m, &rep) < 0)
		return -1;
	*out = rep.counts;
	return 0;
}
