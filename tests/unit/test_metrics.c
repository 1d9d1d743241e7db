/*
 * test_metrics: the scrape endpoint against a real loop on 127.0.0.1.
 * Clients are nonblocking sockets of the test driven by the same loop
 * (send a script of bytes, optionally in paced chunks, read until EOF), so
 * every exchange is real TCP with real partial reads and backpressure.
 * Every wait for the loop is bounded (unit_run_until): a hang fails the test.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "net.h"

#include "unit_util.h"

#define GUARD_MS 10000
#define BIG_BODY (8u << 20) /* far beyond any socket buffer */

struct fx;

/* A scripted HTTP client living in the test's loop. */
struct tclient {
	struct fx *f;
	int fd;
	struct watcher w;
	struct timer pace;
	const uint8_t *req; /* bytes to send */
	size_t req_len, sent;
	size_t chunk;     /* bytes per send; 0 = as many as fit */
	unsigned pace_ms; /* pause between chunks */
	bool half_close;  /* shutdown(SHUT_WR) after the last byte */
	uint8_t *resp;    /* everything received, NUL-terminated */
	size_t resp_len, resp_cap;
	bool done;  /* EOF or error seen, socket closed */
	bool reset; /* it ended in ECONNRESET */
	uint64_t start_ms, end_ms;
};

struct fx {
	struct loop *loop;
	struct metrics_server *m;
	union sockaddr_any addr;
	unsigned renders;    /* render callback calls */
	bool big;            /* render BIG_BODY bytes of pattern */
	bool stop_in_render; /* render calls metrics_stop */
	size_t running;      /* clients not done */
	size_t stop_at;      /* run() returns when running falls to this */
	int trigger[2];      /* socketpair for test_stop_mid_batch */
	struct watcher trigger_w;
};

/* --- server side --------------------------------------------------------- */

static uint8_t
pattern_byte(size_t i)
{
	return (uint8_t)("0123456789abcdefghijklmnopqrstuvwxyz\n"[i % 37]);
}

static void
render(FILE *out, void *arg)
{
	struct fx *f = arg;

	f->renders++;
	if (f->stop_in_render) {
		metrics_stop(f->m);
		f->m = NULL;
	}
	if (f->big) {
		for (size_t i = 0; i < BIG_BODY; i++)
			fputc(pattern_byte(i), out);
		return;
	}
	fprintf(out,
		"# HELP socks5d_test_scrapes_total Scrapes so far.\n"
		"# TYPE socks5d_test_scrapes_total counter\n"
		"socks5d_test_scrapes_total %u\n",
		f->renders);
}

static void
expected_body(unsigned n, char *out, size_t cap)
{
	snprintf(out, cap,
		"# HELP socks5d_test_scrapes_total Scrapes so far.\n"
		"# TYPE socks5d_test_scrapes_total counter\n"
		"socks5d_test_scrapes_total %u\n",
		n);
}

/* --- loop helpers -------------------------------------------------------- */

static bool
settled(void *arg)
{
	const struct fx *f = arg;

	return f->running <= f->stop_at;
}

/* Runs until running falls to stop_at. */
static void
run(struct fx *f)
{
	assert_true(unit_run_until(f->loop, settled, f, GUARD_MS));
}

/* --- the client ---------------------------------------------------------- */

static void
tclient_finish(struct tclient *c)
{
	struct fx *f = c->f;

	c->done = true;
	loop_update_time(f->loop);
	c->end_ms = loop_now(f->loop);
	timer_stop(f->loop, &c->pace);
	loop_unwatch(f->loop, &c->w);
	close(c->fd);
	c->fd = -1;
	f->running--;
}

static void
tclient_want(struct tclient *c, unsigned mask)
{
	assert_int_equal(loop_watch(c->f->loop, &c->w, mask), 0);
}

