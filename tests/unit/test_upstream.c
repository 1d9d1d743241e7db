/*
 * Unit tests for upstream, the client side of the parent protocols: parent
 * URLs and their errors; the exact bytes sent to SOCKS5, SOCKS4/4a and HTTP
 * parents; every reply fed whole, byte by byte and at every two-part split,
 * taking exactly its own bytes (what follows is the target's); the reply
 * codes as the client's REP, and the parent's own failures told apart from
 * the target's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "upstream.h"

#include "unit_util.h"

static struct upstream
parse_ok(const char *url)
{
	struct upstream u;
	char err[200] = "";

	if (upstream_parse(url, &u, err, sizeof(err)) != 0)
		fail_msg("%s: %s", url, err);
	return u;
}

static void
assert_parse_error(const char *url, const char *want)
{
	struct upstream u;
	char err[200] = "";

	assert_int_equal(upstream_parse(url, &u, err, sizeof(err)), -1);
	if (!strstr(err, want))
		fail_msg("%s: error '%s' lacks '%s'", url, err, want);
}

static void
test_urls(void **state)
{
	struct upstream u = parse_ok("socks5://10.0.0.1:1080");

	assert_int_equal(u.proto, UPSTREAM_SOCKS5);
	assert_string_equal(u.host, "10.0.0.1");
	assert_int_equal(u.port, 1080);
	assert_false(u.has_user);
	assert_string_equal(u.label, "socks5://10.0.0.1:1080");

	u = parse_ok("socks5://al%40ice:p%3Ass:w@[2001:db8::1]:9050");
	assert_string_equal(u.user, "al@ice");
	assert_int_equal(u.ulen, 6);
	assert_string_equal(u.pass, "p:ss:w");
	assert_int_equal(u.plen, 6);
	assert_string_equal(u.host, "2001:db8::1");
	assert_string_equal(u.label, "socks5://[2001:db8::1]:9050");

	u = parse_ok("socks4a://ident@proxy.example.net:1080");
	assert_int_equal(u.proto, UPSTREAM_SOCKS4);
	assert_string_equal(u.user, "ident");
	assert_string_equal(u.label, "socks4://proxy.example.net:1080");

	u = parse_ok("http://bob:@squid.lan:3128/");
	assert_int_equal(u.proto, UPSTREAM_HTTP);
	assert_int_equal(u.plen, 0);
	assert_string_equal(u.label, "http://squid.lan:3128");

	u = parse_ok("direct");
	assert_int_equal(u.proto, UPSTREAM_DIRECT);
	assert_string_equal(u.label, "direct");
}

static void
test_url_errors(void **state)
{
	assert_parse_error("socks6://h:1", "unknown parent");
	assert_parse_error("Direct", "unknown parent");
	assert_parse_error("socks5://host", "needs a port");
	assert_parse_error("socks5://host:0", "bad parent port");
	assert_parse_error("socks5://host:65536", "bad parent port");
	assert_parse_error("socks5://host:", "bad parent port");
	assert_parse_error("socks5://:1080", "bad parent host");
	assert_parse_error("socks5://ho st:1080", "bad parent host");
	assert_parse_error("socks5://[::1:1080", "expected [IPv6]:PORT");
	assert_parse_error("socks5://[nothex]:1080", "bad parent host");
	assert_parse_error("socks5://@h:1080", "bad parent user");
	assert_parse_error("socks5://u%4:p@h:1080", "bad parent user");
	assert_parse_error("socks5://u%00:p@h:1080", "bad parent user");
	assert_parse_error("socks5://u:p%zz@h:1080", "bad parent password");
	assert_parse_error("socks4://u:p@h:1080", "no password");
	assert_parse_error("socks5://h:1080/", "bad parent port");
}

static void
test_format_hides_the_password(void **state)
{
	struct upstream u = parse_ok("http://bob:secret@squid.lan:3128");
	char out[400];

	upstream_format(&u, out, sizeof(out));
	assert_string_equal(out, "http://bob:***@squid.lan:3128");
	u = parse_ok("socks4://id@[::1]:1080");
	upstream_format(&u, out, sizeof(out));
	assert_string_equal(out, "socks4://id@[::1]:1080");
	u = parse_ok("socks5://h:1");
	upstream_format(&u, out, sizeof(out));
	assert_string_equal(out, "socks5://h:1");
}

static void
test_what_each_parent_can_carry(void **state)
{
	struct upstream s5 = parse_ok("socks5://h:1"), s4 = parse_ok("socks4://h:1"),
			http = parse_ok("http://h:1");

	assert_true(upstream_can(&s5, SOCKS_CMD_UDP_ASSOCIATE));
	assert_true(upstream_can(&s4, SOCKS_CMD_BIND));
	assert_false(upstream_can(&s4, SOCKS_CMD_UDP_ASSOCIATE));
	assert_true(upstream_can(&http, SOCKS_CMD_CONNECT));
	assert_false(upstream_can(&http, SOCKS_CMD_BIND));
}

/* --- the handshake --------------------------------------------------------- */

