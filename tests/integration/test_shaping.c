/*
 * Bandwidth limits, quotas and live accounting (issue 18), against the
 * real daemon on loopback. No timing thresholds: a limit is checked as an
 * upper bound that only a daemon delivering too much can break (what
 * arrived never exceeds the bucket's burst plus its rate times the time
 * since the request, however slow the machine), and a limit's scope by an
 * event awaited with a bound (sessions on buckets of their own together
 * pass what one shared bucket could have given). Quotas are checked to
 * the byte through the state file the daemon writes at stop.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "it_acl_util.h"
#include "it_scale_util.h"

/* 800kbit: 100000 bytes a second; a bucket then holds 64 KiB at most. */
#define RATE_BPS 100000ULL
#define BURST 65536ULL
/* Rounding of the daemon's millisecond clock and of our reads. */
#define SLACK 8192ULL
#define WAIT_MS 15000

/* --- reading tunnels -------------------------------------------------------- */

struct pump {
	int fd[8];
	uint64_t got[8];
	bool eof[8];
	size_t n;
	uint64_t t0; /* when the requests were sent */
};

/* What one bucket of RATE_BPS can have given since t0. */
static uint64_t
bucket_bound(uint64_t t0)
{
	return BURST + RATE_BPS * (it_now_ms() - t0) / 1000 + SLACK;
}

/* Reads whatever the tunnels have, for at most ms; calls check after each
 * read with the totals so far, and stops early when it returns true. */
