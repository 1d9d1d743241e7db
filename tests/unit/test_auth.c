/*
 * test_auth: the user table and the password check — plain-text, $6$ and $y$
 * secrets, wrong passwords, unknown users, the verified-password cache, and
 * users-file errors with PATH:LINE.
 *
 * crypt_r is defined here as a counting spy that forwards to libcrypt's: a
 * definition in the executable takes precedence over the shared library, so
 * the tests can see whether a check ran crypt (cache miss, dummy work for an
 * unknown user) without timing anything.
 */
#include <crypt.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"

#define ERRLEN 1024

static unsigned crypt_calls;

char *
crypt_r(const char *phrase, const char *setting, struct crypt_data *data)
{
	static char *(*real)(const char *, const char *, struct crypt_data *);

	if (!real) {
		*(void **)&real = dlsym(RTLD_NEXT, "crypt_r");
		if (!real)
			abort();
	}
	crypt_calls++;
	return real(phrase, setting, data);
}

/* A hash made with libcrypt itself; setting is a fixed salt or a prefix for
 * crypt_gensalt_rn. */
static void
make_hash(const char *pass, const char *setting, char *out, size_t cap)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	const char *h;

	assert_non_null(cd);
	if (strchr(setting + 1, '$') == setting + strlen(setting) - 1) {
		/* "$y$": a bare prefix, let libcrypt pick the salt */
		assert_non_null(crypt_gensalt_rn(setting, 0, NULL, 0, salt, sizeof(salt)));
		setting = salt;
	}
	h = crypt_r(pass, setting, cd);
	assert_non_null(h);
	assert_int_equal(h[0], '$');
	assert_true(strlen(h) < cap);
	strcpy(out, h);
	free(cd);
}

static int
setup_table(void **state)
{
	struct auth_table *t = auth_table_new();

	if (!t)
		return -1;
	*state = t;
	return 0;
}

static int
teardown_table(void **state)
{
	auth_table_free(*state);
	return 0;
}

static void
add_ok(struct auth_table *t, const char *name, const char *secret, bool want_plain)
{
	char err[ERRLEN] = "";
	bool plain = !want_plain;

	if (auth_table_add(t, name, secret, &plain, err, sizeof(err)) != 0)
		fail_msg("add %s: %s", name, err);
	assert_int_equal(plain, want_plain);
}

static void
add_err(struct auth_table *t, const char *name, const char *secret, const char *want)
{
	char err[ERRLEN] = "";

	assert_int_equal(auth_table_add(t, name, secret, NULL, err, sizeof(err)), -1);
	assert_string_equal(err, want);
}

/* --- table -------------------------------------------------------------- */

static void
test_new_table_is_empty(void **state)
{
	struct auth_table *t = *state;

	assert_int_equal(auth_table_count(t), 0);
	assert_int_equal(auth_table_plaintext_count(t), 0);
	assert_false(auth_table_has(t, "alice"));
	assert_false(auth_check(t, "alice", "pw"));
	assert_false(auth_check(t, "", ""));
	auth_table_free(NULL);
}

static void
test_add_errors(void **state)
{
	struct auth_table *t = *state;
	char long_s[300];

	add_ok(t, "alice", "pw", true);
	add_err(t, "alice", "other", "duplicate user 'alice'");
	add_err(t, "", "pw", "empty user name");
	add_err(t, "bob", "", "empty secret for user 'bob'");
	memset(long_s, 'x', 256);
	long_s[256] = '\0';
	add_err(t, long_s, "pw", "user name longer than 255 bytes");
	add_err(t, "bob", long_s, "secret for user 'bob' longer than 255 bytes");
	long_s[255] = '\0';
	add_ok(t, long_s, long_s, true);
	assert_true(auth_check(t, long_s, long_s));
	assert_int_equal(auth_table_count(t), 2);
}

