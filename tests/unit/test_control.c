/*
 * Unit tests for control (issue 18): the control socket's request parser
 * at every split point of every request (NEED_MORE for each prefix, the
 * same request once the line is complete, nothing consumed or written
 * otherwise), each refusal as soon as its offending byte arrives, the
 * formatter as the parser's inverse (names with every byte value), and the
 * server in a real loop: answers in parts through its fixed buffer, a
 * client that sends nothing dropped at the deadline, the socket's mode.
 * admin's JSON strings are checked here too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin.h"
#include "control.h"
#include "loop.h"
#include "unit_util.h"

static int
parse_cb(const uint8_t *p, size_t len, void *out, size_t *consumed, void *arg)
{
	return control_parse_request(p, len, out, consumed);
}

static const char *
status_cb(int st, void *arg)
{
	return control_status_str((enum control_status)st);
}

static const struct unit_parser parser = {
	.parse = parse_cb,
	.status_str = status_cb,
	.ok = CONTROL_OK,
	.need_more = CONTROL_NEED_MORE,
	.out_size = sizeof(struct control_request),
	.next = (const uint8_t *)"users\n",
	.next_len = 6,
	.clean_unless_ok = true,
};

static struct control_request
parse_whole(const char *line)
{
	struct control_request r;

	unit_assert_parses_at_every_split(&parser, (const uint8_t *)line, strlen(line), &r);
	return r;
}

static void
test_every_request_at_every_split(void **state)
{
	struct control_request r;

	r = parse_whole("sessions\n");
	assert_int_equal(r.cmd, CONTROL_SESSIONS);
	assert_false(r.json);
	r = parse_whole("sessions --json\r\n");
	assert_int_equal(r.cmd, CONTROL_SESSIONS);
	assert_true(r.json);
	r = parse_whole("--json users\n");
	assert_int_equal(r.cmd, CONTROL_USERS);
	assert_true(r.json);
	r = parse_whole("clients\n");
	assert_int_equal(r.cmd, CONTROL_CLIENTS);
	r = parse_whole("kill 18446744073709551615\n");
	assert_int_equal(r.cmd, CONTROL_KILL);
	assert_true(r.id == UINT64_MAX);
	r = parse_whole("quota-reset a%20b%25x\n");
	assert_int_equal(r.cmd, CONTROL_QUOTA_RESET);
	assert_string_equal(r.name, "a b%x");
	r = parse_whole("quota-reset al%C3%AFce --json\n");
	assert_int_equal(r.cmd, CONTROL_QUOTA_RESET);
	assert_int_equal(r.name_len, 6);
	assert_memory_equal(r.name,
		"al\xc3\xaf"
		"ce",
		7);
	r = parse_whole("quota-reset --client 2001:db8::/64\n");
	assert_true(r.client);
	assert_string_equal(r.name, "2001:db8::/64");
	r = parse_whole("reload\n");
	assert_int_equal(r.cmd, CONTROL_RELOAD);
}

static void
expect_error(const char *line, size_t bad, enum control_status want)
{
	unit_assert_error_from(&parser, (const uint8_t *)line, strlen(line), bad, want);
}

/* Refused as soon as the bytes show it: a bad byte where it stands, a
 * wrong command or argument at the end of its line. */