static struct socks_addr
dst_name(const char *name, uint16_t port)
{
	struct socks_addr a;

	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_DOMAIN;
	a.name_len = (uint8_t)strlen(name);
	memcpy(a.name, name, a.name_len);
	a.port = port;
	return a;
}

static struct socks_addr
dst_ip(const char *ip, uint16_t port)
{
	struct socks_addr a;

	memset(&a, 0, sizeof(a));
	a.port = port;
	if (inet_pton(AF_INET, ip, a.ip.ipv4) == 1)
		a.atyp = SOCKS_ATYP_IPV4;
	else if (inet_pton(AF_INET6, ip, a.ip.ipv6) == 1)
		a.atyp = SOCKS_ATYP_IPV6;
	return a;
}

/* out holds exactly want; the caller sent it. */
static void
assert_sends(struct upstream_hs *h, const void *want, size_t n)
{
	assert_int_equal(h->out_len, n);
	assert_memory_equal(h->out, want, n);
	upstream_hs_sent(h, n);
	assert_int_equal(h->out_len, 0);
}

/*
 * Feeds msg (n bytes) followed by tail (bytes that are not the message's)
 * to copies of h: whole, byte by byte, and split in two at every point.
 * Each way must end with result want, taking exactly n bytes. h ends as
 * the whole feed left it.
 */
static void
feed_every_way(struct upstream_hs *h, const uint8_t *msg, size_t n, enum upstream_feed want)
{
	static const uint8_t tail[] = "TARGET-BYTES";
	uint8_t whole[UPSTREAM_IN_MAX + sizeof(tail)];
	struct upstream_hs *copy = malloc(sizeof(*copy));
	size_t taken, k, total;
	enum upstream_feed st;

	assert_non_null(copy);
	memcpy(whole, msg, n);
	memcpy(whole + n, tail, sizeof(tail));
	for (k = 1; k < n; k++) {
		*copy = *h;
		st = upstream_hs_feed(copy, whole, k, &taken);
		assert_int_equal(st, UPSTREAM_FEED_MORE);
		assert_int_equal(taken, k);
		st = upstream_hs_feed(copy, whole + k, n - k + sizeof(tail), &taken);
		assert_int_equal(st, want);
		assert_int_equal(taken, n - k);
	}
	*copy = *h;
	for (k = 0, total = 0, st = UPSTREAM_FEED_MORE; k < n && st == UPSTREAM_FEED_MORE; k++) {
		st = upstream_hs_feed(copy, whole + k, 1, &taken);
		total += taken;
	}
	assert_int_equal(st, want);
	assert_int_equal(total, n);
	st = upstream_hs_feed(h, whole, n + sizeof(tail), &taken);
	assert_int_equal(st, want);
	assert_int_equal(taken, n);
	free(copy);
}

