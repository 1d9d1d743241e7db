/*
 * userswatch (issue 20: users-file ... watch): the callback runs once per
 * burst of changes to the watched name, for a rename into place and for an
 * in-place write, not for other names in the directory; a symlinked path
 * is followed; stopping from inside the callback is safe.
 */
#include "unit_util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"
#include "userswatch.h"

struct ctx {
	struct loop *loop;
	struct userswatch *w;
	char dir[64];
	char path[128];
	int calls;
	bool stop_in_cb;
};

static void
on_change(void *arg)
{
	struct ctx *c = arg;

	c->calls++;
	if (c->stop_in_cb) {
		userswatch_stop(c->w);
		c->w = NULL;
	}
}

static bool
called(void *arg)
{
	return ((struct ctx *)arg)->calls > 0;
}

static void
put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static char *
in_dir(struct ctx *c, const char *name)
{
	static char buf[160];

	snprintf(buf, sizeof(buf), "%s/%s", c->dir, name);
	return buf;
}

static int
setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	snprintf(c->dir, sizeof(c->dir), "/tmp/test_userswatch.XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	snprintf(c->path, sizeof(c->path), "%s/users", c->dir);
	put(c->path, "alice:x\n");
	c->loop = loop_new();
	assert_non_null(c->loop);
	*state = c;
	return 0;
}

static int
teardown(void **state)
{
	struct ctx *c = *state;
	const char *names[] = { "users", "users.new", "other", "real-users", "link" };

	userswatch_stop(c->w);
	loop_free(c->loop);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		(void)unlink(in_dir(c, names[i]));
	(void)rmdir(c->dir);
	free(c);
	return 0;
}

static void
start(struct ctx *c, const char *path)
{
	c->w = userswatch_start(c->loop, path, on_change, c);
	assert_non_null(c->w);
	assert_string_equal(userswatch_path(c->w), path);
}

static void
test_rename_into_place_calls_back_once(void **state)
{
	struct ctx *c = *state;

	start(c, c->path);
	put(in_dir(c, "users.new"), "alice:x\nbob:y\n");
	assert_int_equal(rename(in_dir(c, "users.new"), c->path), 0);
	assert_true(unit_run_until(c->loop, called, c, 3000));
	/* The burst is over: nothing more comes. */
	unit_run_for(c->loop, 300, UNIT_RUN_WAIT_MS);
	assert_int_equal(c->calls, 1);
}

static void
test_in_place_write_calls_back(void **state)
{
	struct ctx *c = *state;

	start(c, c->path);
	put(c->path, "carol:z\n");
	assert_true(unit_run_until(c->loop, called, c, 3000));
}

static void
test_other_names_in_the_directory_are_ignored(void **state)
{
	struct ctx *c = *state;

	start(c, c->path);
	put(in_dir(c, "other"), "not the users file\n");
	unit_run_for(c->loop, 400, UNIT_RUN_WAIT_MS);
	assert_int_equal(c->calls, 0);
}

static void
test_symlink_is_followed_to_the_real_file(void **state)
{
	struct ctx *c = *state;
	char link[160];

	put(in_dir(c, "real-users"), "dave:w\n");
	snprintf(link, sizeof(link), "%s", in_dir(c, "link"));
	assert_int_equal(symlink("real-users", link), 0);
	start(c, link);
	put(in_dir(c, "real-users"), "dave:v\n");
	assert_true(unit_run_until(c->loop, called, c, 3000));
}

static void
test_stop_inside_callback_is_safe(void **state)
{
	struct ctx *c = *state;

	c->stop_in_cb = true;
	start(c, c->path);
	put(c->path, "erin:u\n");
	assert_true(unit_run_until(c->loop, called, c, 3000));
	assert_null(c->w);
	/* Stopped: later changes call nothing (and touch no freed memory). */
	put(c->path, "erin:t\n");
	unit_run_for(c->loop, 300, UNIT_RUN_WAIT_MS);
	assert_int_equal(c->calls, 1);
}

/* userswatch_sync, as main and the supervisor call it after each load. */
static void
test_sync_keeps_replaces_and_stops(void **state)
{
	struct ctx *c = *state;
	struct userswatch *first;

	userswatch_sync(&c->w, c->loop, c->path, true, on_change, c);
	assert_non_null(c->w);
	first = c->w;
	userswatch_sync(&c->w, c->loop, c->path, true, on_change, c);
	assert_ptr_equal(c->w, first); /* same path: the same watch */
	put(in_dir(c, "other"), "x\n");
	userswatch_sync(&c->w, c->loop, in_dir(c, "other"), true, on_change, c);
	assert_non_null(c->w);
	assert_string_equal(userswatch_path(c->w), in_dir(c, "other"));
	userswatch_sync(&c->w, c->loop, c->path, false, on_change, c);
	assert_null(c->w);
	/* Nothing watches any more: a change calls nothing. */
	put(c->path, "x:y\n");
	unit_run_for(c->loop, 300, UNIT_RUN_WAIT_MS);
	assert_int_equal(c->calls, 0);
	/* A watch that cannot be set up leaves NULL (and is logged). */
	userswatch_sync(&c->w, c->loop, "/nonexistent-socks5d/users", true, on_change, c);
	assert_null(c->w);
}

static void
test_missing_directory_fails_with_errno(void **state)
{
	struct ctx *c = *state;

	errno = 0;
	assert_null(userswatch_start(c->loop, "/nonexistent-socks5d/users", on_change, c));
	assert_int_equal(errno, ENOENT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rename_into_place_calls_back_once, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_in_place_write_calls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_names_in_the_directory_are_ignored,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_is_followed_to_the_real_file, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_stop_inside_callback_is_safe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_keeps_replaces_and_stops, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_missing_directory_fails_with_errno, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
