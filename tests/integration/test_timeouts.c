/*
 * The handshake deadline ("timeout handshake 2"): one timer for the whole
 * greeting + auth + request, armed at accept. A client that sends nothing
 * is closed after about 2 s (not before 1 s); a client that keeps the
 * connection busy with one byte every 500 ms is dropped at the same
 * deadline, because a per-byte (idle) timer would let it stay forever.
 */
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

static void
test_silent_client_closed_at_handshake_deadline(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint64_t t0;
	int fd;

	it_require(IT_CAP_TIMEOUTS);
	t0 = it_now_ms();
	fd = it_connect(AF_INET, fx->d.port);
	assert_true(fd >= 0);
	enum it_close c = it_wait_close(fd, 1000);
	if (c != IT_CLOSE_TIMEOUT)
		fail_msg("silent client: want still open at 1 s, got %s after %llu ms",
			it_close_str(c), (unsigned long long)(it_now_ms() - t0));
	c = it_wait_close(fd, 5000);
	uint64_t elapsed = it_now_ms() - t0;
	if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST)
		fail_msg("silent client: want closed within 6 s of connecting "
			 "(timeout handshake 2), got %s",
			it_close_str(c));
	print_message("[   INFO   ] silent client closed after %llu ms\n",
		(unsigned long long)elapsed);
	assert_in_range(elapsed, 1000, 6000);
	it_close(fd);
}

static void
test_trickling_client_dropped_at_whole_handshake_deadline(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x01, 0x02 };
	const uint8_t chosen[] = { 0x05, 0x02 };
	/* RFC 1929 VER, ULEN 255: the name alone takes 127 s at this pace. */
	const uint8_t up_head[] = { 0x01, 0xff };
	const uint8_t name_byte[] = { 'a' };
	enum it_close c = IT_CLOSE_TIMEOUT;
	uint64_t t0, elapsed;
	int fd;

	it_require(IT_CAP_TIMEOUTS);
	t0 = it_now_ms();
	fd = it_connect(AF_INET, fx->d.port);
	assert_true(fd >= 0);
	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	it_send_bytes(fd, up_head, sizeof(up_head));
	while (it_now_ms() - t0 < 8000) {
		c = it_wait_close(fd, 500);
		if (c != IT_CLOSE_TIMEOUT)
			break;
		if (it_send_all(fd, name_byte, 1) < 0) {
			c = IT_CLOSE_RST; /* EPIPE/ECONNRESET: it is gone */
			break;
		}
	}
	elapsed = it_now_ms() - t0;
	if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST)
		fail_msg("trickling client: want dropped near the 2 s handshake deadline, "
			 "got %s after %llu ms",
			it_close_str(c), (unsigned long long)elapsed);
	print_message("[   INFO   ] trickling client dropped after %llu ms\n",
		(unsigned long long)elapsed);
	assert_in_range(elapsed, 1500, 6000);
	it_close(fd);
}

static void
test_handshake_deadline_does_not_cut_relay(void **state)
{
	struct it_fixture *fx = it_fx(state);
	int fd;

	it_require(IT_CAP_TIMEOUTS);
	/* Once CONNECT succeeded the handshake timer must be off: a session
	 * idle past it still relays. */
	fd = it_open_tunnel(fx, AF_INET, &it_tg.echo4);
	it_sleep_ms(2600);
	it_expect_echo(fd, 4096, 31);
	it_close(fd);
}

static int
setup(void **state)
{
	return it_fixture_start(state,
		"auth password none\nuser alice wonderland\ntimeout handshake 2\n"
		"log-level debug\n",
		"alice", "wonderland");
}

int
it_run_timeout_tests(void)
{
	const struct CMUnitTest tests[] = {
		IT_TEST(test_silent_client_closed_at_handshake_deadline),
		IT_TEST(test_trickling_client_dropped_at_whole_handshake_deadline),
		IT_TEST(test_handshake_deadline_does_not_cut_relay),
	};

	return cmocka_run_group_tests_name("handshake deadline (timeout handshake 2)", tests, setup,
		it_fixture_stop);
}
