/*
 * test_resolver: the resolver inside a real loop, against fake DNS servers
 * on 127.0.0.1 (UDP and TCP on one port) driven by the same loop. Each fake
 * server counts the queries it sees, so cache hits, coalescing and the
 * numeric/hosts fast paths are shown by the absence of queries. Every wait
 * is bounded (unit_run_until); teardown checks that no descriptor leaked
 * (ASan checks memory).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "dns.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "resolver.h"

#include "unit_util.h"

/* --- fake DNS server ------------------------------------------------------ */

enum fake_mode {
	FAKE_ANSWER,      /* A and AAAA answers (naddrs each) */
	FAKE_NXDOMAIN,    /* NXDOMAIN with an SOA (TTL 60, MINIMUM 30) */
	FAKE_NODATA_AAAA, /* A answered, AAAA NOERROR/NODATA with an SOA */
	FAKE_SILENT,      /* counts queries, never answers */
	FAKE_SERVFAIL,    /* RCODE 2 */
	FAKE_TC,          /* TC=1 over UDP, the answer over TCP */
	FAKE_SPOOF_FIRST, /* wrong id, then wrong question, then the answer */
	FAKE_TC_HANG,     /* TC=1 over UDP; over TCP reads, never answers */
};

#define FAKE_MAX_CONNS 4

struct fake_dns;

struct fake_conn {
	struct fake_dns *fs;
	int fd; /* -1: slot free */
	struct watcher w;
	uint8_t buf[1024];
	size_t len;
};

struct fake_dns {
	struct loop *loop;
	int ufd, lfd;
	struct watcher wu, wl;
	union sockaddr_any addr; /* 127.0.0.1:port, UDP and TCP */
	enum fake_mode mode;
	uint32_t ttl;    /* answer TTL */
	unsigned naddrs; /* addresses per answer */
	unsigned udp_queries;
	unsigned tcp_queries;
	uint16_t last_ids[16];
	struct fake_conn conns[FAKE_MAX_CONNS];
};

/* Response to query q (one question) in out; returns its length. */
static size_t
fake_build(struct fake_dns *fs, const uint8_t *q, size_t qlen, bool tcp, uint8_t *out)
{
	size_t i = DNS_HEADER_LEN, o;
	uint16_t qtype, flags = 0x8180, an = 0, ns = 0;
	bool soa = false;

	while (i < qlen && q[i] != 0)
		i += (size_t)q[i] + 1;
	i++;
	assert_true(i + 4 <= qlen);
	qtype = (uint16_t)(q[i] << 8 | q[i + 1]);
	o = i + 4;
	memcpy(out, q, o);

	switch (fs->mode) {
	case FAKE_SERVFAIL:
		flags |= DNS_RCODE_SERVFAIL;
		break;
	case FAKE_NXDOMAIN:
		flags |= DNS_RCODE_NXDOMAIN;
		soa = true;
		break;
	case FAKE_TC:
	case FAKE_TC_HANG:
		if (!tcp) {
			flags |= 0x0200;
			break;
		}
		/* FALLTHROUGH */
	default:
		if (fs->mode == FAKE_NODATA_AAAA && qtype == DNS_TYPE_AAAA) {
			soa = true;
			break;
		}
		for (unsigned k = 0; k < fs->naddrs; k++) {
			uint8_t last = (uint8_t)((tcp ? 0x53 : 1) + k);

			out[o++] = 0xC0;
			out[o++] = 12;
			out[o++] = (uint8_t)(qtype >> 8);
			out[o++] = (uint8_t)qtype;
			out[o++] = 0;
			out[o++] = 1;
			out[o++] = (uint8_t)(fs->ttl >> 24);
			out[o++] = (uint8_t)(fs->ttl >> 16);
			out[o++] = (uint8_t)(fs->ttl >> 8);
			out[o++] = (uint8_t)fs->ttl;
			out[o++] = 0;
			if (qtype == DNS_TYPE_A) {
				static const uint8_t a[4] = { 192, 0, 2, 0 };

				out[o++] = 4;
				memcpy(out + o, a, 4);
				out[o + 3] = last;
				o += 4;
			} else {
				static const uint8_t a6[16] = { 0x20, 0x01, 0x0d, 0xb8 };

				out[o++] = 16;
				memcpy(out + o, a6, 16);
				out[o + 15] = last;
				o += 16;
			}
			an++;
		}
		break;
	}
	if (soa) {
		static const uint8_t rdata[] = {
			3, 'n', 's', '1', 0xC0, 12, 4, 'r', 'o', 'o', 't', 0xC0, 12, 0, 0, 0, 1, 0,
			0, 0x0e, 0x10, 0, 0, 0x07, 0x08, 0, 0x09, 0x3a, 0x80, 0, 0, 0,
			30, /* MINIMUM 30 */
		};

		out[o++] = 0xC0;
		out[o++] = 12;
		out[o++] = 0;
		out[o++] = DNS_TYPE_SOA;
		out[o++] = 0;
		out[o++] = 1;
		out[o++] = 0;
		out[o++] = 0;
		out[o++] = 0;
		out[o++] = 60; /* TTL 60 */
		out[o++] = 0;
		out[o++] = sizeof(rdata);
		memcpy(out + o, rdata, sizeof(rdata));
		o += sizeof(rdata);
		ns = 1;
	}
	out[2] = (uint8_t)(flags >> 8);
	out[3] = (uint8_t)flags;
	out[6] = (uint8_t)(an >> 8);
	out[7] = (uint8_t)an;
	out[8] = (uint8_t)(ns >> 8);
	out[9] = (uint8_t)ns;
	return o;
}