static void
tclient_send(struct tclient *c)
{
	size_t n = c->req_len - c->sent;
	ssize_t k;

	if (c->chunk && n > c->chunk)
		n = c->chunk;
	k = send(c->fd, c->req + c->sent, n, MSG_NOSIGNAL);
	if (k < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		/* The server closed on us: stop sending, read what it said. */
		tclient_want(c, LOOP_READ);
		return;
	}
	c->sent += (size_t)k;
	if (c->sent == c->req_len) {
		if (c->half_close)
			assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
		tclient_want(c, LOOP_READ);
	} else if (c->pace_ms) {
		tclient_want(c, LOOP_READ);
		timer_start(c->f->loop, &c->pace, c->pace_ms);
	}
}

static void
tclient_recv(struct tclient *c)
{
	for (;;) {
		ssize_t n;

		if (c->resp_cap - c->resp_len < 65536 + 1) {
			c->resp_cap = c->resp_cap ? c->resp_cap * 2 : 131072;
			c->resp = realloc(c->resp, c->resp_cap);
			assert_non_null(c->resp);
		}
		n = read(c->fd, c->resp + c->resp_len, 65536);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			c->reset = n < 0 && errno == ECONNRESET;
			tclient_finish(c);
			return;
		}
		c->resp_len += (size_t)n;
		c->resp[c->resp_len] = '\0';
	}
}

static void
tclient_on_io(struct loop *loop, unsigned events, void *arg)
{
	struct tclient *c = arg;

	(void)loop;
	if ((events & LOOP_WRITE) && c->sent < c->req_len)
		tclient_send(c);
	if (!c->done && (events & LOOP_READ))
		tclient_recv(c);
}

static void
tclient_on_pace(struct loop *loop, void *arg)
{
	struct tclient *c = arg;

	(void)loop;
	tclient_want(c, LOOP_READ | LOOP_WRITE);
}

/* Connects and starts sending req in chunks of chunk bytes (0 = all),
 * pace_ms apart. rcvbuf > 0 shrinks the receive buffer before connecting. */
static void
tclient_start_opts(struct fx *f, struct tclient *c, const void *req, size_t len, size_t chunk,
	unsigned pace_ms, int rcvbuf)
{
	int rc;

	memset(c, 0, sizeof(*c));
	c->f = f;
	c->req = req;
	c->req_len = len;
	c->chunk = chunk;
	c->pace_ms = pace_ms;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	if (rcvbuf > 0)
		assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)),
			0);
	if (chunk) {
		/* Small writes leave as separate segments, not coalesced. */
		int one = 1;
		assert_int_equal(setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
	}
	rc = connect(c->fd, &f->addr.sa, addr_len(&f->addr));
	assert_true(rc == 0 || errno == EINPROGRESS);
	watcher_init(&c->w, c->fd, tclient_on_io, c);
	timer_init(&c->pace, tclient_on_pace, c);
	tclient_want(c, LOOP_READ | (len ? LOOP_WRITE : 0));
	loop_update_time(f->loop);
	c->start_ms = loop_now(f->loop);
	f->running++;
}

static void
tclient_start(struct fx *f, struct tclient *c, const char *req)
{
	tclient_start_opts(f, c, req, strlen(req), 0, 0, 0);
}

static void
tclient_free(struct tclient *c)
{
	if (c->fd >= 0) {
		loop_unwatch(c->f->loop, &c->w);
		close(c->fd);
		c->fd = -1;
	}
	free(c->resp);
	c->resp = NULL;
}

/* One request, whole, to completion. */
static void
exchange(struct fx *f, struct tclient *c, const char *req)
{
	tclient_start(f, c, req);
	f->stop_at = 0;
	run(f);
	assert_true(c->done);
}

/* --- response checks ----------------------------------------------------- */

struct http_resp {
	int status;
	size_t head_len; /* through the empty line */
	const uint8_t *body;
	size_t body_len;
	long content_length; /* -1 when absent */
};