static void
test_socks5_without_password(void **state)
{
	struct upstream u = parse_ok("socks5://p:1080");
	struct socks_addr d = dst_name("example.com", 443);
	struct upstream_hs h;
	const uint8_t greeting[] = { 5, 1, 0 }, method[] = { 5, 0 };
	const uint8_t req[] = { 5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o',
		'm', 1, 187 };
	const uint8_t reply[] = { 5, 0, 0, 1, 192, 0, 2, 7, 0x30, 0x39 };

	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_CONNECT, &d), 0);
	assert_int_equal(h.phase, UPSTREAM_PH_METHOD);
	assert_sends(&h, greeting, sizeof(greeting));
	feed_every_way(&h, method, sizeof(method), UPSTREAM_FEED_STEP);
	assert_int_equal(h.phase, UPSTREAM_PH_REPLY);
	assert_sends(&h, req, sizeof(req));
	feed_every_way(&h, reply, sizeof(reply), UPSTREAM_FEED_DONE);
	assert_int_equal(h.res.rep, SOCKS_REP_SUCCEEDED);
	assert_false(h.res.parent_failed);
	assert_null(h.res.why);
	assert_int_equal(h.res.bnd.atyp, SOCKS_ATYP_IPV4);
	assert_memory_equal(h.res.bnd.ip.ipv4, ((uint8_t[]){ 192, 0, 2, 7 }), 4);
	assert_int_equal(h.res.bnd.port, 12345);
}

static void
test_socks5_with_password(void **state)
{
	struct upstream u = parse_ok("socks5://al:pw@p:1080");
	struct socks_addr d = dst_ip("2001:db8::5", 22);
	struct upstream_hs h;
	const uint8_t greeting[] = { 5, 2, 0, 2 }, method[] = { 5, 2 };
	const uint8_t userpass[] = { 1, 2, 'a', 'l', 2, 'p', 'w' }, status[] = { 1, 0 };
	uint8_t req[22] = { 5, 1, 0, 4 }, reply[22] = { 5, 5, 0, 4 };

	memcpy(req + 4, d.ip.ipv6, 16);
	req[21] = 22;
	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_CONNECT, &d), 0);
	assert_sends(&h, greeting, sizeof(greeting));
	feed_every_way(&h, method, sizeof(method), UPSTREAM_FEED_STEP);
	assert_int_equal(h.phase, UPSTREAM_PH_AUTH);
	assert_sends(&h, userpass, sizeof(userpass));
	feed_every_way(&h, status, sizeof(status), UPSTREAM_FEED_STEP);
	assert_sends(&h, req, sizeof(req));
	/* The target refused: passed on, and not the parent's failure. */
	feed_every_way(&h, reply, sizeof(reply), UPSTREAM_FEED_DONE);
	assert_int_equal(h.res.rep, SOCKS_REP_CONNECTION_REFUSED);
	assert_false(h.res.parent_failed);
	assert_non_null(h.res.why);
}

/* Each of these is the parent's own failure: the next parent is tried. */
static void
test_socks5_parent_failures(void **state)
{
	struct upstream anon = parse_ok("socks5://p:1"), withpw = parse_ok("socks5://a:b@p:1");
	struct socks_addr d = dst_ip("192.0.2.1", 80);
	static const struct {
		bool pw;
		uint8_t msg[2];
		const char *why;
	} cases[] = {
		{ false, { 5, 0xff }, "wants a password" },
		{ true, { 5, 0xff }, "none of our methods" },
		{ false, { 5, 2 }, "did not offer" },
		{ false, { 4, 0 }, "not a SOCKS5 server" },
	};
	struct upstream_hs h;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(
			upstream_hs_start(&h, cases[i].pw ? &withpw : &anon, SOCKS_CMD_CONNECT, &d),
			0);
		upstream_hs_sent(&h, h.out_len);
		feed_every_way(&h, cases[i].msg, 2, UPSTREAM_FEED_FAILED);
		assert_true(h.res.parent_failed);
		assert_int_equal(h.res.rep, SOCKS_REP_GENERAL_FAILURE);
		assert_non_null(strstr(h.res.why, cases[i].why));
	}
	/* A refused password. */
	assert_int_equal(upstream_hs_start(&h, &withpw, SOCKS_CMD_CONNECT, &d), 0);
	upstream_hs_sent(&h, h.out_len);
	feed_every_way(&h, (const uint8_t[]){ 5, 2 }, 2, UPSTREAM_FEED_STEP);
	upstream_hs_sent(&h, h.out_len);
	feed_every_way(&h, (const uint8_t[]){ 1, 1 }, 2, UPSTREAM_FEED_FAILED);
	assert_true(h.res.parent_failed);
	assert_non_null(strstr(h.res.why, "refused our password"));
}