static void
test_many_users_all_found(void **state)
{
	struct auth_table *t = *state;
	char name[32], pass[32];

	/* enough to grow the user array and the index several times */
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		snprintf(pass, sizeof(pass), "pass%d", i);
		add_ok(t, name, pass, true);
	}
	assert_int_equal(auth_table_count(t), 1000);
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		snprintf(pass, sizeof(pass), "pass%d", i);
		assert_true(auth_table_has(t, name));
		assert_true(auth_check(t, name, pass));
	}
	assert_false(auth_table_has(t, "user1000"));
}

/* --- plain text --------------------------------------------------------- */

static void
test_plaintext_check(void **state)
{
	struct auth_table *t = *state;
	char long_p[300];

	add_ok(t, "alice", "s3cret", true);
	add_ok(t, "bob", "$not a hash", true);
	assert_int_equal(auth_table_plaintext_count(t), 2);
	assert_true(auth_check(t, "alice", "s3cret"));
	assert_true(auth_check(t, "bob", "$not a hash"));
	assert_false(auth_check(t, "alice", "s3cre"));
	assert_false(auth_check(t, "alice", "s3cret "));
	assert_false(auth_check(t, "alice", "S3cret"));
	assert_false(auth_check(t, "alice", ""));
	assert_false(auth_check(t, "alice", "$not a hash"));
	assert_false(auth_check(t, "Alice", "s3cret"));
	assert_false(auth_check(t, "carol", "s3cret"));
	assert_false(auth_check(t, NULL, "s3cret"));
	assert_false(auth_check(t, "alice", NULL));
	assert_false(auth_check(NULL, "alice", "s3cret"));
	memset(long_p, 'a', sizeof(long_p) - 1);
	long_p[sizeof(long_p) - 1] = '\0';
	assert_false(auth_check(t, "alice", long_p));
	/* a plain-text-only table never needs crypt, even for unknown users */
	crypt_calls = 0;
	assert_false(auth_check(t, "nobody", "s3cret"));
	assert_true(auth_check(t, "alice", "s3cret"));
	assert_int_equal(crypt_calls, 0);
}

/* --- hashes ------------------------------------------------------------- */

static void
check_hashed(struct auth_table *t, const char *setting)
{
	char hash[CRYPT_OUTPUT_SIZE];

	make_hash("correct horse", setting, hash, sizeof(hash));
	add_ok(t, "alice", hash, false);
	assert_int_equal(auth_table_plaintext_count(t), 0);
	assert_false(auth_check(t, "alice", "correct hors"));
	assert_false(auth_check(t, "alice", "correct horse "));
	assert_false(auth_check(t, "alice", ""));
	/* the hash itself is not the password */
	assert_false(auth_check(t, "alice", hash));
	assert_true(auth_check(t, "alice", "correct horse"));
	assert_false(auth_check(t, "bob", "correct horse"));
}

static void
test_sha512_crypt(void **state)
{
	check_hashed(*state, "$6$0123456789abcdef$");
}

static void
test_yescrypt(void **state)
{
	check_hashed(*state, "$y$");
}

static void
test_sha256_crypt(void **state)
{
	check_hashed(*state, "$5$saltsaltsalt$");
}

/* --- the verified-password cache ---------------------------------------- */

/* Without a hashing budget (conn's guard against failed-login floods), a
 * check that needs crypt answers NEED_HASH without running it, while a
 * cached password and plain-text users still get their answer. */