static void
test_refusals_come_as_soon_as_they_can(void **state)
{
	char long_line[CONTROL_REQUEST_MAX + 8];

	expect_error("sess\x01ons\n", 4, CONTROL_ERR_BYTE);
	expect_error("users\tx\n", 5, CONTROL_ERR_BYTE);
	expect_error("users\rx\n", 6, CONTROL_ERR_BYTE);
	expect_error("us\xe9rs\n", 2, CONTROL_ERR_BYTE);
	expect_error("bogus\n", 5, CONTROL_ERR_COMMAND);
	expect_error("\n", 0, CONTROL_ERR_COMMAND);
	expect_error("users --all\n", 11, CONTROL_ERR_COMMAND);
	expect_error("users  --json\n", 13, CONTROL_ERR_ARGS);
	expect_error(" users\n", 6, CONTROL_ERR_ARGS);
	expect_error("users extra\n", 11, CONTROL_ERR_ARGS);
	expect_error("users --client\n", 14, CONTROL_ERR_ARGS);
	expect_error("kill\n", 4, CONTROL_ERR_ARGS);
	expect_error("kill 0\n", 6, CONTROL_ERR_ARGS);
	expect_error("kill -1\n", 7, CONTROL_ERR_ARGS);
	expect_error("kill 18446744073709551616\n", 25, CONTROL_ERR_ARGS);
	expect_error("kill 1 2\n", 8, CONTROL_ERR_ARGS);
	expect_error("quota-reset\n", 11, CONTROL_ERR_ARGS);
	expect_error("quota-reset a%2\n", 15, CONTROL_ERR_ARGS);
	expect_error("quota-reset %00\n", 15, CONTROL_ERR_ARGS);
	memset(long_line, 'x', sizeof(long_line));
	long_line[sizeof(long_line) - 1] = '\0';
	expect_error(long_line, CONTROL_REQUEST_MAX - 1, CONTROL_ERR_TOO_LONG);
}

/* What the client writes is what the server reads, whatever the name. */
static void
test_format_is_the_parsers_inverse(void **state)
{
	struct control_request r, back;
	char line[CONTROL_REQUEST_MAX + 1];
	size_t used;

	memset(&r, 0, sizeof(r));
	r.cmd = CONTROL_QUOTA_RESET;
	r.json = true;
	for (unsigned b = 1; b < 256; b++) {
		r.name[0] = 'u';
		r.name[1] = (char)b;
		r.name[2] = '\0';
		r.name_len = 2;
		assert_true(control_format_request(&r, line, sizeof(line)) > 0);
		assert_int_equal(
			control_parse_request((const uint8_t *)line, strlen(line), &back, &used),
			CONTROL_OK);
		assert_int_equal(used, strlen(line));
		assert_int_equal(back.name_len, 2);
		assert_memory_equal(back.name, r.name, 3);
		assert_true(back.json);
	}
	memset(&r, 0, sizeof(r));
	r.cmd = CONTROL_KILL;
	r.id = 42;
	assert_true(control_format_request(&r, line, sizeof(line)) > 0);
	assert_string_equal(line, "kill 42\n");
	r.cmd = CONTROL_QUOTA_RESET;
	r.client = true;
	memcpy(r.name, "192.0.2.7", 10);
	r.name_len = 9;
	assert_true(control_format_request(&r, line, sizeof(line)) > 0);
	assert_string_equal(line, "quota-reset --client 192.0.2.7\n");
	assert_int_equal(control_format_request(&r, line, 10), -1);
}

static void
test_json_strings(void **state)
{
	char out[64];

	assert_string_equal(admin_json_string("al\"ic\\e", out, sizeof(out)), "\"al\\\"ic\\\\e\"");
	assert_string_equal(admin_json_string("a\nb\x7f\xff", out, sizeof(out)),
		"\"a\\u000ab\\u007f\\u00ff\"");
	/* Cut short, still a string. */
	assert_string_equal(admin_json_string("abcdefgh", out, 6), "\"abc\"");
	assert_string_equal(admin_json_string("\x01\x01", out, 8), "\"\"");
	assert_string_equal(admin_json_string("\x01\x01", out, 9), "\"\\u0001\"");
}

/* --- the server ------------------------------------------------------------------- */

struct srv {
	struct loop *loop;
	struct control_server *s;
	char path[64];
	unsigned records; /* sessions: how many to answer */
	unsigned calls;
};

/* "sessions" answers records lines of 100 bytes, several buffers' worth. */
static bool
handler(const struct control_request *req, struct control_reply *w, uint64_t *cursor, void *arg)
{
	struct srv *sv = arg;

	sv->calls++;
	if (req->cmd != CONTROL_SESSIONS) {
		control_error(w, "only sessions here");
		return true;
	}
	if (*cursor == 0)
		control_ok(w);
	for (; *cursor < sv->records; (*cursor)++)
		if (control_printf(w, "%08llu %090d\n", (unsigned long long)*cursor, 0) < 0)
			return false;
	return true;
}

