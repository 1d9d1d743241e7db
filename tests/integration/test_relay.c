/*
 * The relay after a successful CONNECT: 20 MB each way arrive complete and
 * unaltered (count and FNV-1a hash computed at both ends), and a client's
 * FIN is passed on while the other direction keeps flowing (half-close,
 * RFC 793 §3.5), with the target's reply and then its EOF reaching the
 * client.
 *
 * The same transfers run again against socks5d with splice on (the
 * default) and with "relay-splice off", and its metrics must show that the
 * bytes really took the path that config asks for: the splice path must
 * carry most of a bulk transfer, the copy path all of it when off.
 */
#include "harness.h"
#include "it_acl_util.h"
#include "it_scale_util.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BULK_BYTES (20u << 20)
#define HALF_CLOSE_BYTES 300000u

static void
expect_count_hash(int fd, uint64_t n, uint64_t h, int timeout_ms)
{
	uint8_t reply[16];
	size_t got = it_recv_exact(fd, reply, sizeof(reply), timeout_ms);

	if (got != sizeof(reply))
		fail_msg("target's count+hash reply: got %zu of 16 bytes (%s)", got,
			errno ? strerror(errno) : "EOF");
	if (it_get_be64(reply) != n)
		fail_msg("target received %llu bytes, sent %llu",
			(unsigned long long)it_get_be64(reply), (unsigned long long)n);
	if (it_get_be64(reply + 8) != h)
		fail_msg("target's hash %016llx differs from ours %016llx",
			(unsigned long long)it_get_be64(reply + 8), (unsigned long long)h);
}

/* Sends n bytes of the seed stream; returns their hash. */
static uint64_t
send_stream(int fd, size_t n, uint64_t seed)
{
	static uint8_t chunk[65536];
	struct it_hash hs;
	uint64_t st = seed;

	it_hash_init(&hs);
	while (n > 0) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk);
		it_fill(chunk, k, &st);
		it_hash_update(&hs, chunk, k);
		if (it_send_all(fd, chunk, k) < 0)
			fail_msg("send after %llu bytes: %s", (unsigned long long)hs.n,
				strerror(errno));
		n -= k;
	}
	return hs.h;
}

static void
upload_20mb(struct it_fixture *fx)
{
	uint8_t hdr[8];
	int fd = it_open_tunnel(fx, AF_INET, &it_tg.sink4);

	/* The sink reads a length first, so this needs no half-close. */
	it_put_be64(hdr, BULK_BYTES);
	it_send_bytes(fd, hdr, sizeof(hdr));
	uint64_t h = send_stream(fd, BULK_BYTES, 0xabcdef);
	expect_count_hash(fd, BULK_BYTES, h, 20000);
	it_close(fd);
}

static void
test_upload_20mb_arrives_with_identical_hash(void **state)
{
	upload_20mb(it_fx(state));
}

static void
download_20mb(struct it_fixture *fx)
{
	static uint8_t buf[65536];
	uint64_t deadline = it_now_ms() + 30000;
	struct it_hash hs;
	int fd = it_open_tunnel(fx, AF_INET, &it_tg.source4);

	it_hash_init(&hs);
	for (;;) {
		uint64_t now = it_now_ms();
		if (now >= deadline)
			fail_msg("download: only %llu of %u bytes within 30 s",
				(unsigned long long)hs.n, IT_SOURCE_BYTES);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, (int)(deadline - now));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue; /* the deadline check above reports it */
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail_msg("download: recv after %llu bytes: %s", (unsigned long long)hs.n,
				strerror(errno));
		if (r == 0)
			break;
		it_hash_update(&hs, buf, (size_t)r);
	}
	assert_int_equal(hs.n, IT_SOURCE_BYTES);
	if (hs.h != it_stream_hash(IT_SOURCE_SEED, IT_SOURCE_BYTES))
		fail_msg("download: %u bytes arrived but their hash differs", IT_SOURCE_BYTES);
	it_close(fd);
}

static void
test_download_20mb_arrives_with_identical_hash(void **state)
{
	download_20mb(it_fx(state));
}

static void
test_half_close_client_fin_reaches_target_and_reply_comes_back(void **state)
{
	struct it_fixture *fx = it_fx(state);
	int fd;

	it_require(IT_CAP_HALF_CLOSE);
	fd = it_open_tunnel(fx, AF_INET, &it_tg.eof_reply4);
	uint64_t h = send_stream(fd, HALF_CLOSE_BYTES, 0x4a1f);
	/* The target answers only after it has seen EOF, so the reply proves
	 * the FIN went through while the way back stayed open. */
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	expect_count_hash(fd, HALF_CLOSE_BYTES, h, IT_IO_TIMEOUT_MS);
	enum it_close c = it_wait_close(fd, 2000);
	if (c != IT_CLOSE_EOF)
		fail_msg("after the target's reply and close want EOF, got %s", it_close_str(c));
	it_close(fd);
}

static void
test_relay_keeps_working_after_target_closes_first(void **state)
{
	struct it_fixture *fx = it_fx(state);
	int fd = it_open_tunnel(fx, AF_INET, &it_tg.peer4);
	uint8_t seen[7];

	/* The peer target sends 7 bytes and its FIN right away. */
	assert_int_equal(it_recv_exact(fd, seen, sizeof(seen), IT_IO_TIMEOUT_MS), sizeof(seen));
	it_expect_close(fd, 2000);
	it_close(fd);
	fd = it_open_tunnel(fx, AF_INET, &it_tg.echo4);
	it_expect_echo(fd, 100000, 21);
	it_close(fd);
}