static void
test_check_without_hashing_needs_hash_only_for_uncached(void **state)
{
	struct auth_table *t = *state;
	char hash[CRYPT_OUTPUT_SIZE];
	bool hashed;

	make_hash("pw1", "$y$", hash, sizeof(hash));
	add_ok(t, "alice", hash, false);
	add_ok(t, "bob", "plain", true);
	crypt_calls = 0;
	assert_int_equal(auth_check_ex(t, "alice", "pw1", false, &hashed), AUTH_RESULT_NEED_HASH);
	assert_false(hashed);
	assert_int_equal(auth_check_ex(t, "nobody", "x", false, &hashed), AUTH_RESULT_NEED_HASH);
	assert_int_equal(crypt_calls, 0);
	assert_int_equal(auth_check_ex(t, "bob", "plain", false, &hashed), AUTH_RESULT_OK);
	assert_int_equal(auth_check_ex(t, "bob", "wrong", false, &hashed), AUTH_RESULT_FAIL);
	assert_int_equal(auth_check_ex(t, "alice", "pw1", true, &hashed), AUTH_RESULT_OK);
	assert_true(hashed);
	assert_int_equal(crypt_calls, 1);
	/* Now cached: answered without hashing, and a wrong one still needs it. */
	assert_int_equal(auth_check_ex(t, "alice", "pw1", false, &hashed), AUTH_RESULT_OK);
	assert_false(hashed);
	assert_int_equal(auth_check_ex(t, "alice", "pw2", false, &hashed), AUTH_RESULT_NEED_HASH);
	assert_int_equal(crypt_calls, 1);
}

static void
test_cache_skips_crypt_after_success(void **state)
{
	struct auth_table *t = *state;
	char hash[CRYPT_OUTPUT_SIZE];

	make_hash("pw1", "$y$", hash, sizeof(hash));
	add_ok(t, "alice", hash, false);

	crypt_calls = 0;
	assert_true(auth_check(t, "alice", "pw1"));
	assert_int_equal(crypt_calls, 1);
	/* second check of the same password: answered from the cache */
	assert_true(auth_check(t, "alice", "pw1"));
	assert_int_equal(crypt_calls, 1);
	/* a wrong password after a cached right one still fails, via crypt */
	assert_false(auth_check(t, "alice", "pw2"));
	assert_int_equal(crypt_calls, 2);
	assert_false(auth_check(t, "alice", "pw"));
	assert_false(auth_check(t, "alice", "pw1 "));
	assert_false(auth_check(t, "alice", ""));
	assert_int_equal(crypt_calls, 5);
	/* and did not evict it */
	assert_true(auth_check(t, "alice", "pw1"));
	assert_int_equal(crypt_calls, 5);
}

static void
test_cache_is_per_user(void **state)
{
	struct auth_table *t = *state;
	char h1[CRYPT_OUTPUT_SIZE], h2[CRYPT_OUTPUT_SIZE];

	make_hash("same", "$6$aaaaaaaa$", h1, sizeof(h1));
	make_hash("other", "$6$bbbbbbbb$", h2, sizeof(h2));
	add_ok(t, "alice", h1, false);
	add_ok(t, "bob", h2, false);
	assert_true(auth_check(t, "alice", "same"));
	/* alice's cached password is not bob's */
	assert_false(auth_check(t, "bob", "same"));
	assert_true(auth_check(t, "bob", "other"));
	assert_false(auth_check(t, "alice", "other"));
	assert_true(auth_check(t, "alice", "same"));
}

static void
test_cache_ignores_overlong_password(void **state)
{
	struct auth_table *t = *state;
	char hash[CRYPT_OUTPUT_SIZE], pass[300];

	/* 255 bytes is the RFC 1929 limit; the 300-byte variant shares them */
	memset(pass, 'p', 255);
	pass[255] = '\0';
	make_hash(pass, "$6$cccccccc$", hash, sizeof(hash));
	add_ok(t, "alice", hash, false);
	assert_true(auth_check(t, "alice", pass));
	memset(pass, 'p', sizeof(pass) - 1);
	pass[sizeof(pass) - 1] = '\0';
	assert_false(auth_check(t, "alice", pass));
}

static void
test_unknown_user_does_dummy_crypt(void **state)
{
	struct auth_table *t = *state;
	char hash[CRYPT_OUTPUT_SIZE];

	make_hash("pw", "$6$dddddddd$", hash, sizeof(hash));
	add_ok(t, "alice", hash, false);
	crypt_calls = 0;
	assert_false(auth_check(t, "mallory", "pw"));
	assert_int_equal(crypt_calls, 1);
	/* even with the right user's password, or her hash as password */
	assert_false(auth_check(t, "mallory", hash));
	assert_int_equal(crypt_calls, 2);
}