static int
srv_setup(void **state)
{
	struct srv *sv = calloc(1, sizeof(*sv));

	assert_non_null(sv);
	log_init(LOG_LVL_WARN);
	sv->loop = loop_new();
	snprintf(sv->path, sizeof(sv->path), "/tmp/test_control.%d.sock", (int)getpid());
	sv->s = control_start(sv->loop, sv->path, (uid_t)-1, (gid_t)-1, 300, handler, sv);
	assert_non_null(sv->s);
	*state = sv;
	return 0;
}

static int
srv_teardown(void **state)
{
	struct srv *sv = *state;

	control_stop(sv->s);
	loop_free(sv->loop);
	assert_int_equal(access(sv->path, F_OK), -1);
	free(sv);
	return 0;
}

static int
srv_connect(const struct srv *sv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	memcpy(sun.sun_path, sv->path, strlen(sv->path));
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

struct reader {
	int fd;
	char *text;
	size_t len;
	bool eof;
};

static bool
read_some(void *arg)
{
	struct reader *r = arg;
	char buf[4096];
	ssize_t n;

	while ((n = read(r->fd, buf, sizeof(buf))) > 0) {
		r->text = realloc(r->text, r->len + (size_t)n + 1);
		assert_non_null(r->text);
		memcpy(r->text + r->len, buf, (size_t)n);
		r->len += (size_t)n;
		r->text[r->len] = '\0';
	}
	if (n == 0)
		r->eof = true;
	return r->eof;
}

static void
test_server_answers_in_parts_then_closes(void **state)
{
	struct srv *sv = *state;
	struct reader r = { .fd = srv_connect(sv) };
	char want[128];

	sv->records = 1000; /* 100 KB: six buffers */
	assert_int_equal(write(r.fd, "sess", 4), 4);
	assert_int_equal(write(r.fd, "ions\n", 5), 5);
	assert_true(unit_run_until(sv->loop, read_some, &r, 5000));
	assert_int_equal(r.len, 3 + 1000 * 100);
	assert_memory_equal(r.text, "ok\n", 3);
	for (unsigned i = 0; i < 1000; i += 333) {
		snprintf(want, sizeof(want), "%08u %090d\n", i, 0);
		assert_memory_equal(r.text + 3 + (size_t)i * 100, want, 100);
	}
	assert_true(sv->calls >= 1000 * 100 / CONTROL_REPLY_CAP);
	free(r.text);
	close(r.fd);
}

static void
test_server_refuses_a_bad_request_and_drops_a_silent_client(void **state)
{
	struct srv *sv = *state;
	struct reader r = { .fd = srv_connect(sv) }, silent = { .fd = srv_connect(sv) };
	struct stat st;

	assert_int_equal(stat(sv->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(write(r.fd, "kill x\n", 7), 7);
	assert_true(unit_run_until(sv->loop, read_some, &r, 5000));
	assert_string_equal(r.text, "error: wrong arguments\n");
	/* Nothing sent: closed at the deadline (300 ms here). */
	assert_true(unit_run_until(sv->loop, read_some, &silent, 5000));
	assert_int_equal(silent.len, 0);
	free(r.text);
	close(r.fd);
	close(silent.fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_request_at_every_split),
		cmocka_unit_test(test_refusals_come_as_soon_as_they_can),
		cmocka_unit_test(test_format_is_the_parsers_inverse),
		cmocka_unit_test(test_json_strings),
		cmocka_unit_test_setup_teardown(test_server_answers_in_parts_then_closes, srv_setup,
			srv_teardown),
		cmocka_unit_test_setup_teardown(
			test_server_refuses_a_bad_request_and_drops_a_silent_client, srv_setup,
			srv_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