static int
setup(void **state)
{
	/* Debug logging of 20 MB of relay would be noise; info is enough. */
	return it_fixture_start(state, "auth none\n", NULL, NULL);
}

/* --- which path the bytes took (socks5d only) ----------------------------- */

#define SOCKS5D_ONLY IT_CAP_RESOLVER

static uint16_t metrics_port;
static bool splice_configured;

struct path_bytes {
	unsigned long long spliced, copied, pipes_in_use, pipes_cached;
};

static void
scrape_paths(struct path_bytes *p)
{
	char *body = NULL;
	int st = it_scale_http(metrics_port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &body,
		3000);
	bool ok = st == 200 &&
		it_scale_metric(body, "socks5d_relay_bytes_total{path=\"splice\"}", &p->spliced) &&
		it_scale_metric(body, "socks5d_relay_bytes_total{path=\"copy\"}", &p->copied) &&
		it_scale_metric(body, "socks5d_relay_pipes{state=\"in_use\"}", &p->pipes_in_use) &&
		it_scale_metric(body, "socks5d_relay_pipes{state=\"cached\"}", &p->pipes_cached);

	if (!ok)
		fail_msg("metrics scrape: status %d, body:\n%s", st, body ? body : "(none)");
	free(body);
}

/* Scrapes after a transfer the client has closed: the session ends, and
 * with it the last bulk transfer, so the daemon must hold no pipe, not even
 * a cached one (bounded wait: the close reaches it asynchronously). */
static void
scrape_after(struct path_bytes *b)
{
	uint64_t deadline = it_now_ms() + 3000;

	do {
		scrape_paths(b);
		if (b->pipes_in_use == 0 && b->pipes_cached == 0)
			return;
		it_sleep_ms(20);
	} while (it_now_ms() < deadline);
}

/* The transfer's bytes went the configured way, and no pipe is left. */
static void
expect_path(const struct path_bytes *a, const struct path_bytes *b, const char *what)
{
	unsigned long long spliced = b->spliced - a->spliced, copied = b->copied - a->copied;

	print_message("[   INFO   ] %s with relay-splice %s: %llu bytes spliced, %llu copied\n",
		what, splice_configured ? "on" : "off", spliced, copied);
	if (spliced + copied < BULK_BYTES)
		fail_msg("%s: the relay wrote %llu bytes, the transfer was %u", what,
			spliced + copied, BULK_BYTES);
	if (splice_configured && spliced < BULK_BYTES / 2)
		fail_msg("%s: only %llu of %u bytes were spliced", what, spliced, BULK_BYTES);
	if (!splice_configured && spliced != 0)
		fail_msg("%s: %llu bytes were spliced although relay-splice is off", what, spliced);
	if (b->pipes_in_use != 0 || b->pipes_cached != 0)
		fail_msg("%s: %llu pipes in use and %llu cached 3 s after the session ended", what,
			b->pipes_in_use, b->pipes_cached);
}

static void
test_upload_takes_the_configured_path(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct path_bytes a, b;

	scrape_paths(&a);
	upload_20mb(fx);
	scrape_after(&b);
	expect_path(&a, &b, "upload");
}

static void
test_download_takes_the_configured_path(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct path_bytes a, b;

	scrape_paths(&a);
	download_20mb(fx);
	scrape_after(&b);
	expect_path(&a, &b, "download");
}

static void
test_half_close_on_the_configured_path(void **state)
{
	test_half_close_client_fin_reaches_target_and_reply_comes_back(state);
}

static int
setup_path(void **state, bool splice)
{
	char conf[256];

	splice_configured = splice;
	if ((metrics_port = it_acl_free_port()) == 0)
		return -1;
	snprintf(conf, sizeof(conf), "auth none\nmetrics 127.0.0.1:%u\nrelay-splice %s\n",
		metrics_port, splice ? "on" : "off");
	return it_fixture_start_for(state, SOCKS5D_ONLY, conf, NULL, NULL);
}

static int
setup_splice_on(void **state)
{
	return setup_path(state, true);
}

static int
setup_splice_off(void **state)
{
	return setup_path(state, false);
}

int
it_run_relay_tests(void)
{
	const struct CMUnitTest tests[] = {
		IT_TEST(test_upload_20mb_arrives_with_identical_hash),
		IT_TEST(test_download_20mb_arrives_with_identical_hash),
		IT_TEST(test_half_close_client_fin_reaches_target_and_reply_comes_back),
		IT_TEST(test_relay_keeps_working_after_target_closes_first),
	};

	const struct CMUnitTest path_tests[] = {
		IT_TEST(test_upload_takes_the_configured_path),
		IT_TEST(test_download_takes_the_configured_path),
		IT_TEST(test_half_close_on_the_configured_path),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("relay (auth none)", tests, setup, it_fixture_stop);
	failed += cmocka_run_group_tests_name("relay: relay-splice on", path_tests, setup_splice_on,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("relay: relay-splice off", path_tests,
		setup_splice_off, it_fixture_stop);
	return failed;
}