static void
test_mixed_table(void **state)
{
	struct auth_table *t = *state;
	char hash[CRYPT_OUTPUT_SIZE];

	add_ok(t, "plain", "pw", true);
	make_hash("pw", "$6$eeeeeeee$", hash, sizeof(hash));
	add_ok(t, "hashed", hash, false);
	assert_int_equal(auth_table_count(t), 2);
	assert_int_equal(auth_table_plaintext_count(t), 1);
	assert_true(auth_check(t, "plain", "pw"));
	assert_true(auth_check(t, "hashed", "pw"));
	assert_false(auth_check(t, "plain", hash));
	assert_false(auth_check(t, "nobody", "pw"));
}

static void
test_unrecognised_dollar_strings_are_plaintext(void **state)
{
	struct auth_table *t = *state;

	/* not recognised by crypt_checksalt: plain text, warned about */
	add_ok(t, "a", "$", true);
	add_ok(t, "b", "$$", true);
	add_ok(t, "c", "$zz$whatever", true);
	assert_true(auth_check(t, "c", "$zz$whatever"));
	/* recognised prefix: a hash (which nothing matches) */
	add_ok(t, "d", "$6$", false);
	assert_false(auth_check(t, "d", "$6$"));
	assert_false(auth_check(t, "d", ""));
}

/* --- users file --------------------------------------------------------- */

struct filetest {
	struct auth_table *t;
	char dir[64];
	char path[128];
};

static int
setup_file(void **state)
{
	struct filetest *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_auth.XXXXXX");
	if (!mkdtemp(f->dir) || !(f->t = auth_table_new())) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/users", f->dir);
	*state = f;
	return 0;
}

static int
teardown_file(void **state)
{
	struct filetest *f = *state;
	char fifo[160];

	snprintf(fifo, sizeof(fifo), "%s/fifo", f->dir);
	(void)unlink(fifo);
	(void)unlink(f->path);
	(void)rmdir(f->dir);
	auth_table_free(f->t);
	free(f);
	return 0;
}

static void
write_bytes(const char *path, const char *data, size_t len)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static void
write_text(const char *path, const char *text)
{
	write_bytes(path, text, strlen(text));
}