static void
fake_check_query(struct fake_dns *fs, const uint8_t *q, size_t n)
{
	unsigned total = fs->udp_queries + fs->tcp_queries;

	/* RFC 1035 §4.1.1: a standard query with RD, one question. */
	assert_true(n >= DNS_HEADER_LEN + 5);
	assert_int_equal(q[2], 0x01);
	assert_int_equal(q[3], 0x00);
	assert_int_equal(q[5], 1);
	fs->last_ids[total % 16] = (uint16_t)(q[0] << 8 | q[1]);
}

static void
fake_on_udp(struct loop *loop, unsigned events, void *arg)
{
	struct fake_dns *fs = arg;
	uint8_t q[1024], out[2048];
	union sockaddr_any peer;
	socklen_t plen;
	ssize_t n;
	size_t len;

	(void)loop;
	(void)events;
	for (;;) {
		plen = sizeof(peer);
		n = recvfrom(fs->ufd, q, sizeof(q), 0, &peer.sa, &plen);
		if (n < 0)
			return;
		fake_check_query(fs, q, (size_t)n);
		fs->udp_queries++;
		if (fs->mode == FAKE_SILENT)
			continue;
		len = fake_build(fs, q, (size_t)n, false, out);
		if (fs->mode == FAKE_SPOOF_FIRST) {
			uint8_t bad[2048];

			/* Wrong id, carrying an address we must never see. */
			memcpy(bad, out, len);
			bad[1] ^= 0x01;
			bad[len - 1] = 66;
			assert_int_equal(sendto(fs->ufd, bad, len, 0, &peer.sa, plen),
				(ssize_t)len);
			/* Right id, other question (first letter changed). */
			memcpy(bad, out, len);
			bad[13] = bad[13] == 'x' ? 'y' : 'x';
			bad[len - 1] = 67;
			assert_int_equal(sendto(fs->ufd, bad, len, 0, &peer.sa, plen),
				(ssize_t)len);
			/* Garbage. */
			assert_int_equal(sendto(fs->ufd, "\x01", 1, 0, &peer.sa, plen), 1);
		}
		assert_int_equal(sendto(fs->ufd, out, len, 0, &peer.sa, plen), (ssize_t)len);
	}
}

static void
fake_conn_close(struct fake_conn *c)
{
	loop_unwatch(c->fs->loop, &c->w);
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static void
fake_on_conn(struct loop *loop, unsigned events, void *arg)
{
	struct fake_conn *c = arg;
	struct fake_dns *fs = c->fs;
	uint8_t out[2048];
	size_t need, len;
	ssize_t n;

	(void)loop;
	(void)events;
	n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		fake_conn_close(c);
		return;
	}
	c->len += (size_t)n;
	if (c->len < 2)
		return;
	need = (size_t)c->buf[0] << 8 | c->buf[1];
	if (c->len < 2 + need)
		return;
	fake_check_query(fs, c->buf + 2, need);
	fs->tcp_queries++;
	if (fs->mode == FAKE_TC_HANG) {
		c->len = 0;
		return;
	}
	if (fs->mode != FAKE_SILENT) {
		len = fake_build(fs, c->buf + 2, need, true, out + 2);
		out[0] = (uint8_t)(len >> 8);
		out[1] = (uint8_t)len;
		/* A few hundred bytes into an empty loopback socket. */
		assert_int_equal(send(c->fd, out, len + 2, MSG_NOSIGNAL), (ssize_t)(len + 2));
	}
	fake_conn_close(c);
}