static bool
pump_run(struct pump *p, bool (*check)(const struct pump *, void *), void *arg, int ms)
{
	static uint8_t buf[64 * 1024];
	uint64_t deadline = it_now_ms() + (uint64_t)ms;
	struct pollfd pfd[8];

	while (it_now_ms() < deadline) {
		for (size_t i = 0; i < p->n; i++) {
			pfd[i].fd = p->eof[i] ? -1 : p->fd[i];
			pfd[i].events = POLLIN;
		}
		if (poll(pfd, p->n, 20) < 0 && errno != EINTR)
			fail_msg("poll: %s", strerror(errno));
		for (size_t i = 0; i < p->n; i++) {
			ssize_t k;
			if (p->eof[i] || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			k = recv(p->fd[i], buf, sizeof(buf), MSG_DONTWAIT);
			if (k > 0)
				p->got[i] += (uint64_t)k;
			else if (k == 0 || (errno != EAGAIN && errno != EINTR))
				p->eof[i] = true;
		}
		if (check && check(p, arg))
			return true;
	}
	return check == NULL;
}

static uint64_t
pump_sum(const struct pump *p, size_t from, size_t to)
{
	uint64_t s = 0;

	for (size_t i = from; i < to; i++)
		s += p->got[i];
	return s;
}

/* A session of user (NULL: none) from src to the 20 MiB source target. */
static int
open_source(const struct it_fixture *fx, const char *src, const char *user, const char *pass)
{
	struct it_acl_client c = { .src = src, .port = fx->d.port, .user = user, .pass = pass };

	return it_acl_open(&c, &it_tg.source4);
}

static void
pump_close(struct pump *p)
{
	for (size_t i = 0; i < p->n; i++)
		it_close(p->fd[i]);
}

/* Sessions [0, shared) share one bucket; sessions [shared, n) each have
 * another. Fails when a shared sum goes over one bucket. */
struct scope_check {
	size_t shared;
	bool others_passed; /* the others went past one bucket together */
};

static bool
check_scope(const struct pump *p, void *arg)
{
	struct scope_check *sc = arg;
	uint64_t bound = bucket_bound(p->t0), shared = pump_sum(p, 0, sc->shared);

	if (shared > bound)
		fail_msg("sessions sharing a limit got %llu bytes, at most %llu allowed",
			(unsigned long long)shared, (unsigned long long)bound);
	for (size_t i = sc->shared; i < p->n; i++)
		if (p->got[i] > bound)
			fail_msg("session %zu got %llu bytes, at most %llu allowed", i,
				(unsigned long long)p->got[i], (unsigned long long)bound);
	/* Done when the first shared session and the unshared ones together
	 * have passed what a single bucket allows: they are not one. */
	sc->others_passed = p->got[0] + pump_sum(p, sc->shared, p->n) > bound;
	return sc->others_passed && shared > BURST;
}

static void
expect_scope(struct pump *p, size_t shared)
{
	struct scope_check sc = { .shared = shared };

	if (!pump_run(p, check_scope, &sc, WAIT_MS))
		fail_msg("after %d ms: shared %llu, others %llu bytes (one bucket: %llu)", WAIT_MS,
			(unsigned long long)pump_sum(p, 0, shared),
			(unsigned long long)pump_sum(p, shared, p->n),
			(unsigned long long)bucket_bound(p->t0));
	pump_close(p);
}

/* --- scopes -------------------------------------------------------------------- */

/* limit session: every session has a bucket of its own. */
static void
test_session_limit_is_per_session(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct pump p = { .n = 2 };

	p.t0 = it_now_ms();
	p.fd[0] = open_source(fx, NULL, NULL, NULL);
	p.fd[1] = open_source(fx, NULL, NULL, NULL);
	expect_scope(&p, 1);
}

static int
setup_session(void **state)
{
	return it_fixture_start(state, "auth none\nlimit session rate unlimited 800kbit\n", NULL,
		NULL);
}

/* limit user: a user's sessions share a bucket; another user (`user *`)
 * has a bucket of their own; a user exempted is not limited. */
static void
test_user_limit_is_shared_by_a_users_sessions(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct pump p = { .n = 3 };

	p.t0 = it_now_ms();
	p.fd[0] = open_source(fx, NULL, "alice", "alicepw");
	p.fd[1] = open_source(fx, NULL, "alice", "alicepw");
	p.fd[2] = open_source(fx, NULL, "bob", "bobpw");
	expect_scope(&p, 2);
}

static bool
check_past(const struct pump *p, void *arg)
{
	return p->got[0] > *(const uint64_t *)arg;
}

static void
test_exempt_user_is_not_limited(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct pump p = { .n = 1 };
	uint64_t want = 4u << 20;

	p.t0 = it_now_ms();
	p.fd[0] = open_source(fx, NULL, "carol", "carolpw");
	/* 4 MiB: forty seconds at the others' rate. */
	if (!pump_run(&p, check_past, &want, WAIT_MS))
		fail_msg("carol got %llu bytes", (unsigned long long)p.got[0]);
	assert_true(p.got[0] > bucket_bound(p.t0));
	pump_close(&p);
}

static int
setup_user(void **state)
{
	return it_fixture_start(state,
		"auth password\nuser alice alicepw\nuser bob bobpw\nuser carol carolpw\n"
		"limit user alice rate 1gbit 800kbit\nlimit user * rate unlimited 800kbit\n"
		"limit user carol rate unlimited unlimited\n",
		"alice", "alicepw");
}

/* limit client: the sessions of one client address share a bucket;
 * another address in the network has its own. */
static void
test_client_limit_is_per_client_address(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct pump p = { .n = 3 };

	p.t0 = it_now_ms();
	p.fd[0] = open_source(fx, "127.0.0.2", NULL, NULL);
	p.fd[1] = open_source(fx, "127.0.0.2", NULL, NULL);
	p.fd[2] = open_source(fx, "127.0.0.3", NULL, NULL);
	expect_scope(&p, 2);
}

static int
setup_client(void **state)
{
	return it_fixture_start(state,
		"auth none\nlimit client 127.0.0.0/29 rate unlimited 800kbit\n"
		"limit client all rate unlimited unlimited\n",
		NULL, NULL);
}

/* rule ... rate: everything one rule allowed shares its bucket; what
 * another rule allowed does not. */
static void
test_rule_rate_is_shared_by_what_the_rule_allowed(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct pump p = { .n = 3 };

	p.t0 = it_now_ms();
	p.fd[0] = open_source(fx, "127.0.0.2", NULL, NULL);
	p.fd[1] = open_source(fx, "127.0.0.3", NULL, NULL);
	p.fd[2] = open_source(fx, "127.0.0.4", NULL, NULL);
	expect_scope(&p, 2);
}

static int
setup_rule(void **state)
{
	static char conf[512];

	snprintf(conf, sizeof(conf),
		"auth none\n"
		"rule allow from 127.0.0.2,127.0.0.3 to 127.0.0.1 port %u rate unlimited 800kbit\n"
		"rule allow from 127.0.0.4 rate unlimited 800kbit\n"
		"rule allow all\n",
		it_tg.source4.port);
	return it_fixture_start(state, conf, NULL, NULL);
}

/* --- fairness -------------------------------------------------------------------- */

static bool
check_fair(const struct pump *p, void *arg)
{
	uint64_t sum = pump_sum(p, 0, p->n), bound = bucket_bound(p->t0);

	if (sum > bound)
		fail_msg("four sessions of one user got %llu bytes, at most %llu allowed",
			(unsigned long long)sum, (unsigned long long)bound);
	return sum >= *(const uint64_t *)arg;
}

/* Four busy sessions of one user get equal shares (within 25 % of the
 * mean here; the bench measures the 10 % of the issue, over 10 s). */
static void
test_sessions_sharing_a_limit_get_equal_shares(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct pump p = { .n = 4 };
	uint64_t want = 500000, mean;

	p.t0 = it_now_ms();
	for (size_t i = 0; i < p.n; i++)
		p.fd[i] = open_source(fx, NULL, "alice", "alicepw");
	if (!pump_run(&p, check_fair, &want, 3 * WAIT_MS))
		fail_msg("four sessions got %llu bytes", (unsigned long long)pump_sum(&p, 0, 4));
	mean = pump_sum(&p, 0, 4) / 4;
	for (size_t i = 0; i < p.n; i++)
		if (p.got[i] * 4 < mean * 3 || p.got[i] * 4 > mean * 5)
			fail_msg("session %zu got %llu bytes, the mean is %llu", i,
				(unsigned long long)p.got[i], (unsigned long long)mean);
	pump_close(&p);
}

/* --- UDP ------------------------------------------------------------------------- */

static uint16_t udp_metrics_port;

static unsigned long long
metric_of(uint16_t port, const char *key)
{
	unsigned long long v = 0;
	char *resp = NULL;

	if (it_scale_http(port, "GET /metrics HTTP/1.0\r\n\r\n", &resp, 5000) < 0 ||
		!it_scale_metric(resp, key, &v))
		fail_msg("metric %s not served", key);
	free(resp);
	return v;
}

/* Datagrams over the limit are dropped and counted (UDP has no
 * backpressure): a burst of 100 datagrams of 1400 bytes into a bucket of
 * 64 KiB passes 46 of them (47 if a refill came between) and drops the
 * rest as rate_limit. */
static void
test_udp_datagrams_over_the_limit_are_dropped_and_counted(void **state)
{
	struct it_fixture *fx = it_fx(state);
	static uint8_t dg[10 + 1400], back[2048];
	uint8_t req[] = { 0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0 };
	const char *up = "socks5d_udp_datagrams_total{direction=\"up\"}";
	struct it_reply r;
	unsigned sent = 100, got = 0;
	unsigned long long dropped, n_up, n_down;
	int ctl = it_greet(fx, AF_INET), u = it_udp_socket("127.0.0.1", 0);
	uint64_t t0 = it_now_ms();

	assert_true(u >= 0);
	it_send_bytes(ctl, req, sizeof(req));
	it_expect_reply(ctl, &r, IT_IO_TIMEOUT_MS);
	assert_int_equal(r.rep, 0);
	dg[3] = 0x01;
	dg[4] = 127;
	dg[7] = 1;
	dg[8] = (uint8_t)(it_tg.udp_echo4.port >> 8);
	dg[9] = (uint8_t)it_tg.udp_echo4.port;
	/* In tens, so that the relay socket's buffer never overflows: every
	 * datagram lost is the daemon's doing. */
	for (unsigned i = 0; i < sent; i++) {
		assert_int_equal(it_udp_send(u, "127.0.0.1", r.port, dg, sizeof(dg)), 0);
		if (i % 10 == 9)
			it_sleep_ms(2);
	}
	while (it_udp_recv(u, back, sizeof(back), 500) > 0)
		got++;
	if (got < BURST / 1400 || got > (BURST + 10000 * (it_now_ms() - t0) / 1000) / 1400 + 1)
		fail_msg("%u of %u datagrams came back", got, sent);
	it_close(ctl);
	it_close(u);
	/* Counted when the association ends: each datagram relayed up came
	 * back (the way down has ten times the rate: its echoes, arriving
	 * with their own jitter, always fit), the rest were dropped by the
	 * limit (all of them unless the kernel dropped some first, when the
	 * daemon is slow, under valgrind say). */
	for (int i = 0; i < 250 && metric_of(udp_metrics_port, up) == 0; i++)
		it_sleep_ms(20);
	n_up = metric_of(udp_metrics_port, up);
	n_down = metric_of(udp_metrics_port, "socks5d_udp_datagrams_total{direction=\"down\"}");
	dropped = metric_of(udp_metrics_port, "socks5d_udp_dropped_total{reason=\"rate_limit\"}");
	if (dropped == 0 || n_up + dropped > sent)
		fail_msg("%u sent, %llu relayed, %llu dropped by the limit", sent, n_up, dropped);
	if (!it_slow()) {
		assert_int_equal(n_up, got);
		assert_int_equal(n_down, got);
		assert_int_equal(got + dropped, sent);
	} else if (n_down < got || n_up < n_down) {
		/* Under valgrind an echo may come back after the client stopped
		 * listening: relayed down, not received. */
		fail_msg("%llu up, %llu down, %u received", n_up, n_down, got);
	}
}

static int
setup_udp(void **state)
{
	static char conf[256];

	udp_metrics_port = it_acl_free_port();
	snprintf(conf, sizeof(conf),
		"auth none\nlimit session rate 80kbit 800kbit\nmetrics 127.0.0.1:%u\n",
		udp_metrics_port);
	return it_fixture_start_for(state, IT_CAP_UDP, conf, NULL, NULL);
}

/* --- quotas ------------------------------------------------------------------------ */

static char state_dir[64];

/* The used bytes of user in the state file (the daemon writes it at
 * stop); -1 when there is no line for them. *period gets the period. */
static long long
state_used(const char *user, long long *period)
{
	char path[128], line[512], scope[16], name[300], per[16];
	long long id, used, found = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/quota.state", state_dir);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%15s %299s %15s %lld %lld", scope, name, per, &id, &used) == 5 &&
			strcmp(scope, "user") == 0 && strcmp(name, user) == 0) {
			found = used;
			if (period)
				*period = id;
		}
	fclose(f);
	return found;
}