/* Loads text from a file into a fresh table and asserts "PATH:LINE: msg". */
static void
load_err(struct filetest *f, const char *text, int line, const char *msg)
{
	char err[ERRLEN] = "", want[ERRLEN];
	struct auth_table *t = auth_table_new();

	assert_non_null(t);
	write_text(f->path, text);
	assert_int_equal(auth_table_load_file(t, f->path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:%d: %s", f->path, line, msg);
	assert_string_equal(err, want);
	auth_table_free(t);
}

static void
test_load_file_ok(void **state)
{
	struct filetest *f = *state;
	char hash[CRYPT_OUTPUT_SIZE], text[512], err[ERRLEN] = "";

	make_hash("hashed pw", "$6$ffffffff$", hash, sizeof(hash));
	snprintf(text, sizeof(text),
		"# users\n"
		"\n"
		"alice:plain\n"
		"   # indented comment\n"
		"  bob:%s  \r\n"
		"carol:with:colons and spaces\n"
		"\t\n"
		"dave:#not a comment",
		hash);
	write_text(f->path, text);
	if (auth_table_load_file(f->t, f->path, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(auth_table_count(f->t), 4);
	assert_int_equal(auth_table_plaintext_count(f->t), 3);
	assert_true(auth_check(f->t, "alice", "plain"));
	assert_true(auth_check(f->t, "bob", "hashed pw"));
	assert_true(auth_check(f->t, "carol", "with:colons and spaces"));
	assert_true(auth_check(f->t, "dave", "#not a comment"));
	assert_false(auth_check(f->t, "bob", hash));
}

static void
test_load_file_errors(void **state)
{
	struct filetest *f = *state;
	char text[1200];

	load_err(f, "alice:pw\n\nbob\n", 3, "missing ':' between name and secret");
	load_err(f, ":pw\n", 1, "empty user name");
	load_err(f, "# c\nalice:\n", 2, "empty secret for user 'alice'");
	load_err(f, "alice:pw\nbob:x\nalice:other\n", 3, "duplicate user 'alice'");
	snprintf(text, sizeof(text), "%0256d:pw\n", 0);
	load_err(f, text, 1, "user name longer than 255 bytes");
	snprintf(text, sizeof(text), "\nbob:%0256d\n", 0);
	load_err(f, text, 2, "secret for user 'bob' longer than 255 bytes");
	memset(text, 'x', 1100);
	text[1100] = '\0';
	load_err(f, text, 1, "line too long");
}

static void
test_load_file_nul_byte(void **state)
{
	struct filetest *f = *state;
	char err[ERRLEN] = "", want[ERRLEN];

	write_bytes(f->path, "alice:pw\nbob:p\0w\n", 17);
	assert_int_equal(auth_table_load_file(f->t, f->path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", f->path);
	assert_string_equal(err, want);
}

static void
test_load_file_missing_and_not_regular(void **state)
{
	struct filetest *f = *state;
	char err[ERRLEN] = "", want[ERRLEN], fifo[160];

	assert_int_equal(auth_table_load_file(f->t, f->path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: %s", f->path, strerror(ENOENT));
	assert_string_equal(err, want);

	assert_int_equal(auth_table_load_file(f->t, f->dir, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: not a regular file", f->dir);
	assert_string_equal(err, want);

	/* a FIFO with no writer must fail at once, not hang */
	snprintf(fifo, sizeof(fifo), "%s/fifo", f->dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(auth_table_load_file(f->t, fifo, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: not a regular file", fifo);
	assert_string_equal(err, want);

	assert_int_equal(auth_table_load_file(f->t, "/dev/zero", err, sizeof(err)), -1);
	assert_string_equal(err, "/dev/zero: not a regular file");
}

static void
test_load_file_empty(void **state)
{
	struct filetest *f = *state;
	char err[ERRLEN] = "";

	write_text(f->path, "");
	assert_int_equal(auth_table_load_file(f->t, f->path, err, sizeof(err)), 0);
	assert_int_equal(auth_table_count(f->t), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_new_table_is_empty, setup_table,
			teardown_table),
		cmocka_unit_test_setup_teardown(test_add_errors, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_many_users_all_found, setup_table,
			teardown_table),
		cmocka_unit_test_setup_teardown(test_plaintext_check, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_sha512_crypt, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_yescrypt, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_sha256_crypt, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_cache_skips_crypt_after_success, setup_table,
			teardown_table),
		cmocka_unit_test_setup_teardown(
			test_check_without_hashing_needs_hash_only_for_uncached, setup_table,
			teardown_table),
		cmocka_unit_test_setup_teardown(test_cache_is_per_user, setup_table,
			teardown_table),
		cmocka_unit_test_setup_teardown(test_cache_ignores_overlong_password, setup_table,
			teardown_table),
		cmocka_unit_test_setup_teardown(test_unknown_user_does_dummy_crypt, setup_table,
			teardown_table),
		cmocka_unit_test_setup_teardown(test_mixed_table, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_unrecognised_dollar_strings_are_plaintext,
			setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_load_file_ok, setup_file, teardown_file),
		cmocka_unit_test_setup_teardown(test_load_file_errors, setup_file, teardown_file),
		cmocka_unit_test_setup_teardown(test_load_file_nul_byte, setup_file, teardown_file),
		cmocka_unit_test_setup_teardown(test_load_file_missing_and_not_regular, setup_file,
			teardown_file),
		cmocka_unit_test_setup_teardown(test_load_file_empty, setup_file, teardown_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