static void
fake_on_accept(struct loop *loop, unsigned events, void *arg)
{
	struct fake_dns *fs = arg;
	int fd;

	(void)events;
	while ((fd = accept4(fs->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		struct fake_conn *c = NULL;

		for (int i = 0; i < FAKE_MAX_CONNS; i++)
			if (fs->conns[i].fd < 0)
				c = &fs->conns[i];
		assert_non_null(c);
		c->fd = fd;
		c->len = 0;
		watcher_init(&c->w, fd, fake_on_conn, c);
		assert_int_equal(loop_watch(loop, &c->w, LOOP_READ), 0);
	}
}

static void
fake_start(struct fake_dns *fs, struct loop *loop)
{
	socklen_t len;

	memset(fs, 0, sizeof(*fs));
	fs->loop = loop;
	fs->ttl = 300;
	fs->naddrs = 1;
	for (int i = 0; i < FAKE_MAX_CONNS; i++) {
		fs->conns[i].fd = -1;
		fs->conns[i].fs = fs;
	}
	/* TCP and UDP on one port number: take a free TCP port, then the
	 * same UDP port; try again in the rare case that one is taken. */
	for (int tries = 0;; tries++) {
		assert_true(tries < 100);
		assert_int_equal(addr_parse("127.0.0.1", 0, &fs->addr), 0);
		fs->lfd = net_listen_tcp(&fs->addr, 8);
		assert_true(fs->lfd >= 0);
		len = sizeof(fs->addr.sin);
		assert_int_equal(getsockname(fs->lfd, &fs->addr.sa, &len), 0);
		fs->ufd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(fs->ufd >= 0);
		if (bind(fs->ufd, &fs->addr.sa, sizeof(fs->addr.sin)) == 0)
			break;
		close(fs->ufd);
		close(fs->lfd);
	}
	watcher_init(&fs->wu, fs->ufd, fake_on_udp, fs);
	watcher_init(&fs->wl, fs->lfd, fake_on_accept, fs);
	assert_int_equal(loop_watch(loop, &fs->wu, LOOP_READ), 0);
	assert_int_equal(loop_watch(loop, &fs->wl, LOOP_READ), 0);
}

static void
fake_stop(struct fake_dns *fs)
{
	for (int i = 0; i < FAKE_MAX_CONNS; i++)
		if (fs->conns[i].fd >= 0)
			fake_conn_close(&fs->conns[i]);
	loop_unwatch(fs->loop, &fs->wu);
	loop_unwatch(fs->loop, &fs->wl);
	close(fs->ufd);
	close(fs->lfd);
}

static unsigned
fake_queries(const struct fake_dns *fs)
{
	return fs->udp_queries + fs->tcp_queries;
}

/* --- test fixture ------------------------------------------------------- */

struct ctx;

struct waiter {
	struct ctx *c;
	struct resolver_query *q;
	int called;
	struct resolver_result res;
	struct waiter *cancel_on_call; /* cancels this one from its callback */
};

struct ctx {
	struct loop *loop;
	struct resolver *r;
	struct fake_dns fs[2];
	int ncalls; /* callbacks so far, all waiters */
	int want;   /* what calls_reached waits for */
	int fds_before;
	char dir[64];
	char hosts[96];
	char resolv[96];
	bool in_start; /* set around resolver_start */
};

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void
on_result(const struct resolver_result *res, void *arg)
{
	struct waiter *w = arg;

	/* Never from inside resolver_start (STYLE §4). */
	assert_false(w->c->in_start);
	w->called++;
	w->res = *res;
	/* An owner tearing down from its callback cancels what it holds:
	 * other waiters' handles, or its own (which must be a no-op). */
	if (w->cancel_on_call && w->cancel_on_call->q) {
		resolver_cancel(w->cancel_on_call->q);
		w->cancel_on_call->q = NULL;
	}
	w->q = NULL;
	w->c->ncalls++;
}

static void
start(struct ctx *c, struct waiter *w, const char *name)
{
	memset(w, 0, sizeof(*w));
	w->c = c;
	c->in_start = true;
	w->q = resolver_start(c->r, name, on_result, w);
	c->in_start = false;
	assert_non_null(w->q);
	assert_int_equal(w->called, 0);
}

static bool
calls_reached(void *arg)
{
	const struct ctx *c = arg;

	return c->ncalls >= c->want;
}

/* Runs the loop until `want` callbacks in all (since the fixture began)
 * have run or ms pass; returns false on the time limit. */
static bool
run_until_calls(struct ctx *c, int want, unsigned ms)
{
	c->want = want;
	return unit_run_until(c->loop, calls_reached, c, ms);
}

static void
make_resolver(struct ctx *c, int prefer, unsigned cache_size, unsigned max_ttl, size_t nservers)
{
	union sockaddr_any ns[2];
	struct resolver_options opt;

	for (size_t i = 0; i < nservers; i++)
		ns[i] = c->fs[i].addr;
	memset(&opt, 0, sizeof(opt));
	opt.nameservers = ns;
	opt.nnameservers = nservers;
	opt.prefer_family = prefer;
	opt.cache_size = cache_size;
	opt.cache_max_ttl = max_ttl;
	opt.hosts_path = c->hosts;
	opt.resolv_conf_path = c->resolv;
	c->r = resolver_new(c->loop, &opt);
	assert_non_null(c->r);
	/* Short tries keep the failure paths quick; tests of the
	 * resolv.conf options make their own resolver. */
	resolver_set_timeout(c->r, 300, 2);
}

static int
setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->fds_before = count_fds();
	strcpy(c->dir, "/tmp/test_resolver.XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	snprintf(c->hosts, sizeof(c->hosts), "%s/hosts", c->dir);
	snprintf(c->resolv, sizeof(c->resolv), "%s/resolv.conf", c->dir);
	write_file(c->hosts, "# empty\n");
	write_file(c->resolv, "# options only\n");
	c->loop = loop_new();
	assert_non_null(c->loop);
	fake_start(&c->fs[0], c->loop);
	fake_start(&c->fs[1], c->loop);
	*state = c;
	return 0;
}

static int
teardown(void **state)
{
	struct ctx *c = *state;

	resolver_free(c->r);
	fake_stop(&c->fs[0]);
	fake_stop(&c->fs[1]);
	loop_free(c->loop);
	unlink(c->hosts);
	unlink(c->resolv);
	rmdir(c->dir);
	/* Every socket a lookup opened is closed again. */
	assert_int_equal(count_fds(), c->fds_before);
	free(c);
	return 0;
}

static const char *
addr_str(const struct resolver_result *res, size_t i, char *buf, size_t cap)
{
	assert_true(i < res->naddrs);
	assert_int_equal(addr_port(&res->addrs[i]), 0);
	return addr_ip_format(&res->addrs[i], buf, cap);
}

#define assert_addr(res, i, want)                                                      \
	do {                                                                           \
		char buf_[INET6_ADDRSTRLEN + 8];                                       \
		assert_string_equal(addr_str((res), (i), buf_, sizeof(buf_)), (want)); \
	} while (0)

/* --- tests ---------------------------------------------------------------- */

static void
test_resolves_name_a_and_aaaa(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	make_resolver(c, AF_INET, 0, 3600, 1);
	start(c, &w, "www.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w.called, 1);
	assert_int_equal(w.res.status, RESOLVER_OK);
	assert_int_equal(w.res.naddrs, 2);
	assert_addr(&w.res, 0, "192.0.2.1");
	assert_addr(&w.res, 1, "2001:db8::1");
	/* One A and one AAAA query, with different ids. */
	assert_int_equal(c->fs[0].udp_queries, 2);
	assert_int_not_equal(c->fs[0].last_ids[0], c->fs[0].last_ids[1]);
}

static void
test_prefer_ipv6_orders_aaaa_first(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	c->fs[0].naddrs = 3;
	make_resolver(c, AF_INET6, 0, 3600, 1);
	start(c, &w, "multi.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w.res.status, RESOLVER_OK);
	assert_int_equal(w.res.naddrs, 6);
	assert_addr(&w.res, 0, "2001:db8::1");
	assert_addr(&w.res, 1, "2001:db8::2");
	assert_addr(&w.res, 2, "2001:db8::3");
	assert_addr(&w.res, 3, "192.0.2.1");
	assert_addr(&w.res, 5, "192.0.2.3");
}

static void
test_at_most_max_addrs(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	c->fs[0].naddrs = 12;
	make_resolver(c, AF_INET, 0, 3600, 1);
	start(c, &w, "many.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w.res.naddrs, RESOLVER_MAX_ADDRS);
	assert_addr(&w.res, 11, "192.0.2.12");
	assert_addr(&w.res, 12, "2001:db8::1");
}

static void
test_nxdomain_is_reported_and_cached(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2;

	c->fs[0].mode = FAKE_NXDOMAIN;
	make_resolver(c, AF_INET, 100, 3600, 1);
	start(c, &w1, "nope.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w1.res.status, RESOLVER_NXDOMAIN);
	assert_int_equal(w1.res.naddrs, 0);
	/* NXDOMAIN ends the lookup: at most the two queries sent at once. */
	assert_true(fake_queries(&c->fs[0]) <= 2);
	c->fs[0].udp_queries = 0;
	/* Negative answer cached by its SOA (min(60, 30) s). */
	start(c, &w2, "NOPE.example.com.");
	assert_true(run_until_calls(c, 2, 3000));
	assert_int_equal(w2.res.status, RESOLVER_NXDOMAIN);
	assert_int_equal(c->fs[0].udp_queries, 0);
}

static void
test_nodata_for_one_family(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	c->fs[0].mode = FAKE_NODATA_AAAA;
	make_resolver(c, AF_INET6, 0, 3600, 1);
	start(c, &w, "v4only.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w.res.status, RESOLVER_OK);
	assert_int_equal(w.res.naddrs, 1);
	assert_addr(&w.res, 0, "192.0.2.1");
}

static void
test_nodata_for_both_families(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	c->fs[0].mode = FAKE_NODATA_AAAA;
	c->fs[0].naddrs = 0; /* A: NOERROR without records either */
	make_resolver(c, AF_INET, 0, 3600, 1);
	start(c, &w, "empty.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w.res.status, RESOLVER_NODATA);
	assert_int_equal(w.res.naddrs, 0);
}

static void
test_wrong_id_and_question_ignored_then_answer_accepted(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	c->fs[0].mode = FAKE_SPOOF_FIRST;
	make_resolver(c, AF_INET, 0, 3600, 1);
	start(c, &w, "spoof.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w.res.status, RESOLVER_OK);
	assert_int_equal(w.res.naddrs, 2);
	assert_addr(&w.res, 0, "192.0.2.1");
	assert_addr(&w.res, 1, "2001:db8::1");
	/* The good answer came in the same wait: no retry was needed. */
	assert_int_equal(c->fs[0].udp_queries, 2);
}

static void
test_truncated_answer_retried_over_tcp(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	c->fs[0].mode = FAKE_TC;
	make_resolver(c, AF_INET, 0, 3600, 1);
	start(c, &w, "big.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w.res.status, RESOLVER_OK);
	/* The TCP answers carry ...53 addresses; the UDP ones had none. */
	assert_int_equal(w.res.naddrs, 2);
	assert_addr(&w.res, 0, "192.0.2.83");
	assert_addr(&w.res, 1, "2001:db8::53");
	assert_int_equal(c->fs[0].udp_queries, 2);
	assert_int_equal(c->fs[0].tcp_queries, 2);
}

static void
test_timeout_from_resolv_conf_options(void **state)
{
	struct ctx *c = *state;
	struct resolver_options opt;
	union sockaddr_any ns = c->fs[0].addr;
	struct waiter w;

	/* resolv.conf(5) options; the servers come from the options since
	 * resolv.conf cannot name a port. */
	write_file(c->resolv, "nameserver 192.0.2.99\noptions timeout:1 attempts:1\n");
	c->fs[0].mode = FAKE_SILENT;
	memset(&opt, 0, sizeof(opt));
	opt.nameservers = &ns;
	opt.nnameservers = 1;
	opt.prefer_family = AF_INET;
	opt.hosts_path = c->hosts;
	opt.resolv_conf_path = c->resolv;
	c->r = resolver_new(c->loop, &opt);
	assert_non_null(c->r);
	start(c, &w, "silent.example.com");
	/* After ~1 s, well before the 5 s default. */
	unit_run_for(c->loop, 700, UNIT_RUN_WAIT_MS);
	assert_int_equal(w.called, 0);
	assert_true(run_until_calls(c, 1, 2500));
	assert_int_equal(w.res.status, RESOLVER_TIMEOUT);
	/* attempts:1 with one server: one try per family. */
	assert_int_equal(c->fs[0].udp_queries, 2);
}

/* timeout dns and dns-attempts (issue 20): the configured values win over
 * the host's resolv.conf, so a test or a deployment that names its
 * nameservers does not depend on the machine's resolver options. */
static void
test_options_timeout_and_attempts_win_over_resolv_conf(void **state)
{
	struct ctx *c = *state;
	struct resolver_options opt;
	union sockaddr_any ns = c->fs[0].addr;
	struct waiter w;

	write_file(c->resolv, "options timeout:30 attempts:5\n");
	c->fs[0].mode = FAKE_SILENT;
	memset(&opt, 0, sizeof(opt));
	opt.nameservers = &ns;
	opt.nnameservers = 1;
	opt.prefer_family = AF_INET;
	opt.hosts_path = c->hosts;
	opt.resolv_conf_path = c->resolv;
	opt.timeout_ms = 1000;
	opt.attempts = 1;
	c->r = resolver_new(c->loop, &opt);
	assert_non_null(c->r);
	start(c, &w, "silent.example.com");
	assert_true(run_until_calls(c, 1, 2500));
	assert_int_equal(w.res.status, RESOLVER_TIMEOUT);
	/* One attempt with one server: one try per family, not five. */
	assert_int_equal(c->fs[0].udp_queries, 2);
}

/* strnum: "attempts:+4" is not a number (strtoul took it as 4); the
 * option is ignored and the default of 2 attempts stands. */
static void
test_resolv_conf_option_with_a_sign_is_ignored(void **state)
{
	struct ctx *c = *state;
	struct resolver_options opt;
	union sockaddr_any ns = c->fs[0].addr;
	struct waiter w;

	write_file(c->resolv, "options timeout:1 attempts:+4\n");
	c->fs[0].mode = FAKE_SILENT;
	memset(&opt, 0, sizeof(opt));
	opt.nameservers = &ns;
	opt.nnameservers = 1;
	opt.prefer_family = AF_INET;
	opt.hosts_path = c->hosts;
	opt.resolv_conf_path = c->resolv;
	c->r = resolver_new(c->loop, &opt);
	assert_non_null(c->r);
	start(c, &w, "silent.example.com");
	assert_true(run_until_calls(c, 1, 3500));
	assert_int_equal(w.res.status, RESOLVER_TIMEOUT);
	/* Two attempts with one server: two tries per family. */
	assert_int_equal(c->fs[0].udp_queries, 4);
}

static void
test_resolv_conf_nameserver_used_without_options(void **state)
{
	struct ctx *c = *state;
	struct resolver_options opt;
	struct waiter w;

	/* Nothing listens on port 53 of 127.0.0.2 (in a test sandbox): the
	 * answer is an ICMP refusal or silence, never a hang. */
	write_file(c->resolv, "; comment\nnameserver 127.0.0.2\noptions timeout:1 attempts:1\n");
	memset(&opt, 0, sizeof(opt));
	opt.prefer_family = AF_INET;
	opt.hosts_path = c->hosts;
	opt.resolv_conf_path = c->resolv;
	c->r = resolver_new(c->loop, &opt);
	assert_non_null(c->r);
	start(c, &w, "refused.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_true(w.res.status == RESOLVER_SERVFAIL || w.res.status == RESOLVER_TIMEOUT ||
		w.res.status == RESOLVER_OK || w.res.status == RESOLVER_NXDOMAIN);
	assert_int_equal(fake_queries(&c->fs[0]), 0);
}

static void
test_second_server_after_silent_first(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	c->fs[0].mode = FAKE_SILENT;
	make_resolver(c, AF_INET, 0, 3600, 2);
	start(c, &w, "failover.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w.res.status, RESOLVER_OK);
	assert_int_equal(c->fs[0].udp_queries, 2);
	assert_int_equal(c->fs[1].udp_queries, 2);
}

static void
test_refused_port_moves_on_at_once(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	/* Server 0 closed: the connected socket gets ECONNREFUSED (ICMP)
	 * long before the 300 ms try timeout. */
	loop_unwatch(c->loop, &c->fs[0].wu);
	close(c->fs[0].ufd);
	c->fs[0].ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	make_resolver(c, AF_INET, 0, 3600, 2);
	resolver_set_timeout(c->r, 5000, 1);
	start(c, &w, "refused.example.com");
	assert_true(run_until_calls(c, 1, 2000));
	assert_int_equal(w.res.status, RESOLVER_OK);
	assert_int_equal(c->fs[1].udp_queries, 2);
}

static void
test_servfail_everywhere(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	c->fs[0].mode = FAKE_SERVFAIL;
	c->fs[1].mode = FAKE_SERVFAIL;
	make_resolver(c, AF_INET, 100, 3600, 2);
	start(c, &w, "broken.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w.res.status, RESOLVER_SERVFAIL);
	/* 2 attempts x 2 servers x 2 families, alternating servers. */
	assert_int_equal(c->fs[0].udp_queries, 4);
	assert_int_equal(c->fs[1].udp_queries, 4);
	/* Failures are not cached. */
	start(c, &w, "broken.example.com");
	assert_true(run_until_calls(c, 2, 3000));
	assert_int_equal(c->fs[0].udp_queries, 8);
}

static void
test_cache_hit_sends_no_query(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2;

	make_resolver(c, AF_INET, 100, 3600, 1);
	start(c, &w1, "cached.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(c->fs[0].udp_queries, 2);
	start(c, &w2, "Cached.Example.COM");
	assert_true(run_until_calls(c, 2, 3000));
	assert_int_equal(w2.res.status, RESOLVER_OK);
	assert_int_equal(w2.res.naddrs, 2);
	assert_addr(&w2.res, 0, "192.0.2.1");
	assert_int_equal(c->fs[0].udp_queries, 2);
}

static void
test_cache_disabled_asks_again(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2;

	make_resolver(c, AF_INET, 0, 3600, 1);
	start(c, &w1, "nocache.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	start(c, &w2, "nocache.example.com");
	assert_true(run_until_calls(c, 2, 3000));
	assert_int_equal(c->fs[0].udp_queries, 4);
}

static void
test_cache_ttl_capped_by_max_ttl(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2, w3;

	/* TTL 300 from the server, 1 s from the configuration. */
	make_resolver(c, AF_INET, 100, 1, 1);
	start(c, &w1, "short.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	start(c, &w2, "short.example.com");
	assert_true(run_until_calls(c, 2, 3000));
	assert_int_equal(c->fs[0].udp_queries, 2);
	unit_run_for(c->loop, 1100, UNIT_RUN_WAIT_MS);
	start(c, &w3, "short.example.com");
	assert_true(run_until_calls(c, 3, 3000));
	assert_int_equal(w3.res.status, RESOLVER_OK);
	assert_int_equal(c->fs[0].udp_queries, 4);
}

static void
test_cache_zero_ttl_not_cached(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2;

	c->fs[0].ttl = 0;
	make_resolver(c, AF_INET, 100, 3600, 1);
	start(c, &w1, "zero.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	start(c, &w2, "zero.example.com");
	assert_true(run_until_calls(c, 2, 3000));
	assert_int_equal(c->fs[0].udp_queries, 4);
}

static void
test_cache_evicts_least_recently_used(void **state)
{
	struct ctx *c = *state;
	struct waiter w[6];

	make_resolver(c, AF_INET, 2, 3600, 1);
	start(c, &w[0], "a.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	start(c, &w[1], "b.example.com");
	assert_true(run_until_calls(c, 2, 3000));
	/* a used again: b is now the least recently used. */
	start(c, &w[2], "a.example.com");
	assert_true(run_until_calls(c, 3, 3000));
	assert_int_equal(c->fs[0].udp_queries, 4);
	start(c, &w[3], "c.example.com");
	assert_true(run_until_calls(c, 4, 3000));
	assert_int_equal(c->fs[0].udp_queries, 6);
	start(c, &w[4], "a.example.com");
	assert_true(run_until_calls(c, 5, 3000));
	assert_int_equal(c->fs[0].udp_queries, 6);
	start(c, &w[5], "b.example.com");
	assert_true(run_until_calls(c, 6, 3000));
	assert_int_equal(c->fs[0].udp_queries, 8);
	assert_int_equal(w[5].res.status, RESOLVER_OK);
}

static void
test_coalescing_two_lookups_one_query(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2;

	make_resolver(c, AF_INET, 0, 3600, 1);
	start(c, &w1, "shared.example.com");
	start(c, &w2, "SHARED.example.com.");
	assert_true(run_until_calls(c, 2, 3000));
	assert_int_equal(w1.called, 1);
	assert_int_equal(w2.called, 1);
	assert_int_equal(w1.res.status, RESOLVER_OK);
	assert_int_equal(w2.res.status, RESOLVER_OK);
	assert_int_equal(w2.res.naddrs, 2);
	assert_int_equal(c->fs[0].udp_queries, 2);
}

static void
test_cancel_one_waiter_keeps_the_others_lookup(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2, w3;

	make_resolver(c, AF_INET, 0, 3600, 1);
	start(c, &w1, "keep.example.com");
	start(c, &w2, "keep.example.com");
	start(c, &w3, "keep.example.com");
	resolver_cancel(w1.q);
	w1.q = NULL;
	/* w2's callback cancels w3 while the lookup is delivering. */
	w2.cancel_on_call = &w3;
	assert_true(run_until_calls(c, 1, 3000));
	unit_run_for(c->loop, 50, UNIT_RUN_WAIT_MS);
	assert_int_equal(w1.called, 0);
	assert_int_equal(w2.called, 1);
	assert_int_equal(w3.called, 0);
	assert_int_equal(w2.res.status, RESOLVER_OK);
	assert_int_equal(c->fs[0].udp_queries, 2);
}

static void
test_cancel_before_answer_leaks_nothing(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2, w3;

	c->fs[0].mode = FAKE_SILENT;
	make_resolver(c, AF_INET, 100, 3600, 1);
	/* Cancelled before the first send... */
	start(c, &w1, "early.example.com");
	resolver_cancel(w1.q);
	/* ...after it, with the UDP sockets open... */
	start(c, &w2, "late.example.com");
	unit_run_for(c->loop, 50, UNIT_RUN_WAIT_MS);
	assert_int_equal(c->fs[0].udp_queries, 2);
	resolver_cancel(w2.q);
	/* ...and a ready answer cancelled before its delivery. */
	start(c, &w3, "192.0.2.1");
	resolver_cancel(w3.q);
	unit_run_for(c->loop, 700, UNIT_RUN_WAIT_MS);
	assert_int_equal(w1.called + w2.called + w3.called, 0);
	/* teardown: fd count and ASan show nothing left behind. */
}

static void
test_cancel_inside_own_callback_is_harmless(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	make_resolver(c, AF_INET, 0, 3600, 1);
	start(c, &w, "self.example.com");
	/* The owner closing from inside the callback cancels its handle. */
	w.cancel_on_call = &w;
	assert_true(run_until_calls(c, 1, 3000));
	assert_int_equal(w.called, 1);
}

static void
test_free_with_lookups_in_flight(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2, w3;

	c->fs[0].mode = FAKE_TC_HANG;
	make_resolver(c, AF_INET, 100, 3600, 1);
	start(c, &w1, "tcp.example.com");
	unit_run_for(c->loop, 50, UNIT_RUN_WAIT_MS);
	/* Both queries moved to TCP and wait there for an answer. */
	assert_int_equal(c->fs[0].tcp_queries, 2);
	start(c, &w2, "pending.example.com");
	start(c, &w3, "::1");
	resolver_free(c->r);
	c->r = NULL;
	unit_run_for(c->loop, 50, UNIT_RUN_WAIT_MS);
	assert_int_equal(w1.called + w2.called + w3.called, 0);
}

static void
test_numeric_literals_need_no_query(void **state)
{
	struct ctx *c = *state;
	struct waiter w4, w6;

	make_resolver(c, AF_INET, 100, 3600, 1);
	start(c, &w4, "192.0.2.7");
	start(c, &w6, "2001:db8::7");
	assert_true(run_until_calls(c, 2, 1000));
	assert_int_equal(w4.res.status, RESOLVER_OK);
	assert_int_equal(w4.res.naddrs, 1);
	assert_addr(&w4.res, 0, "192.0.2.7");
	assert_int_equal(w6.res.naddrs, 1);
	assert_addr(&w6.res, 0, "2001:db8::7");
	assert_int_equal(fake_queries(&c->fs[0]), 0);
}

static void
test_hosts_file_served_without_query(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2, w3;

	write_file(c->hosts,
		"# test hosts\n"
		"10.1.2.3\tmyhost.test alias  # trailing comment\n"
		"fd00::5 MyHost.Test\n"
		"10.1.2.4 myhost.test\n"
		"bogus-address other.test\n");
	make_resolver(c, AF_INET6, 100, 3600, 1);
	start(c, &w1, "myhost.test");
	start(c, &w2, "ALIAS.");
	start(c, &w3, "other.test");
	c->fs[0].mode = FAKE_NXDOMAIN;
	assert_true(run_until_calls(c, 3, 3000));
	assert_int_equal(w1.res.status, RESOLVER_OK);
	assert_int_equal(w1.res.naddrs, 3);
	assert_addr(&w1.res, 0, "fd00::5");
	assert_addr(&w1.res, 1, "10.1.2.3");
	assert_addr(&w1.res, 2, "10.1.2.4");
	assert_int_equal(w2.res.naddrs, 1);
	assert_addr(&w2.res, 0, "10.1.2.3");
	/* Not in hosts (its line was bad): asked, and the server says no. */
	assert_int_equal(w3.res.status, RESOLVER_NXDOMAIN);
	assert_true(fake_queries(&c->fs[0]) >= 1 && fake_queries(&c->fs[0]) <= 2);
}

static void
test_hosts_file_reloaded_when_changed(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2;

	write_file(c->hosts, "10.0.0.1 moving.test\n");
	make_resolver(c, AF_INET, 0, 3600, 1);
	start(c, &w1, "moving.test");
	assert_true(run_until_calls(c, 1, 1000));
	assert_addr(&w1.res, 0, "10.0.0.1");
	write_file(c->hosts, "10.0.0.2 moving.test\n# a longer file now\n");
	unit_run_for(c->loop, 1100, UNIT_RUN_WAIT_MS);
	start(c, &w2, "moving.test");
	assert_true(run_until_calls(c, 2, 1000));
	assert_addr(&w2.res, 0, "10.0.0.2");
	assert_int_equal(fake_queries(&c->fs[0]), 0);
}

/* hosts_lookup read r->nhosts before hosts_refresh reloaded the file, so a
 * hosts file that shrank or vanished was searched with the old count:
 * a heap over-read of the new array, or a NULL dereference (clang-tidy
 * clang-analyzer-core.NullDereference, make lint). */
static void
test_hosts_file_shrunk_or_removed(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2, w3;

	write_file(c->hosts,
		"10.0.0.1 a.test\n10.0.0.2 b.test\n10.0.0.3 c.test\n"
		"10.0.0.4 d.test\n10.0.0.5 e.test\n10.0.0.6 f.test\n");
	make_resolver(c, AF_INET, 0, 3600, 1);
	c->fs[0].mode = FAKE_NXDOMAIN;
	start(c, &w1, "f.test");
	assert_true(run_until_calls(c, 1, 1000));
	assert_addr(&w1.res, 0, "10.0.0.6");
	write_file(c->hosts, "10.0.0.9 z.test\n");
	unit_run_for(c->loop, 1100, UNIT_RUN_WAIT_MS);
	start(c, &w2, "z.test");
	assert_true(run_until_calls(c, 2, 1000));
	assert_int_equal(w2.res.status, RESOLVER_OK);
	assert_addr(&w2.res, 0, "10.0.0.9");
	unlink(c->hosts);
	unit_run_for(c->loop, 1100, UNIT_RUN_WAIT_MS);
	start(c, &w3, "z.test");
	assert_true(run_until_calls(c, 3, 3000));
	assert_int_equal(w3.res.status, RESOLVER_NXDOMAIN);
}

static void
test_localhost_builtin_when_hosts_lacks_it(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2;

	make_resolver(c, AF_INET6, 0, 3600, 1);
	start(c, &w1, "localhost");
	start(c, &w2, "foo.LOCALHOST.");
	assert_true(run_until_calls(c, 2, 1000));
	assert_int_equal(w1.res.status, RESOLVER_OK);
	assert_int_equal(w1.res.naddrs, 2);
	assert_addr(&w1.res, 0, "::1");
	assert_addr(&w1.res, 1, "127.0.0.1");
	assert_int_equal(w2.res.naddrs, 2);
	assert_int_equal(fake_queries(&c->fs[0]), 0);
}

static void
test_localhost_from_hosts_wins(void **state)
{
	struct ctx *c = *state;
	struct waiter w;

	write_file(c->hosts, "127.0.0.2 localhost\n");
	make_resolver(c, AF_INET6, 0, 3600, 1);
	start(c, &w, "localhost");
	assert_true(run_until_calls(c, 1, 1000));
	assert_int_equal(w.res.naddrs, 1);
	assert_addr(&w.res, 0, "127.0.0.2");
}

static void
test_bad_names_rejected_without_query(void **state)
{
	static const char *const names[] = {
		"",
		"a..b",
		"bad name.com",
		"-\x01-",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
	};
	struct ctx *c = *state;
	struct waiter w[5];

	make_resolver(c, AF_INET, 0, 3600, 1);
	for (int i = 0; i < 5; i++)
		start(c, &w[i], names[i]);
	assert_true(run_until_calls(c, 5, 1000));
	for (int i = 0; i < 5; i++)
		assert_int_equal(w[i].res.status, RESOLVER_BADNAME);
	assert_int_equal(fake_queries(&c->fs[0]), 0);
}

static void
test_callback_may_start_the_same_name_again(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2;

	make_resolver(c, AF_INET, 100, 3600, 1);
	start(c, &w1, "again.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	/* Started after the first answer (from the cache now): delivered on
	 * a later iteration like any other. */
	start(c, &w2, "again.example.com");
	assert_int_equal(w2.called, 0);
	assert_true(run_until_calls(c, 2, 1000));
	assert_int_equal(w2.res.status, RESOLVER_OK);
	assert_int_equal(c->fs[0].udp_queries, 2);
}

static void
test_reconfigure_switches_servers_and_flushes_cache(void **state)
{
	struct ctx *c = *state;
	struct resolver_options opt;
	union sockaddr_any ns = c->fs[1].addr;
	struct waiter w1, w2, w3;

	make_resolver(c, AF_INET, 100, 3600, 1);
	start(c, &w1, "reload.example.com");
	assert_true(run_until_calls(c, 1, 3000));
	assert_addr(&w1.res, 0, "192.0.2.1");

	/* SIGHUP: server 1 now, IPv6 first, a hosts entry for a new name. */
	write_file(c->hosts, "10.9.9.9 new.test\n");
	memset(&opt, 0, sizeof(opt));
	opt.nameservers = &ns;
	opt.nnameservers = 1;
	opt.prefer_family = AF_INET6;
	opt.cache_size = 10;
	opt.cache_max_ttl = 60;
	opt.hosts_path = c->hosts;
	opt.resolv_conf_path = c->resolv;
	resolver_reconfigure(c->r, &opt);
	start(c, &w2, "reload.example.com");
	start(c, &w3, "new.test");
	assert_true(run_until_calls(c, 3, 3000));
	/* The cache was emptied: asked again, of the new server. */
	assert_int_equal(c->fs[0].udp_queries, 2);
	assert_int_equal(c->fs[1].udp_queries, 2);
	assert_addr(&w2.res, 0, "2001:db8::1");
	assert_addr(&w3.res, 0, "10.9.9.9");
}

/* Issue 17 item 5: against a nameserver that never answers, lookups of
 * ever new names piled up two sockets each. max_lookups refuses new ones at
 * once; names in flight, numbers and answers without a query still work. */
static void
test_max_lookups_refuses_new_lookups_at_once(void **state)
{
	struct ctx *c = *state;
	struct waiter w1, w2, w3, w4, w5, w6;
	union sockaddr_any ns = c->fs[0].addr;
	struct resolver_options opt;
	int fds;

	c->fs[0].mode = FAKE_SILENT;
	memset(&opt, 0, sizeof(opt));
	opt.nameservers = &ns;
	opt.nnameservers = 1;
	opt.prefer_family = AF_INET;
	opt.hosts_path = c->hosts;
	opt.resolv_conf_path = c->resolv;
	opt.max_lookups = 2;
	c->r = resolver_new(c->loop, &opt);
	assert_non_null(c->r);
	resolver_set_timeout(c->r, 5000, 1);
	fds = count_fds();
	start(c, &w1, "one.example.com");
	start(c, &w2, "two.example.com");
	unit_run_for(c->loop, 30, UNIT_RUN_WAIT_MS);
	assert_int_equal(count_fds(), fds + 4);
	start(c, &w3, "three.example.com");
	start(c, &w4, "ONE.example.com"); /* joins w1's lookup */
	start(c, &w5, "192.0.2.5");
	/* w3 is answered on the next iteration, not when the others time out. */
	assert_true(run_until_calls(c, 2, 1000));
	assert_int_equal(w3.called, 1);
	assert_int_equal(w3.res.status, RESOLVER_LIMIT);
	assert_int_equal(w5.called, 1);
	assert_int_equal(w5.res.status, RESOLVER_OK);
	assert_int_equal(w4.called, 0);
	assert_int_equal(count_fds(), fds + 4);
	assert_int_equal(resolver_get_stats(c->r)->refused, 1);
	/* A lookup given up frees its place. */
	resolver_cancel(w2.q);
	w2.q = NULL;
	start(c, &w6, "three.example.com");
	unit_run_for(c->loop, 30, UNIT_RUN_WAIT_MS);
	assert_int_equal(w6.called, 0);
	assert_int_equal(count_fds(), fds + 4);
	assert_int_equal(resolver_get_stats(c->r)->refused, 1);
	resolver_cancel(w1.q);
	resolver_cancel(w4.q);
	resolver_cancel(w6.q);
	w1.q = w4.q = w6.q = NULL;
	unit_run_for(c->loop, 10, UNIT_RUN_WAIT_MS);
	assert_int_equal(count_fds(), fds);
}

static void
test_status_strings(void **state)
{
	(void)state;
	for (int st = RESOLVER_OK; st <= RESOLVER_LIMIT; st++)
		assert_string_not_equal(resolver_status_str((enum resolver_status)st), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_resolves_name_a_and_aaaa, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefer_ipv6_orders_aaaa_first, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_at_most_max_addrs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nxdomain_is_reported_and_cached, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_nodata_for_one_family, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nodata_for_both_families, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_wrong_id_and_question_ignored_then_answer_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_answer_retried_over_tcp, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_timeout_from_resolv_conf_options, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_options_timeout_and_attempts_win_over_resolv_conf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolv_conf_option_with_a_sign_is_ignored,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolv_conf_nameserver_used_without_options,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_server_after_silent_first, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_refused_port_moves_on_at_once, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_servfail_everywhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_hit_sends_no_query, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_disabled_asks_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_ttl_capped_by_max_ttl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_zero_ttl_not_cached, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_evicts_least_recently_used, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_coalescing_two_lookups_one_query, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_cancel_one_waiter_keeps_the_others_lookup,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_before_answer_leaks_nothing, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_cancel_inside_own_callback_is_harmless, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_free_with_lookups_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_numeric_literals_need_no_query, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_hosts_file_served_without_query, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_hosts_file_reloaded_when_changed, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_hosts_file_shrunk_or_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_localhost_builtin_when_hosts_lacks_it, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_localhost_from_hosts_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_names_rejected_without_query, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_callback_may_start_the_same_name_again, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_reconfigure_switches_servers_and_flushes_cache,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_lookups_refuses_new_lookups_at_once, setup,
			teardown),
		cmocka_unit_test(test_status_strings),
	};

	/* A last bound in case a loop ever stops calling back. */
	alarm(120);
	log_init(getenv("TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