static void
make_state_dir(void)
{
	snprintf(state_dir, sizeof(state_dir), "/tmp/socks5d-it-state.XXXXXX");
	assert_non_null(mkdtemp(state_dir));
}

static void
remove_state_dir(void)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/quota.state", state_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/quota.state.corrupt", state_dir);
	unlink(path);
	rmdir(state_dir);
}

static bool
check_quota_close(const struct pump *p, void *arg)
{
	if (p->got[0] > 1000000)
		fail_msg("%llu bytes arrived past a quota of 1000000",
			(unsigned long long)p->got[0]);
	return p->eof[0];
}

/* then close: the session reaching the quota is closed once the quota's
 * last byte was read; new requests of that user get REP 0x02; the log says
 * so once; the counter holds exactly the quota. */
static void
test_quota_reached_mid_session_closes_and_refuses(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct it_acl_client c = { .port = fx->d.port, .user = "alice", .pass = "alicepw" };
	struct pump p = { .n = 1 };
	uint8_t addr[8];
	struct it_reply r;
	char err[256];
	int fd;

	p.fd[0] = open_source(fx, NULL, "alice", "alicepw");
	if (!pump_run(&p, check_quota_close, NULL, WAIT_MS))
		fail_msg("not closed after %llu bytes", (unsigned long long)p.got[0]);
	pump_close(&p);
	it_acl_expect_log(&fx->d, "end=\"quota reached\"", WAIT_MS);
	fd = it_acl_dial(NULL, fx->d.port, NULL, 0, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(it_acl_auth(fd, "alice", "alicepw", err, sizeof(err)), 0);
	assert_int_equal(it_acl_request(fd, 0x01, addr,
				 it_acl_addr4(addr, "127.0.0.1", it_tg.echo4.port), &r, err,
				 sizeof(err)),
		0);
	assert_int_equal(r.rep, 0x02);
	it_close(fd);
	/* Another user is not concerned. */
	c.user = "bob";
	c.pass = "bobpw";
	fd = it_acl_open(&c, &it_tg.echo4);
	it_expect_echo(fd, 1000, 77);
	it_close(fd);
	assert_int_equal(
		it_acl_log_count(&fx->d, "quota reached: user \"alice\" used 1MB this day"), 1);
}

/* then rate: past the quota the user's sessions go on at the then-rate. */
static bool
check_quota_rate(const struct pump *p, void *arg)
{
	uint64_t bound = 1000000 + bucket_bound(p->t0);

	if (p->got[0] > bound)
		fail_msg("%llu bytes arrived, at most %llu allowed", (unsigned long long)p->got[0],
			(unsigned long long)bound);
	if (p->eof[0])
		fail_msg("the session was closed after %llu bytes", (unsigned long long)p->got[0]);
	return p->got[0] > 1000000 + BURST + SLACK;
}

static void
test_quota_reached_with_then_rate_slows_down(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct pump p = { .n = 1 };

	p.t0 = it_now_ms();
	p.fd[0] = open_source(fx, NULL, "bob", "bobpw");
	if (!pump_run(&p, check_quota_rate, NULL, WAIT_MS))
		fail_msg("only %llu bytes in %d ms", (unsigned long long)p.got[0], WAIT_MS);
	pump_close(&p);
	it_acl_expect_log(&fx->d, "quota reached: user \"bob\" used 1MB this day (until ", WAIT_MS);
	it_acl_expect_log(&fx->d, "its sessions are limited to unlimited up, 800kbit down",
		WAIT_MS);
}

static int
setup_quota(void **state)
{
	static char conf[512];

	make_state_dir();
	snprintf(conf, sizeof(conf),
		"auth password\nuser alice alicepw\nuser bob bobpw\nstate-dir %s\n"
		"limit user alice quota 1MB day\n"
		"limit user bob quota 1MB day then rate unlimited 800kbit\n",
		state_dir);
	return it_fixture_start(state, conf, "bob", "bobpw");
}

static int
teardown_quota(void **state)
{
	int r = it_fixture_stop(state);
	long long used = state_used("alice", NULL);

	/* Exactly the quota: reads stop at the byte. */
	if (used != 1000000) {
		print_error("ERROR: the state file says alice used %lld bytes, want 1000000\n",
			used);
		it_harness_failures++;
	}
	remove_state_dir();
	return r;
}

/* --- counters across restarts and reloads --------------------------------------------- */

#define QUOTA_CONF "auth password\nuser alice alicepw\nlimit user alice quota 10GB day\n"

/* alice echoes n bytes (n up, n down). */
static void
echo_as_alice(const struct it_daemon *d, size_t n)
{
	struct it_acl_client c = { .port = d->port, .user = "alice", .pass = "alicepw" };
	int fd = it_acl_open(&c, &it_tg.echo4);

	it_expect_echo(fd, n, 99 + n);
	it_close(fd);
}

static void
start_with_state(struct it_daemon *d, const char *extra)
{
	char conf[512];

	snprintf(conf, sizeof(conf), QUOTA_CONF "state-dir %s\n%s", state_dir, extra);
	if (it_daemon_start(d, conf) != 0)
		fail_msg("daemon did not start");
}

/* The stop saved the counter; a new process reads it back and goes on
 * counting: 2 x 150000, then 2 x 100000, to the byte (unless a day began
 * in between). */
static void
test_quota_counters_survive_a_restart(void **state)
{
	struct it_daemon d;
	long long p1 = 0, p2 = 0, used;

	make_state_dir();
	start_with_state(&d, "");
	echo_as_alice(&d, 150000);
	assert_int_equal(it_daemon_stop(&d), 0);
	assert_int_equal(state_used("alice", &p1), 300000);
	start_with_state(&d, "");
	echo_as_alice(&d, 100000);
	assert_int_equal(it_daemon_stop(&d), 0);
	used = state_used("alice", &p2);
	assert_int_equal(used, p1 == p2 ? 500000 : 200000);
	remove_state_dir();
}

static void
test_quota_counters_survive_a_reload(void **state)
{
	struct it_daemon d;
	long long p1 = 0, used;

	make_state_dir();
	start_with_state(&d, "");
	echo_as_alice(&d, 150000);
	assert_int_equal(kill(d.pid, SIGHUP), 0);
	if (!it_acl_wait_log(&d, "info: reloaded ", 1, WAIT_MS))
		fail_msg("no reload");
	echo_as_alice(&d, 100000);
	assert_int_equal(it_daemon_stop(&d), 0);
	used = state_used("alice", &p1);
	/* A day that began in between leaves only the second echo. */
	if (used != 500000)
		assert_int_equal(used, 200000);
	remove_state_dir();
}

/* A damaged state file: logged, kept aside, counting from zero; the start
 * does not fail. */
static void
test_corrupt_state_file_starts_from_zero(void **state)
{
	struct it_daemon d;
	char path[128];
	FILE *f;

	make_state_dir();
	snprintf(path, sizeof(path), "%s/quota.state", state_dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("socks5d-quota-state 1\nuser alice day 1 999999999\nend 1 0123456789abcdef\n", f);
	fclose(f);
	start_with_state(&d, "");
	if (!it_acl_wait_log(&d, "count or checksum does not match; counting starts from zero", 1,
		    WAIT_MS))
		fail_msg("the damaged file was not reported");
	echo_as_alice(&d, 1000);
	assert_int_equal(it_daemon_stop(&d), 0);
	assert_int_equal(state_used("alice", NULL), 2000);
	snprintf(path, sizeof(path), "%s/quota.state.corrupt", state_dir);
	assert_int_equal(access(path, F_OK), 0);
	remove_state_dir();
}

/* A reload that lowers a quota below what was used reaches it at once:
 * the running session is closed, the next request refused. */
static void
test_reload_lowering_a_quota_below_use_closes(void **state)
{
	struct it_acl_client c = { .user = "alice", .pass = "alicepw" };
	struct it_daemon d;
	char text[4096], out[4200], *at;
	size_t n;
	FILE *f;
	int fd;

	make_state_dir();
	start_with_state(&d, "");
	c.port = d.port;
	fd = it_acl_open(&c, &it_tg.echo4);
	it_expect_echo(fd, 5000, 3);
	f = fopen(d.conf, "r");
	assert_non_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	at = strstr(text, "quota 10GB day");
	assert_non_null(at);
	/* 5000 bytes, where 10000 are used. */
	snprintf(out, sizeof(out), "%.*squota 0.005MB day%s", (int)(at - text), text,
		at + strlen("quota 10GB day"));
	f = fopen(d.conf, "w");
	assert_non_null(f);
	fputs(out, f);
	fclose(f);
	assert_int_equal(kill(d.pid, SIGHUP), 0);
	it_expect_close(fd, WAIT_MS);
	it_close(fd);
	if (!it_acl_wait_log(&d, "end=\"quota reached\"", 1, WAIT_MS) ||
		!it_acl_wait_log(&d, "quota reached: user \"alice\" used 0.005MB this day", 1,
			WAIT_MS))
		fail_msg("the session was not closed as a reached quota");
	assert_int_equal(it_daemon_stop(&d), 0);
	remove_state_dir();
}

/* --- log-interim ------------------------------------------------------------------------- */

/* A running session writes interim lines with its bytes so far. */
static void
test_long_session_writes_interim_lines(void **state)
{
	struct it_fixture *fx = it_fx(state);
	int fd = it_open_tunnel(fx, AF_INET, &it_tg.echo4);
	char want[128];

	it_expect_echo(fd, 1000, 5);
	snprintf(want, sizeof(want),
		"user=- cmd=connect target=127.0.0.1:%u up=1000 down=1000 "
		"duration=",
		it_tg.echo4.port);
	if (!it_acl_wait_log(&fx->d, want, 2, WAIT_MS))
		fail_msg("no two interim lines with up=1000 down=1000");
	assert_true(it_acl_log_count(&fx->d, "info: interim id=") >= 2);
	it_close(fd);
	it_acl_expect_log(&fx->d, "up=1000 down=1000 duration=", WAIT_MS);
}

static int
setup_interim(void **state)
{
	return it_fixture_start(state, "auth none\nlog-interim 1\n", NULL, NULL);
}

/* --- socks5d ctl and the metrics ---------------------------------------------------------- */

static char ctl_path[64];
static uint16_t ctl_metrics_port;
static uint64_t killed_id;

/* socks5d ctl -s SOCKET words...; its exit status, stdout+stderr in out. */
static int
ctl(char *out, size_t cap, const char *w1, const char *w2, const char *w3)
{
	char *argv[] = { getenv("SOCKS5D"), "ctl", "-s", ctl_path, (char *)w1, (char *)w2,
		(char *)w3, NULL };

	return it_acl_run_capture(argv, 10000, out, cap);
}

static void
expect_ctl(int want_rc, const char *want, const char *w1, const char *w2, const char *w3)
{
	char out[8192];
	int rc = ctl(out, sizeof(out), w1, w2, w3);

	if (rc != want_rc || !strstr(out, want))
		fail_msg("socks5d ctl %s %s %s: exit %d, said:\n%s\nwanted exit %d and: %s", w1,
			w2 ? w2 : "", w3 ? w3 : "", rc, out, want_rc, want);
}

static int
open_as(const struct it_fixture *fx, const char *user, const struct it_target *t)
{
	struct it_acl_client c = { .port = fx->d.port, .user = user };
	char pass[32];

	snprintf(pass, sizeof(pass), "%spw", user);
	c.pass = pass;
	return it_acl_open(&c, t);
}

/* sessions: the running session with its bytes so far; --json too. */
static void
test_ctl_sessions_lists_running_sessions(void **state)
{
	struct it_fixture *fx = it_fx(state);
	int fd = open_as(fx, "alice", &it_tg.echo4);
	char want[256], out[8192], *id;

	it_expect_echo(fd, 1000, 11);
	snprintf(want, sizeof(want),
		"user=alice cmd=connect target=127.0.0.1:%u state=relay up=1000 down=1000 ",
		it_tg.echo4.port);
	expect_ctl(0, want, "sessions", NULL, NULL);
	snprintf(want, sizeof(want),
		"\"user\":\"alice\",\"cmd\":\"connect\",\"target\":\"127.0.0.1:%u\","
		"\"state\":\"relay\",\"up\":1000,\"down\":1000,",
		it_tg.echo4.port);
	expect_ctl(0, want, "sessions", "--json", NULL);
	assert_int_equal(ctl(out, sizeof(out), "sessions", NULL, NULL), 0);
	id = strstr(out, "id=");
	assert_non_null(id);
	killed_id = strtoull(id + 3, NULL, 10);
	assert_true(killed_id > 0);
	/* kill: that session ends, logged as killed. */
	snprintf(want, sizeof(want), "killed id=%llu", (unsigned long long)killed_id);
	snprintf(out, sizeof(out), "%llu", (unsigned long long)killed_id);
	expect_ctl(0, want, "kill", out, NULL);
	it_expect_close(fd, WAIT_MS);
	it_close(fd);
	it_acl_expect_log(&fx->d, "up=1000 down=1000 duration=", WAIT_MS);
	it_acl_expect_log(&fx->d, "end=\"killed\"", WAIT_MS);
	expect_ctl(1, "no session 4000000000", "kill", "4000000000", NULL);
	expect_ctl(2, "usage: socks5d ctl", "kill", "x", NULL);
}

/* users: bytes, sessions, limit and quota; quota-reset starts it over. */
static void
test_ctl_users_and_quota_reset(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct it_acl_client c = { .port = fx->d.port, .user = "carol", .pass = "carolpw" };
	int fd = open_as(fx, "bob", &it_tg.echo4);

	it_expect_echo(fd, 5000, 12);
	it_close(fd);
	it_acl_expect_log(&fx->d, "user=bob cmd=connect", WAIT_MS);
	expect_ctl(0,
		"user=bob sessions=0 up=5000 down=5000 limit_up=unlimited limit_down=8mbit "
		"quota=1GB used=10000 left=999990000 period=day resets=",
		"users", NULL, NULL);
	expect_ctl(0,
		"\"user\":\"bob\",\"sessions\":0,\"up\":5000,\"down\":5000,"
		"\"limit_up\":0,\"limit_down\":8000000,\"quota\":1000000000,"
		"\"used\":10000,\"left\":999990000,\"period\":\"day\"",
		"users", "--json", NULL);
	expect_ctl(0, "reset user=bob was=10000", "quota-reset", "bob", NULL);
	expect_ctl(0,
		"user=bob sessions=0 up=5000 down=5000 limit_up=unlimited limit_down=8mbit "
		"quota=1GB used=0 left=1000000000 period=day",
		"users", NULL, NULL);
	it_acl_expect_log(&fx->d, "quota reset: user \"bob\" had used 10000 bytes", WAIT_MS);
	expect_ctl(1, "no quota for user carol", "quota-reset", "carol", NULL);
	/* A client group with a quota, counted as users are. */
	c.src = "127.0.0.2";
	fd = it_acl_open(&c, &it_tg.echo4);
	it_expect_echo(fd, 100, 15);
	it_close(fd);
	it_acl_expect_log(&fx->d, "client=127.0.0.2:", WAIT_MS);
	expect_ctl(0,
		"client=127.0.0.2 sessions=0 limit_up=unlimited limit_down=unlimited "
		"quota=1MB used=200 left=999800 period=week",
		"clients", NULL, NULL);
	expect_ctl(0, "reset client=127.0.0.2 was=200", "quota-reset", "--client", "127.0.0.2");
}

/* reload, and a reload that fails with the file's error. */
static void
test_ctl_reload(void **state)
{
	struct it_fixture *fx = it_fx(state);
	FILE *f;

	expect_ctl(0, "reloaded", "reload", NULL, NULL);
	it_acl_expect_log(&fx->d, "info: reloaded ", WAIT_MS);
	f = fopen(fx->d.conf, "a");
	assert_non_null(f);
	fputs("bogus-directive 1\n", f);
	fclose(f);
	expect_ctl(1, "unknown directive 'bogus-directive'", "reload", NULL, NULL);
	/* The running configuration stays: sessions still work. */
	assert_int_equal(it_acl_log_count(&fx->d, "info: reloaded "), 1);
}

/* A client that connects and sends nothing is dropped (timeout handshake),
 * and the socket is the owner's alone. */
static void
test_ctl_silent_client_is_dropped(void **state)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	char c;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 10 };

	assert_int_equal(stat(ctl_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	memcpy(sun.sun_path, ctl_path, strlen(ctl_path));
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(read(fd, &c, 1), 0);
	close(fd);
}

/* Per-user series move while a session runs; users past metrics-users
 * are summed as _other; quota gauges; live bytes in socks5d_bytes_total.
 * (The fixture's own sessions, dave's, run between the tests: every
 * count here is a difference within this test.) */
static void
test_metrics_per_user_live_and_capped(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const char *alice_up = "socks5d_user_bytes_total{user=\"alice\",direction=\"up\"}";
	const char *other_down = "socks5d_user_bytes_total{user=\"_other\",direction=\"down\"}";
	const char *all_up = "socks5d_bytes_total{direction=\"up\"}";
	unsigned long long a0 = metric_of(ctl_metrics_port, alice_up);
	unsigned long long o0 = metric_of(ctl_metrics_port, other_down);
	unsigned long long t0 = metric_of(ctl_metrics_port, all_up);
	int fd = open_as(fx, "alice", &it_tg.echo4), c;

	it_expect_echo(fd, 700, 13);
	/* Counted while the session runs. */
	assert_int_equal(metric_of(ctl_metrics_port, alice_up), a0 + 700);
	assert_int_equal(metric_of(ctl_metrics_port, "socks5d_user_sessions{user=\"alice\"}"), 1);
	assert_int_equal(metric_of(ctl_metrics_port, all_up), t0 + 700);
	/* Users are exported in the order they first logged in: alice,
	 * dave (the fixture's), then bob and carol are summed. */
	c = open_as(fx, "carol", &it_tg.echo4);
	it_expect_echo(c, 300, 14);
	it_close(c);
	it_acl_expect_log(&fx->d, "user=carol cmd=connect", WAIT_MS);
	assert_int_equal(metric_of(ctl_metrics_port, other_down), o0 + 300);
	assert_int_equal(metric_of(ctl_metrics_port,
				 "socks5d_quota_limit_bytes{scope=\"user\",name=\"bob\"}"),
		1000000000);
	/* bob's bytes are summed in _other; his limit is the first there is. */
	assert_int_equal(metric_of(ctl_metrics_port,
				 "socks5d_user_rate_limit_bits{user=\"bob\",direction=\"down\"}"),
		8000000);
	assert_int_equal(metric_of(ctl_metrics_port,
				 "socks5d_user_rate_limit_bits{user=\"bob\",direction=\"up\"}"),
		0);
	assert_int_equal(metric_of(ctl_metrics_port,
				 "socks5d_quota_used_bytes{scope=\"user\",name=\"bob\"}"),
		0);
	it_close(fd);
	it_acl_expect_log(&fx->d, "up=700 down=700 duration=", WAIT_MS);
	assert_int_equal(metric_of(ctl_metrics_port, alice_up), a0 + 700);
}

static int
setup_ctl(void **state)
{
	static char conf[768];

	snprintf(ctl_path, sizeof(ctl_path), "/tmp/socks5d-it-ctl.%d.sock", (int)getpid());
	ctl_metrics_port = it_acl_free_port();
	make_state_dir();
	snprintf(conf, sizeof(conf),
		"auth password\nuser alice alicepw\nuser bob bobpw\nuser carol carolpw\n"
		"user dave davepw\n"
		"limit user bob rate unlimited 8mbit\nlimit user bob quota 1GB day\n"
		"limit client 127.0.0.2 quota 1MB week\n"
		"control %s\nmetrics 127.0.0.1:%u\nmetrics-users 2\ntimeout handshake 2\n"
		"state-dir %s\n",
		ctl_path, ctl_metrics_port, state_dir);
	return it_fixture_start(state, conf, "dave", "davepw");
}

static int
teardown_ctl(void **state)
{
	int r = it_fixture_stop(state);

	remove_state_dir();
	if (access(ctl_path, F_OK) == 0) {
		print_error("ERROR: the control socket %s is left after the stop\n", ctl_path);
		it_harness_failures++;
	}
	return r;
}

int
it_run_shaping_tests(void)
{
	const struct CMUnitTest session[] = {
		IT_TEST(test_session_limit_is_per_session),
	};
	const struct CMUnitTest user[] = {
		IT_TEST(test_user_limit_is_shared_by_a_users_sessions),
		IT_TEST(test_exempt_user_is_not_limited),
		IT_TEST(test_sessions_sharing_a_limit_get_equal_shares),
	};
	const struct CMUnitTest client[] = {
		IT_TEST(test_client_limit_is_per_client_address),
	};
	const struct CMUnitTest rule[] = {
		IT_TEST(test_rule_rate_is_shared_by_what_the_rule_allowed),
	};
	const struct CMUnitTest udp[] = {
		IT_TEST(test_udp_datagrams_over_the_limit_are_dropped_and_counted),
	};
	const struct CMUnitTest quota[] = {
		IT_TEST(test_quota_reached_mid_session_closes_and_refuses),
		IT_TEST(test_quota_reached_with_then_rate_slows_down),
	};
	const struct CMUnitTest state_tests[] = {
		cmocka_unit_test(test_quota_counters_survive_a_restart),
		cmocka_unit_test(test_quota_counters_survive_a_reload),
		cmocka_unit_test(test_corrupt_state_file_starts_from_zero),
		cmocka_unit_test(test_reload_lowering_a_quota_below_use_closes),
	};
	const struct CMUnitTest interim[] = {
		IT_TEST(test_long_session_writes_interim_lines),
	};
	const struct CMUnitTest ctl_tests[] = {
		IT_TEST(test_ctl_sessions_lists_running_sessions),
		IT_TEST(test_ctl_users_and_quota_reset),
		IT_TEST(test_ctl_reload),
		IT_TEST(test_ctl_silent_client_is_dropped),
		IT_TEST(test_metrics_per_user_live_and_capped),
	};
	int failed = 0;

	if (it_is_microsocks()) {
		print_message("[   INFO   ] microsocks has no limits: shaping groups skipped\n");
		return 0;
	}
	failed += cmocka_run_group_tests_name("shaping: session limit", session, setup_session,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("shaping: user limits, fairness", user, setup_user,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("shaping: client limit", client, setup_client,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("shaping: rule rate", rule, setup_rule,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("shaping: UDP", udp, setup_udp, it_fixture_stop);
	failed += cmocka_run_group_tests_name("shaping: quotas", quota, setup_quota,
		teardown_quota);
	failed += cmocka_run_group_tests_name("shaping: quota state", state_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("shaping: log-interim", interim, setup_interim,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("shaping: socks5d ctl, metrics", ctl_tests, setup_ctl,
		teardown_ctl);
	return failed;
}