static void
parse_resp(const struct tclient *c, struct http_resp *r)
{
	const uint8_t *end, *cl;

	if (c->resp_len < 12)
		fail_msg("short response (%zu bytes): %.*s", c->resp_len, (int)c->resp_len,
			c->resp ? (const char *)c->resp : "");
	assert_memory_equal(c->resp, "HTTP/1.1 ", 9);
	r->status = atoi((const char *)c->resp + 9);
	end = memmem(c->resp, c->resp_len, "\r\n\r\n", 4);
	assert_non_null(end);
	r->head_len = (size_t)(end - c->resp) + 4;
	r->body = c->resp + r->head_len;
	r->body_len = c->resp_len - r->head_len;
	cl = memmem(c->resp, r->head_len, "\r\nContent-Length: ", 18);
	r->content_length = cl ? strtol((const char *)cl + 18, NULL, 10) : -1;
}

static bool
has_header(const struct tclient *c, const char *line)
{
	char want[256];
	struct http_resp r;

	parse_resp(c, &r);
	snprintf(want, sizeof(want), "\r\n%s\r\n", line);
	return memmem(c->resp, r.head_len, want, strlen(want)) != NULL;
}

/* Status and a Content-Length that matches the body actually sent. */
static void
assert_status(const struct tclient *c, int status)
{
	struct http_resp r;

	parse_resp(c, &r);
	if (r.status != status)
		fail_msg("want %d, got: %.*s", status, (int)r.head_len, (const char *)c->resp);
	assert_int_equal(r.content_length, (long)r.body_len);
	assert_true(has_header(c, "Connection: close"));
}

/* --- fixture ------------------------------------------------------------- */

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	union sockaddr_any a;

	assert_non_null(f);
	f->loop = loop_new();
	assert_non_null(f->loop);
	assert_int_equal(addr_parse("127.0.0.1", 0, &a), 0);
	f->m = metrics_start(f->loop, &a, render, f);
	assert_non_null(f->m);
	assert_int_equal(metrics_local_addr(f->m, &f->addr), 0);
	assert_int_not_equal(addr_port(&f->addr), 0);
	f->trigger[0] = f->trigger[1] = -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	metrics_stop(f->m);
	if (f->trigger[0] >= 0) {
		loop_unwatch(f->loop, &f->trigger_w);
		close(f->trigger[0]);
		close(f->trigger[1]);
	}
	/* loop_free runs the releases metrics_stop queued. */
	loop_free(f->loop);
	free(f);
	return 0;
}

/* --- tests --------------------------------------------------------------- */