static void
test_socks5_malformed_reply_fails_at_the_bad_byte(void **state)
{
	struct upstream u = parse_ok("socks5://p:1");
	struct socks_addr d = dst_ip("192.0.2.1", 80);
	struct upstream_hs h, copy;
	size_t taken;

	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_CONNECT, &d), 0);
	upstream_hs_sent(&h, h.out_len);
	feed_every_way(&h, (const uint8_t[]){ 5, 0 }, 2, UPSTREAM_FEED_STEP);
	upstream_hs_sent(&h, h.out_len);
	copy = h;
	assert_int_equal(upstream_hs_feed(&copy, (const uint8_t[]){ 6 }, 1, &taken),
		UPSTREAM_FEED_FAILED);
	assert_true(copy.res.parent_failed);
	copy = h;
	assert_int_equal(upstream_hs_feed(&copy, (const uint8_t[]){ 5, 0, 0, 9 }, 4, &taken),
		UPSTREAM_FEED_FAILED);
	/* An unknown REP is a general failure, answered by the parent. */
	feed_every_way(&h, (const uint8_t[]){ 5, 0x42, 0, 1, 0, 0, 0, 0, 0, 0 }, 10,
		UPSTREAM_FEED_DONE);
	assert_int_equal(h.res.rep, SOCKS_REP_GENERAL_FAILURE);
	assert_false(h.res.parent_failed);
}

static void
test_socks5_bind_two_replies(void **state)
{
	struct upstream u = parse_ok("socks5://p:1");
	struct socks_addr d = dst_ip("198.51.100.3", 0);
	const uint8_t first[] = { 5, 0, 0, 1, 203, 0, 113, 9, 0x1f, 0x90 };
	const uint8_t second[] = { 5, 0, 0, 1, 198, 51, 100, 3, 0x04, 0x00 };
	struct upstream_hs h;

	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_BIND, &d), 0);
	upstream_hs_sent(&h, h.out_len);
	feed_every_way(&h, (const uint8_t[]){ 5, 0 }, 2, UPSTREAM_FEED_STEP);
	assert_int_equal(h.out[1], SOCKS_CMD_BIND);
	upstream_hs_sent(&h, h.out_len);
	feed_every_way(&h, first, sizeof(first), UPSTREAM_FEED_STEP);
	assert_int_equal(h.phase, UPSTREAM_PH_SECOND);
	assert_int_equal(h.res.bnd.port, 8080);
	feed_every_way(&h, second, sizeof(second), UPSTREAM_FEED_DONE);
	assert_int_equal(h.res.rep, SOCKS_REP_SUCCEEDED);
	assert_int_equal(h.res.bnd.port, 1024);
	assert_memory_equal(h.res.bnd.ip.ipv4, ((uint8_t[]){ 198, 51, 100, 3 }), 4);
}

