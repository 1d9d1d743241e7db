/*
 * test_pwcheck: the password checks as the daemon runs them, with real
 * helper processes forked from the test (issue 17): verdicts, the cache of
 * verified passwords (not hashed twice, kept across a reload for an
 * unchanged secret, dropped for a changed one), cancelled checks, and a
 * keeper that dies with checks in flight. The jobs' memory is filled with
 * garbage before each submit, as a reused connection's would be.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "pwcheck.h"
#include "unit_util.h"

/* SHA-512, 1000 rounds: a real hash that takes a millisecond. */
#define CAROL                                                               \
	"$6$rounds=1000$socks5dtest$GmW1zTW2fCO0dn2DKAa87jQcz2jacqiT64ibk." \
	"cYOOBSraf1aA8yXxs9pXXWcXLW7kku16pbFAAUvssQY8iCH."
#define GUARD_MS 10000

struct fx {
	struct loop *loop;
	struct config *cfg;
	struct pwcheck *pw;
	char path[64];
};

struct answer {
	bool done;
	enum pwcheck_result r;
	bool hashed;
	unsigned calls;
};

static void
on_done(enum pwcheck_result r, bool hashed, void *arg)
{
	struct answer *a = arg;

	a->done = true;
	a->r = r;
	a->hashed = hashed;
	a->calls++;
}

static bool
pred_done(void *arg)
{
	return ((struct answer *)arg)->done;
}

static void
write_conf(struct fx *f, const char *carol_secret)
{
	FILE *fp = fopen(f->path, "w");

	assert_non_null(fp);
	fprintf(fp, "auth password\nuser carol %s\nuser dave davepw\n", carol_secret);
	fclose(fp);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct pwcheck_options po = { .ipv6_prefix = 64 };
	char err[256];
	int fd;

	log_init(LOG_LVL_ERROR);
	snprintf(f->path, sizeof(f->path), "/tmp/test_pwcheck.XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	close(fd);
	write_conf(f, CAROL);
	f->cfg = config_load(f->path, true, err, sizeof(err));
	assert_non_null(f->cfg);
	f->loop = loop_new();
	po.helper.path = f->path;
	po.helper.explicit_path = true;
	po.helper.hashers = 1;
	f->pw = pwcheck_start(f->loop, f->cfg->users, &po);
	assert_non_null(f->pw);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	pwcheck_stop(f->pw);
	loop_free(f->loop);
	config_unref(f->cfg);
	unlink(f->path);
	free(f);
	return 0;
}

/* Submits from memory full of garbage and waits for the answer. */
static struct answer
check(struct fx *f, const char *user, const char *pass)
{
	static struct pwcheck_job job;
	struct answer a = { 0 };
	union sockaddr_any client = unit_addr("192.0.2.1", 1000);

	memset(&job, 0xA5, sizeof(job));
	pwcheck_submit(f->pw, &job, &client, user, strlen(user), pass, strlen(pass), on_done, &a);
	assert_false(a.done); /* never from inside the submit */
	assert_true(unit_run_until(f->loop, pred_done, &a, GUARD_MS));
	assert_int_equal(a.calls, 1);
	return a;
}

static void
test_verdicts_and_the_cache(void **state)
{
	struct fx *f = *state;
	struct answer a;

	a = check(f, "carol", "carolpw");
	assert_int_equal(a.r, PWCHECK_OK);
	assert_true(a.hashed);
	a = check(f, "carol", "carolpw");
	assert_int_equal(a.r, PWCHECK_OK);
	assert_false(a.hashed); /* verified before: not hashed again */
	a = check(f, "carol", "wrong");
	assert_int_equal(a.r, PWCHECK_FAIL);
	assert_true(a.hashed); /* a wrong password is always hashed */
	a = check(f, "nobody", "carolpw");
	assert_int_equal(a.r, PWCHECK_FAIL);
	assert_true(a.hashed); /* an unknown name costs a hash too */
	a = check(f, "dave", "davepw");
	assert_int_equal(a.r, PWCHECK_OK);
	assert_false(a.hashed); /* plain text: the keeper answers */
	a = check(f, "carol", "carolpw");
	assert_int_equal(a.r, PWCHECK_OK);
	assert_false(a.hashed); /* the wrong password did not evict it */
	assert_int_equal(pwcheck_get_stats(f->pw)->hashed, 3);
}

/* Reload, then the check that tells whether the cache was kept. */
static struct answer
check_after_reload(struct fx *f)
{
	struct pwcheck_options po = { .helper = { f->path, true, 1 }, .ipv6_prefix = 64 };

	pwcheck_reload(f->pw, &po);
	return check(f, "carol", "carolpw");
}

static void
test_cache_survives_a_reload_only_for_an_unchanged_secret(void **state)
{
	struct fx *f = *state;
	struct answer a = check(f, "carol", "carolpw");

	assert_true(a.hashed);
	a = check_after_reload(f);
	assert_int_equal(a.r, PWCHECK_OK);
	assert_false(a.hashed);
	/* The same password under a new hash (salt): verified again. */
	write_conf(f, "$6$rounds=1000$othersalt$" /* not carolpw's: the check fails */);
	a = check_after_reload(f);
	assert_int_equal(a.r, PWCHECK_FAIL);
	assert_true(a.hashed);
}

static void
test_cancelled_check_is_never_answered(void **state)
{
	struct fx *f = *state;
	struct pwcheck_job job;
	struct answer a = { 0 }, b;
	union sockaddr_any client = unit_addr("192.0.2.1", 1000);

	memset(&job, 0xA5, sizeof(job));
	pwcheck_submit(f->pw, &job, &client, "carol", 5, "wrong", 5, on_done, &a);
	pwcheck_cancel(&job);
	/* A later check's answer comes; the cancelled one's never does. */
	b = check(f, "dave", "davepw");
	assert_int_equal(b.r, PWCHECK_OK);
	unit_run_for(f->loop, 50, UNIT_RUN_WAIT_MS);
	assert_int_equal(a.calls, 0);
	assert_int_equal(pwcheck_get_stats(f->pw)->sent, 0);
}

/* The keeper dies: it is started again (reading the file) and the checks
 * it held are answered. */
static void
test_keeper_restarted_after_death(void **state)
{
	struct fx *f = *state;
	struct answer a;
	pid_t keeper[2];
	int n = 0;

	a = check(f, "dave", "davepw");
	assert_int_equal(a.r, PWCHECK_OK);
	/* The keeper is the only child of this process the test made. */
	{
		char path[64];
		FILE *fp;
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", getpid(), getpid());
		fp = fopen(path, "r");
		assert_non_null(fp);
		while (n < 2 && fscanf(fp, "%d", &keeper[n]) == 1)
			n++;
		fclose(fp);
	}
	assert_int_equal(n, 1);
	assert_int_equal(kill(keeper[0], SIGKILL), 0);
	a = check(f, "carol", "carolpw");
	assert_int_equal(a.r, PWCHECK_OK);
	assert_int_equal(pwcheck_get_stats(f->pw)->keeper_restarts, 1);
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_verdicts_and_the_cache),
		T(test_cache_survives_a_reload_only_for_an_unchanged_secret),
		T(test_cancelled_check_is_never_answered),
		T(test_keeper_restarted_after_death),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