static void
test_get_metrics_returns_the_rendered_body(void **state)
{
	struct fx *f = *state;
	struct tclient c;
	struct http_resp r;
	char want[256];

	log_set_level(LOG_LVL_DEBUG); /* the debug lines format peers: run them */
	exchange(f, &c,
		"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		"User-Agent: Prometheus/2.53.0\r\nAccept: text/plain\r\n\r\n");
	log_set_level(LOG_LVL_ERROR);
	assert_status(&c, 200);
	assert_true(has_header(&c, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
	assert_int_equal(f->renders, 1);
	expected_body(1, want, sizeof(want));
	parse_resp(&c, &r);
	assert_int_equal(r.body_len, strlen(want));
	assert_memory_equal(r.body, want, r.body_len);
	assert_false(c.reset);
	tclient_free(&c);
}

static void
test_query_string_and_http_1_0_are_served(void **state)
{
	struct fx *f = *state;
	struct tclient c;

	exchange(f, &c, "GET /metrics?name[]=socks5d_up HTTP/1.0\r\n\r\n");
	assert_status(&c, 200);
	tclient_free(&c);
	exchange(f, &c, "GET /metrics? HTTP/1.1\r\nHost: h\r\n\r\n");
	assert_status(&c, 200);
	tclient_free(&c);
	assert_int_equal(f->renders, 2);
}

static void
test_head_gives_the_length_without_the_body(void **state)
{
	struct fx *f = *state;
	struct tclient c;
	struct http_resp r;
	char want[256];

	exchange(f, &c, "HEAD /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
	parse_resp(&c, &r);
	assert_int_equal(r.status, 200);
	expected_body(1, want, sizeof(want));
	assert_int_equal(r.content_length, (long)strlen(want));
	assert_int_equal(r.body_len, 0);
	tclient_free(&c);
}

static void
test_other_paths_are_404(void **state)
{
	static const char *const reqs[] = {
		"GET / HTTP/1.1\r\n\r\n",
		"GET /metricsx HTTP/1.1\r\n\r\n",
		"GET /metrics/ HTTP/1.1\r\n\r\n",
		"GET /other HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /METRICS HTTP/1.1\r\n\r\n",
		"GET * HTTP/1.1\r\n\r\n",
		"GET http://h/metrics HTTP/1.1\r\n\r\n",
		"POST /other HTTP/1.1\r\n\r\n",
	};
	struct fx *f = *state;
	struct tclient c;
	struct http_resp r;

	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		exchange(f, &c, reqs[i]);
		assert_status(&c, 404);
		tclient_free(&c);
	}
	/* HEAD of a missing page: the length, no body. */
	exchange(f, &c, "HEAD /other HTTP/1.1\r\n\r\n");
	parse_resp(&c, &r);
	assert_int_equal(r.status, 404);
	assert_true(r.content_length > 0);
	assert_int_equal(r.body_len, 0);
	tclient_free(&c);
	assert_int_equal(f->renders, 0);
}

static void
test_other_methods_are_405_with_allow(void **state)
{
	static const char *const reqs[] = {
		"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
		"PUT /metrics HTTP/1.1\r\n\r\n",
		"DELETE /metrics HTTP/1.1\r\n\r\n",
		"OPTIONS /metrics HTTP/1.1\r\n\r\n",
		"get /metrics HTTP/1.1\r\n\r\n",
	};
	struct fx *f = *state;
	struct tclient c;

	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		exchange(f, &c, reqs[i]);
		assert_status(&c, 405);
		assert_true(has_header(&c, "Allow: GET, HEAD"));
		tclient_free(&c);
	}
	assert_int_equal(f->renders, 0);
}

/* Each is refused with 400 without waiting for the deadline (which stays
 * at 5 s here), whether or not the head was complete. */
static void
test_garbage_is_400_at_once(void **state)
{
	static const struct {
		const char *req;
		size_t len;
	} reqs[] = {
#define R(s) { s, sizeof(s) - 1 }
		R("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), /* TLS hello */
		R("\x05\x01\x00"),                                 /* SOCKS5 */
		R("{\"json\": true}"),
		R("\r\n\r\n"),
		R("GET /metrics\r\n\r\n"),
		R("GET /metrics HTTP/2.0\r\n\r\n"),
		R("GET /metrics HTTP/1.10\r\n\r\n"),
		R("GET /metrics http/1.1\r\n\r\n"),
		R("GET /metrics HTTP/1.1 \r\n\r\n"),
		R("GET  /metrics HTTP/1.1\r\n\r\n"),
		R(" GET /metrics HTTP/1.1\r\n\r\n"),
		R("GET /metrics HTTP/1.1\n\n"),
		R("GET /metrics HTTP/1.1\r\r\n"),
		R("GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n"),
		R("GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n"),
		R("GET /metrics HTTP/1.1\r\nName : v\r\n\r\n"),
		R("GET /metrics HTTP/1.1\r\n: v\r\n\r\n"),
		R("GET /metrics HTTP/1.1\r\nX: a\rb\r\n\r\n"),
		R("GET /metrics HTTP/1.1\r\nX: a\x01\r\n\r\n"),
		R("G\0T /metrics HTTP/1.1\r\n\r\n"),
		R("GET /met\x7frics HTTP/1.1\r\n\r\n"),
		R("SSH-2.0-OpenSSH_9.6\r\n"),
#undef R
	};
	struct fx *f = *state;
	struct tclient c;

	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		tclient_start_opts(f, &c, reqs[i].req, reqs[i].len, 0, 0, 0);
		f->stop_at = 0;
		run(f);
		assert_status(&c, 400);
		assert_true(c.end_ms - c.start_ms < METRICS_REQUEST_TIMEOUT_MS / 2);
		tclient_free(&c);
	}
	assert_int_equal(f->renders, 0);
}

/* A head of exactly METRICS_REQUEST_MAX bytes is served; one byte more
 * is 431, and the server goes on serving. */
static void
test_head_larger_than_the_buffer_is_431(void **state)
{
	struct fx *f = *state;
	static char req[METRICS_REQUEST_MAX + 2000];
	const char *start = "GET /metrics HTTP/1.1\r\nX-Pad: ";
	struct tclient c;
	size_t len;

	for (size_t extra = 0; extra <= 1; extra++) {
		len = METRICS_REQUEST_MAX + extra;
		memset(req, 'a', len);
		memcpy(req, start, strlen(start));
		memcpy(req + len - 4, "\r\n\r\n", 4);
		tclient_start_opts(f, &c, req, len, 0, 0, 0);
		f->stop_at = 0;
		run(f);
		assert_status(&c, extra ? 431 : 200);
		tclient_free(&c);
	}
	/* Far larger, no end in sight: 431 too, and the answer arrives
	 * intact although the client is still sending. */
	len = sizeof(req);
	memset(req, 'a', len);
	memcpy(req, start, strlen(start));
	tclient_start_opts(f, &c, req, len, 0, 0, 0);
	f->stop_at = 0;
	run(f);
	assert_status(&c, 431);
	tclient_free(&c);
	exchange(f, &c, "GET /metrics HTTP/1.1\r\n\r\n");
	assert_status(&c, 200);
	tclient_free(&c);
}

static void
test_silent_client_is_closed_at_the_deadline(void **state)
{
	struct fx *f = *state;
	struct tclient c;
	uint64_t took;

	metrics_set_request_timeout_ms(f->m, 200);
	tclient_start_opts(f, &c, NULL, 0, 0, 0, 0);
	f->stop_at = 0;
	run(f);
	took = c.end_ms - c.start_ms;
	assert_int_equal(c.resp_len, 0);
	assert_true(took >= 195 && took < 2000);
	tclient_free(&c);
}

/* The deadline runs from accept, not from the last byte: a client that
 * drips its request slower than that is cut off with no answer. */
static void
test_dripping_client_is_closed_at_the_deadline(void **state)
{
	struct fx *f = *state;
	const char *req = "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n";
	struct tclient c;
	uint64_t took;

	metrics_set_request_timeout_ms(f->m, 300);
	tclient_start_opts(f, &c, req, strlen(req), 1, 50, 0);
	f->stop_at = 0;
	run(f);
	took = c.end_ms - c.start_ms;
	assert_int_equal(c.resp_len, 0);
	assert_true(c.sent < strlen(req));
	assert_true(took >= 295 && took < 1500);
	tclient_free(&c);
	assert_int_equal(f->renders, 0);
}

static void
test_one_byte_at_a_time_is_served(void **state)
{
	struct fx *f = *state;
	const char *req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\n"
			  "Accept: */*\r\n\r\n";
	struct tclient c;

	tclient_start_opts(f, &c, req, strlen(req), 1, 2, 0);
	f->stop_at = 0;
	run(f);
	assert_int_equal(c.sent, strlen(req));
	assert_status(&c, 200);
	tclient_free(&c);
}

/* A client that closes its side before the head is complete gets nothing. */
static void
test_eof_before_the_head_closes_without_answer(void **state)
{
	struct fx *f = *state;
	const char *req = "GET /metrics HTTP/1.1\r\n";
	struct tclient c;

	tclient_start_opts(f, &c, req, strlen(req), 0, 0, 0);
	c.half_close = true;
	f->stop_at = 0;
	run(f);
	assert_int_equal(c.resp_len, 0);
	tclient_free(&c);
	assert_int_equal(f->renders, 0);
}

static void
test_many_scrapes_in_a_row(void **state)
{
	struct fx *f = *state;
	struct tclient c;
	struct http_resp r;
	char want[256];

	for (unsigned i = 1; i <= 200; i++) {
		exchange(f, &c, "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
		assert_status(&c, 200);
		expected_body(i, want, sizeof(want));
		parse_resp(&c, &r);
		assert_int_equal(r.body_len, strlen(want));
		assert_memory_equal(r.body, want, r.body_len);
		tclient_free(&c);
	}
	assert_int_equal(f->renders, 200);
}

static void
test_concurrent_scrapes_each_get_an_answer(void **state)
{
	struct fx *f = *state;
	static struct tclient cs[METRICS_MAX_CLIENTS];
	bool seen[METRICS_MAX_CLIENTS + 1] = { false };

	for (size_t i = 0; i < METRICS_MAX_CLIENTS; i++)
		tclient_start(f, &cs[i], "GET /metrics HTTP/1.1\r\n\r\n");
	f->stop_at = 0;
	run(f);
	for (size_t i = 0; i < METRICS_MAX_CLIENTS; i++) {
		struct http_resp r;
		const char *v;
		unsigned n;

		assert_status(&cs[i], 200);
		parse_resp(&cs[i], &r);
		v = strstr((const char *)r.body, "\nsocks5d_test_scrapes_total ");
		assert_non_null(v);
		n = (unsigned)atoi(v + strlen("\nsocks5d_test_scrapes_total "));
		assert_true(n >= 1 && n <= METRICS_MAX_CLIENTS);
		assert_false(seen[n]);
		seen[n] = true;
		tclient_free(&cs[i]);
	}
}

/* METRICS_MAX_CLIENTS idle connections hold every slot: the next one is
 * closed at once, and slots free up when the idle ones time out. */
static void
test_clients_beyond_the_limit_are_closed_at_once(void **state)
{
	struct fx *f = *state;
	static struct tclient idle[METRICS_MAX_CLIENTS];
	struct tclient extra, c;

	metrics_set_request_timeout_ms(f->m, 1500);
	for (size_t i = 0; i < METRICS_MAX_CLIENTS; i++)
		tclient_start_opts(f, &idle[i], NULL, 0, 0, 0, 0);
	unit_run_for(f->loop, 150, UNIT_RUN_WAIT_MS);
	for (size_t i = 0; i < METRICS_MAX_CLIENTS; i++)
		assert_false(idle[i].done);

	tclient_start(f, &extra, "GET /metrics HTTP/1.1\r\n\r\n");
	f->stop_at = METRICS_MAX_CLIENTS;
	run(f);
	assert_true(extra.done);
	assert_int_equal(extra.resp_len, 0);
	assert_true(extra.end_ms - extra.start_ms < 1000);
	for (size_t i = 0; i < METRICS_MAX_CLIENTS; i++)
		assert_false(idle[i].done);
	tclient_free(&extra);

	f->stop_at = 0;
	run(f);
	for (size_t i = 0; i < METRICS_MAX_CLIENTS; i++) {
		assert_int_equal(idle[i].resp_len, 0);
		tclient_free(&idle[i]);
	}
	exchange(f, &c, "GET /metrics HTTP/1.1\r\n\r\n");
	assert_status(&c, 200);
	tclient_free(&c);
	assert_int_equal(f->renders, 1);
}

/* An 8 MiB exposition to a client with a tiny receive window: the server
 * must stop at EAGAIN and resume on EPOLLOUT, and every byte arrives. */
static void
test_large_body_is_written_under_backpressure(void **state)
{
	struct fx *f = *state;
	const char *req = "GET /metrics HTTP/1.1\r\n\r\n";
	struct tclient c;
	struct http_resp r;

	f->big = true;
	tclient_start_opts(f, &c, req, strlen(req), 0, 0, 4096);
	f->stop_at = 0;
	run(f);
	assert_status(&c, 200);
	parse_resp(&c, &r);
	assert_int_equal(r.body_len, BIG_BODY);
	for (size_t i = 0; i < BIG_BODY; i++)
		if (r.body[i] != pattern_byte(i))
			fail_msg("body byte %zu differs", i);
	tclient_free(&c);
}

static void
on_trigger(struct loop *loop, unsigned events, void *arg)
{
	struct fx *f = arg;

	(void)loop;
	(void)events;
	metrics_stop(f->m);
	f->m = NULL;
	loop_unwatch(f->loop, &f->trigger_w);
}

/*
 * metrics_stop from inside an event handler, in the same batch as events
 * for the connections it closes (their bytes and the trigger arrive before
 * the loop wakes up): every client sees its connection end, nothing is
 * touched after release (ASan), nothing leaks (LeakSanitizer at exit).
 */
static void
test_stop_mid_batch_closes_every_client(void **state)
{
	struct fx *f = *state;
	struct tclient cs[6];
	const char *part = "GET /metrics HTTP/1.1\r\nHost:";
	const char *whole = "GET /metrics HTTP/1.1\r\n\r\n";

	for (size_t i = 0; i < 6; i++)
		tclient_start_opts(f, &cs[i], NULL, 0, 0, 0, 0);
	unit_run_for(f->loop, 100, UNIT_RUN_WAIT_MS);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f->trigger), 0);
	watcher_init(&f->trigger_w, f->trigger[0], on_trigger, f);
	assert_int_equal(loop_watch(f->loop, &f->trigger_w, LOOP_READ), 0);

	for (size_t i = 0; i < 6; i++) {
		const char *s = i == 0 ? whole : part;
		assert_int_equal(send(cs[i].fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
	}
	assert_int_equal(write(f->trigger[1], "x", 1), 1);
	f->stop_at = 0;
	run(f);
	assert_null(f->m);
	for (size_t i = 0; i < 6; i++) {
		assert_true(cs[i].done);
		tclient_free(&cs[i]);
	}
}

/* The render callback stopping the server (a reload during a scrape)
 * leaves nothing dangling: the scraper just sees the connection end. */
static void
test_render_may_stop_the_server(void **state)
{
	struct fx *f = *state;
	struct tclient c;

	f->stop_in_render = true;
	exchange(f, &c, "GET /metrics HTTP/1.1\r\n\r\n");
	assert_null(f->m);
	assert_int_equal(c.resp_len, 0);
	tclient_free(&c);
}

static void
test_start_on_a_busy_address_fails_with_errno(void **state)
{
	struct fx *f = *state;
	struct metrics_server *m2;

	errno = 0;
	m2 = metrics_start(f->loop, &f->addr, render, f);
	assert_null(m2);
	assert_int_equal(errno, EADDRINUSE);
	metrics_stop(NULL);
}

/* Every test gets its own loop and server. */
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_get_metrics_returns_the_rendered_body),
		T(test_query_string_and_http_1_0_are_served),
		T(test_head_gives_the_length_without_the_body),
		T(test_other_paths_are_404),
		T(test_other_methods_are_405_with_allow),
		T(test_garbage_is_400_at_once),
		T(test_head_larger_than_the_buffer_is_431),
		T(test_silent_client_is_closed_at_the_deadline),
		T(test_dripping_client_is_closed_at_the_deadline),
		T(test_one_byte_at_a_time_is_served),
		T(test_eof_before_the_head_closes_without_answer),
		T(test_many_scrapes_in_a_row),
		T(test_concurrent_scrapes_each_get_an_answer),
		T(test_clients_beyond_the_limit_are_closed_at_once),
		T(test_large_body_is_written_under_backpressure),
		T(test_stop_mid_batch_closes_every_client),
		T(test_render_may_stop_the_server),
		T(test_start_on_a_busy_address_fails_with_errno),
	};

	log_init(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