static void
test_socks4_requests_and_replies(void **state)
{
	struct upstream u = parse_ok("socks4://me@p:1"), anon = parse_ok("socks4://p:1");
	struct socks_addr name = dst_name("a.b", 80), ip = dst_ip("10.1.2.3", 25),
			  v6 = dst_ip("::1", 25);
	const uint8_t req4a[] = { 4, 1, 0, 80, 0, 0, 0, 1, 'm', 'e', 0, 'a', '.', 'b', 0 };
	const uint8_t req4[] = { 4, 2, 0, 25, 10, 1, 2, 3, 0 };
	const uint8_t granted[] = { 0, 90, 0x1f, 0x90, 10, 0, 0, 1 };
	struct upstream_hs h;

	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_CONNECT, &name), 0);
	assert_int_equal(h.phase, UPSTREAM_PH_REPLY);
	assert_sends(&h, req4a, sizeof(req4a));
	feed_every_way(&h, granted, sizeof(granted), UPSTREAM_FEED_DONE);
	assert_int_equal(h.res.rep, SOCKS_REP_SUCCEEDED);
	assert_int_equal(h.res.bnd.port, 8080);

	assert_int_equal(upstream_hs_start(&h, &anon, SOCKS_CMD_BIND, &ip), 0);
	assert_sends(&h, req4, sizeof(req4));
	feed_every_way(&h, granted, sizeof(granted), UPSTREAM_FEED_STEP);
	feed_every_way(&h, (const uint8_t[]){ 4, 91, 0, 0, 0, 0, 0, 0 }, 8, UPSTREAM_FEED_DONE);
	assert_int_equal(h.res.rep, SOCKS_REP_GENERAL_FAILURE);
	assert_false(h.res.parent_failed);

	assert_int_equal(upstream_hs_start(&h, &anon, SOCKS_CMD_CONNECT, &ip), 0);
	upstream_hs_sent(&h, h.out_len);
	feed_every_way(&h, (const uint8_t[]){ 0, 92, 0, 0, 0, 0, 0, 0 }, 8, UPSTREAM_FEED_FAILED);
	assert_true(h.res.parent_failed);

	assert_int_equal(upstream_hs_start(&h, &anon, SOCKS_CMD_CONNECT, &v6), -1);
	assert_int_equal(h.res.rep, SOCKS_REP_ATYP_NOT_SUPPORTED);
	assert_int_equal(upstream_hs_start(&h, &anon, SOCKS_CMD_UDP_ASSOCIATE, &ip), -1);
	assert_int_equal(h.res.rep, SOCKS_REP_COMMAND_NOT_SUPPORTED);
}

static void
test_http_connect_request(void **state)
{
	struct upstream u = parse_ok("http://Aladdin:open%20sesame@p:3128"),
			anon = parse_ok("http://p:3128");
	struct socks_addr name = dst_name("example.com", 443), v6 = dst_ip("2001:db8::1", 8443),
			  bad = dst_name("a.com\r\nX-Evil: 1", 80);
	struct upstream_hs h;
	static const char want[] = "CONNECT example.com:443 HTTP/1.1\r\n"
				   "Host: example.com:443\r\n"
				   "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"
				   "\r\n";
	static const char want6[] = "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n"
				    "Host: [2001:db8::1]:8443\r\n\r\n";

	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_CONNECT, &name), 0);
	assert_sends(&h, want, strlen(want));
	assert_int_equal(upstream_hs_start(&h, &anon, SOCKS_CMD_CONNECT, &v6), 0);
	assert_sends(&h, want6, strlen(want6));
	/* A name that would add a header line is never sent. */
	assert_int_equal(upstream_hs_start(&h, &anon, SOCKS_CMD_CONNECT, &bad), -1);
	assert_int_equal(h.res.rep, SOCKS_REP_HOST_UNREACHABLE);
	assert_int_equal(upstream_hs_start(&h, &anon, SOCKS_CMD_BIND, &name), -1);
	assert_int_equal(h.res.rep, SOCKS_REP_COMMAND_NOT_SUPPORTED);
}

static void
http_answer(const char *head, enum upstream_feed want_st, uint8_t want_rep, bool parent_failed)
{
	struct upstream u = parse_ok("http://p:3128");
	struct socks_addr d = dst_name("example.com", 443);
	struct upstream_hs h;

	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_CONNECT, &d), 0);
	upstream_hs_sent(&h, h.out_len);
	feed_every_way(&h, (const uint8_t *)head, strlen(head), want_st);
	if (h.res.rep != want_rep || h.res.parent_failed != parent_failed)
		fail_msg("%s: rep %u failed %d", head, h.res.rep, h.res.parent_failed);
}

