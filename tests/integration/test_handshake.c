/*
 * Message framing in the handshake: the daemon must not assume that one
 * read is one message. Greeting, RFC 1929 request and SOCKS request arrive
 * one byte per segment, or all in one segment together with the first
 * payload; both must work, and pipelined payload must reach the target.
 */
#include "harness.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* CONNECT 127.0.0.1:echo4 (10 bytes). */
static size_t
request_echo4(uint8_t *out)
{
	const uint16_t p = it_tg.echo4.port;
	const uint8_t req[] = { 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, p >> 8, p & 0xff };

	memcpy(out, req, sizeof(req));
	return sizeof(req);
}

static void
expect_success_reply(int fd)
{
	const uint8_t head[] = { 0x05, 0x00, 0x00 };
	struct it_reply r;
	char err[256];

	if (it_read_reply(fd, &r, IT_IO_TIMEOUT_MS, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	it_assert_mem(r.raw, head, sizeof(head), "CONNECT reply VER REP RSV");
}

static int
connected(const struct it_fixture *fx)
{
	int fd = it_connect(AF_INET, fx->d.port);

	assert_true(fd >= 0);
	return fd;
}

static void
test_no_auth_handshake_split_one_byte_per_segment_works(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	const uint8_t chosen[] = { 0x05, 0x00 };
	uint8_t req[10];
	int fd;

	it_require(IT_CAP_PARTIAL_READS);
	fd = connected(fx);
	it_send_slowly(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	it_send_slowly(fd, req, request_echo4(req));
	expect_success_reply(fd);
	it_expect_echo(fd, 4096, 10);
	it_close(fd);
}

static void
test_no_auth_handshake_and_payload_in_one_segment_works(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t chosen[] = { 0x05, 0x00 };
	const char payload[] = "first payload, sent before any reply";
	uint8_t msg[128], back[sizeof(payload)];
	size_t n = 0;
	int fd;

	it_require(IT_CAP_PARTIAL_READS);
	msg[n++] = 0x05;
	msg[n++] = 0x01;
	msg[n++] = 0x00;
	n += request_echo4(msg + n);
	memcpy(msg + n, payload, sizeof(payload));
	n += sizeof(payload);
	fd = connected(fx);
	it_send_bytes(fd, msg, n);
	it_expect_bytes(fd, chosen, sizeof(chosen));
	expect_success_reply(fd);
	/* The bytes after the request went to the target and came back. */
	assert_int_equal(it_recv_exact(fd, back, sizeof(back), IT_IO_TIMEOUT_MS), sizeof(back));
	it_assert_mem(back, payload, sizeof(payload), "pipelined payload echoed by the target");
	it_expect_echo(fd, 4096, 11);
	it_close(fd);
}

static void
test_no_auth_everything_one_byte_per_segment_without_waiting_works(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t chosen[] = { 0x05, 0x00 };
	uint8_t msg[32];
	size_t n = 0;
	int fd;

	it_require(IT_CAP_PARTIAL_READS);
	msg[n++] = 0x05;
	msg[n++] = 0x01;
	msg[n++] = 0x00;
	n += request_echo4(msg + n);
	memcpy(msg + n, "ping", 4);
	n += 4;
	fd = connected(fx);
	/* Message boundaries fall inside segments and segments inside
	 * messages: greeting's last byte and request's first are apart. */
	it_send_slowly(fd, msg, n);
	it_expect_bytes(fd, chosen, sizeof(chosen));
	expect_success_reply(fd);
	it_expect_bytes(fd, "ping", 4);
	it_close(fd);
}

static size_t
password_handshake(uint8_t *out)
{
	const uint8_t greet[] = { 0x05, 0x01, 0x02 };
	const uint8_t up[] = { 0x01, 5, 'a', 'l', 'i', 'c', 'e', 10, 'w', 'o', 'n', 'd', 'e', 'r',
		'l', 'a', 'n', 'd' };
	size_t n = 0;

	memcpy(out + n, greet, sizeof(greet));
	n += sizeof(greet);
	memcpy(out + n, up, sizeof(up));
	return n + sizeof(up);
}

static void
test_password_handshake_split_one_byte_per_segment_works(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t chosen[] = { 0x05, 0x02 };
	const uint8_t ok[] = { 0x01, 0x00 };
	uint8_t hs[32], req[10];
	int fd;

	it_require(IT_CAP_PARTIAL_READS);
	password_handshake(hs);
	fd = connected(fx);
	it_send_slowly(fd, hs, 3); /* greeting */
	it_expect_bytes(fd, chosen, sizeof(chosen));
	it_send_slowly(fd, hs + 3, 18); /* 01 05 alice 0a wonderland */
	it_expect_bytes(fd, ok, sizeof(ok));
	it_send_slowly(fd, req, request_echo4(req));
	expect_success_reply(fd);
	it_expect_echo(fd, 4096, 12);
	it_close(fd);
}

static void
test_password_handshake_and_payload_in_one_segment_works(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t chosen[] = { 0x05, 0x02 };
	const uint8_t ok[] = { 0x01, 0x00 };
	const char payload[] = "payload pipelined behind auth and request";
	uint8_t msg[128], back[sizeof(payload)];
	size_t n;
	int fd;

	it_require(IT_CAP_PARTIAL_READS);
	n = password_handshake(msg);
	n += request_echo4(msg + n);
	memcpy(msg + n, payload, sizeof(payload));
	n += sizeof(payload);
	fd = connected(fx);
	it_send_bytes(fd, msg, n);
	it_expect_bytes(fd, chosen, sizeof(chosen));
	it_expect_bytes(fd, ok, sizeof(ok));
	expect_success_reply(fd);
	assert_int_equal(it_recv_exact(fd, back, sizeof(back), IT_IO_TIMEOUT_MS), sizeof(back));
	it_assert_mem(back, payload, sizeof(payload), "pipelined payload echoed by the target");
	it_expect_echo(fd, 4096, 13);
	it_close(fd);
}

static void
test_password_everything_one_byte_per_segment_without_waiting_works(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t chosen[] = { 0x05, 0x02 };
	const uint8_t ok[] = { 0x01, 0x00 };
	uint8_t msg[64];
	size_t n;
	int fd;

	it_require(IT_CAP_PARTIAL_READS);
	n = password_handshake(msg);
	n += request_echo4(msg + n);
	fd = connected(fx);
	it_send_slowly(fd, msg, n);
	it_expect_bytes(fd, chosen, sizeof(chosen));
	it_expect_bytes(fd, ok, sizeof(ok));
	expect_success_reply(fd);
	it_expect_echo(fd, 4096, 14);
	it_close(fd);
}

static int
setup_none(void **state)
{
	return it_fixture_start(state, "auth none\nlog-level debug\n", NULL, NULL);
}

static int
setup_password(void **state)
{
	return it_fixture_start(state, "auth password\nuser alice wonderland\nlog-level debug\n",
		"alice", "wonderland");
}

int
it_run_handshake_tests(void)
{
	const struct CMUnitTest none[] = {
		IT_TEST(test_no_auth_handshake_split_one_byte_per_segment_works),
		IT_TEST(test_no_auth_handshake_and_payload_in_one_segment_works),
		IT_TEST(test_no_auth_everything_one_byte_per_segment_without_waiting_works),
	};
	const struct CMUnitTest password[] = {
		IT_TEST(test_password_handshake_split_one_byte_per_segment_works),
		IT_TEST(test_password_handshake_and_payload_in_one_segment_works),
		IT_TEST(test_password_everything_one_byte_per_segment_without_waiting_works),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("handshake framing (auth none)", none, setup_none,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("handshake framing (auth password)", password,
		setup_password, it_fixture_stop);
	return failed;
}