static void
test_http_replies(void **state)
{
	http_answer("HTTP/1.1 200 Connection established\r\n\r\n", UPSTREAM_FEED_DONE,
		SOCKS_REP_SUCCEEDED, false);
	http_answer("HTTP/1.0 200 OK\r\nProxy-Agent: x\r\nVia: 1.1 y\r\n\r\n", UPSTREAM_FEED_DONE,
		SOCKS_REP_SUCCEEDED, false);
	http_answer("HTTP/1.1 200 OK\n\n", UPSTREAM_FEED_DONE, SOCKS_REP_SUCCEEDED, false);
	http_answer("HTTP/1.1 403 Forbidden\r\n\r\n", UPSTREAM_FEED_DONE, SOCKS_REP_NOT_ALLOWED,
		false);
	http_answer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
		UPSTREAM_FEED_DONE, SOCKS_REP_HOST_UNREACHABLE, false);
	http_answer("HTTP/1.1 504 Gateway Timeout\r\n\r\n", UPSTREAM_FEED_DONE,
		SOCKS_REP_TTL_EXPIRED, false);
	http_answer("HTTP/1.1 400 Bad Request\r\n\r\n", UPSTREAM_FEED_DONE,
		SOCKS_REP_GENERAL_FAILURE, false);
	http_answer("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", UPSTREAM_FEED_FAILED,
		SOCKS_REP_GENERAL_FAILURE, true);
	http_answer("HTTP/1.1 2x0 OK\r\n\r\n", UPSTREAM_FEED_FAILED, SOCKS_REP_GENERAL_FAILURE,
		true);
}

static void
test_http_not_http_and_too_long(void **state)
{
	struct upstream u = parse_ok("http://p:3128");
	struct socks_addr d = dst_name("example.com", 443);
	struct upstream_hs h;
	uint8_t junk[UPSTREAM_IN_MAX + 10];
	size_t taken, total = 0;
	enum upstream_feed st = UPSTREAM_FEED_MORE;

	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_CONNECT, &d), 0);
	assert_int_equal(upstream_hs_feed(&h, (const uint8_t *)"SSH-2.0", 7, &taken),
		UPSTREAM_FEED_FAILED);
	assert_true(h.res.parent_failed);

	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_CONNECT, &d), 0);
	memcpy(junk, "HTTP/1.1 200 OK\r\nX: ", 20);
	memset(junk + 20, 'a', sizeof(junk) - 20);
	while (st == UPSTREAM_FEED_MORE && total < sizeof(junk)) {
		st = upstream_hs_feed(&h, junk + total,
			100 < sizeof(junk) - total ? 100 : sizeof(junk) - total, &taken);
		total += taken;
	}
	assert_int_equal(st, UPSTREAM_FEED_FAILED);
	assert_int_equal(total, UPSTREAM_IN_MAX);
	assert_non_null(strstr(h.res.why, "too long"));
}

static void
test_eof(void **state)
{
	struct upstream u = parse_ok("socks5://p:1");
	struct socks_addr d = dst_ip("192.0.2.1", 0);
	const uint8_t first[] = { 5, 0, 0, 1, 1, 2, 3, 4, 0, 1 };
	struct upstream_hs h;

	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_CONNECT, &d), 0);
	upstream_hs_eof(&h);
	assert_true(h.res.parent_failed);
	assert_int_equal(h.phase, UPSTREAM_PH_DONE);
	/* After BIND's first reply, the parent answered: not its failure. */
	assert_int_equal(upstream_hs_start(&h, &u, SOCKS_CMD_BIND, &d), 0);
	feed_every_way(&h, (const uint8_t[]){ 5, 0 }, 2, UPSTREAM_FEED_STEP);
	feed_every_way(&h, first, sizeof(first), UPSTREAM_FEED_STEP);
	upstream_hs_eof(&h);
	assert_false(h.res.parent_failed);
	assert_int_equal(h.res.rep, SOCKS_REP_GENERAL_FAILURE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_url_errors),
		cmocka_unit_test(test_format_hides_the_password),
		cmocka_unit_test(test_what_each_parent_can_carry),
		cmocka_unit_test(test_socks5_without_password),
		cmocka_unit_test(test_socks5_with_password),
		cmocka_unit_test(test_socks5_parent_failures),
		cmocka_unit_test(test_socks5_malformed_reply_fails_at_the_bad_byte),
		cmocka_unit_test(test_socks5_bind_two_replies),
		cmocka_unit_test(test_socks4_requests_and_replies),
		cmocka_unit_test(test_http_connect_request),
		cmocka_unit_test(test_http_replies),
		cmocka_unit_test(test_http_not_http_and_too_long),
		cmocka_unit_test(test_eof),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
