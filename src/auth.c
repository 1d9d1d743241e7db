/*
 * auth: the RFC 1929 user table and the password check. Secrets are crypt(3)
 * hashes (libxcrypt) or plain text. What a check costs must not tell a client
 * whether the user exists, so unknown users are checked against a dummy
 * secret. Reading the config and deciding which method to offer are left to
 * config and conn.
 *
 * crypt of a $y$ or $6$ hash takes milliseconds to tens of milliseconds and
 * the daemon has one thread, so after a successful crypt check the table keeps
 * a keyed SipHash-2-4 tag of the password; a later check whose tag matches
 * skips crypt. The key comes from getrandom when the table is made and never
 * leaves it, so the tag neither reveals the password offline nor can be
 * matched by a chosen password. Plain-text passwords are never kept for users
 * with a hashed secret.
 */
#include "auth.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "siphash.h"

/* RFC 1929 §2: ULEN and PLEN are one byte each. */
#define AUTH_FIELD_MAX 255
/* Fixed size every comparison runs over, so its time does not depend on
 * where the first differing byte is or on the secret's length. */
#define AUTH_CMP_LEN (AUTH_FIELD_MAX + 1)
/* A users-file line holds at most name, colon, secret and some blanks; a
 * longer line is an error, which also bounds what a wrong path can make us
 * read into memory. */
#define AUTH_LINE_MAX 1024

struct auth_user {
	char name[AUTH_FIELD_MAX + 1];
	char secret[AUTH_CMP_LEN]; /* zero-padded: compared over all bytes */
	bool hashed;               /* secret is a crypt(3) hash */
	bool cache_valid;          /* cache_tag holds a verified password */
	uint64_t cache_tag;        /* siphash(cache_key, last verified password) */
	unsigned cost_ms;          /* one verification's time (auth_table_prepare) */
	char where[64];            /* "FILE:LINE" it was defined at, or "" */
};

struct auth_table {
	struct auth_user *users; /* in insertion order */
	size_t nusers, cap;
	size_t nplaintext;      /* users whose secret is plain text */
	size_t *index;          /* open addressing: user number + 1, 0 = free */
	size_t index_cap;       /* power of two, > 2 * nusers */
	uint8_t key[16];        /* SipHash key for the index */
	uint8_t cache_key[16];  /* SipHash key for the cache tags (kept across reloads) */
	const char *dummy_hash; /* a hashed user's secret, for unknown users */
	struct crypt_data *cd;  /* 32 KiB scratch for crypt_r, cleared after use */
};

/* --- the table ---------------------------------------------------------- */

/* Runs over all n bytes whatever they hold; true when equal. */
static bool
ct_equal(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= (uint8_t)(x[i] ^ y[i]);
	return diff == 0;
}

static bool
is_crypt_hash(const char *secret)
{
	int r;

	if (secret[0] != '$')
		return false;
	/* LEGACY ($1$, low-round $5$) is still a hash; treating it as plain
	 * text would be worse than accepting it. */
	r = crypt_checksalt(secret);
	return r == CRYPT_SALT_OK || r == CRYPT_SALT_METHOD_LEGACY;
}

/* getrandom until len bytes are filled. Returns 0 or -1. */
static int
fill_random(uint8_t *p, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = getrandom(p + got, len - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

struct auth_table *
auth_table_new(void)
{
	struct auth_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cd = calloc(1, sizeof(*t->cd));
	if (!t->cd || fill_random(t->key, sizeof(t->key)) < 0 ||
		fill_random(t->cache_key, sizeof(t->cache_key)) < 0) {
		free(t->cd);
		free(t);
		return NULL;
	}
	return t;
}

void
auth_table_free(struct auth_table *t)
{
	if (!t)
		return;
	if (t->users)
		explicit_bzero(t->users, t->cap * sizeof(*t->users));
	free(t->users);
	free(t->index);
	explicit_bzero(t->cd, sizeof(*t->cd));
	free(t->cd);
	explicit_bzero(t, sizeof(*t));
	free(t);
}

size_t
auth_table_count(const struct auth_table *t)
{
	return t->nusers;
}

size_t
auth_table_plaintext_count(const struct auth_table *t)
{
	return t->nplaintext;
}

static size_t
name_slot(const struct auth_table *t, const char *name)
{
	/* Keyed, so a users file cannot be built to collide on purpose. */
	return (size_t)siphash24(t->key, name, strlen(name)) & (t->index_cap - 1);
}

static struct auth_user *
find_user(const struct auth_table *t, const char *name)
{
	if (t->index_cap == 0)
		return NULL;
	for (size_t i = name_slot(t, name);; i = (i + 1) & (t->index_cap - 1)) {
		size_t u = t->index[i];
		if (u == 0)
			return NULL;
		if (strcmp(t->users[u - 1].name, name) == 0)
			return &t->users[u - 1];
	}
}

bool
auth_table_has(const struct auth_table *t, const char *name)
{
	return find_user(t, name) != NULL;
}

/* Keeps the index at most half full so probe runs stay short. */
static int
grow_index(struct auth_table *t)
{
	size_t ncap = t->index_cap ? t->index_cap * 2 : 16;
	size_t *nidx;

	if (t->index_cap > 2 * (t->nusers + 1))
		return 0;
	nidx = calloc(ncap, sizeof(*nidx));
	if (!nidx)
		return -1;
	free(t->index);
	t->index = nidx;
	t->index_cap = ncap;
	for (size_t u = 0; u < t->nusers; u++) {
		size_t i = name_slot(t, t->users[u].name);
		while (t->index[i] != 0)
			i = (i + 1) & (ncap - 1);
		t->index[i] = u + 1;
	}
	return 0;
}

static int
grow_users(struct auth_table *t)
{
	size_t ncap = t->cap ? t->cap * 2 : 8;
	struct auth_user *nu;

	if (t->nusers < t->cap)
		return 0;
	/* Not realloc: the old block holds secrets and must be wiped. */
	nu = calloc(ncap, sizeof(*nu));
	if (!nu)
		return -1;
	if (t->users) {
		memcpy(nu, t->users, t->nusers * sizeof(*nu));
		explicit_bzero(t->users, t->cap * sizeof(*t->users));
		free(t->users);
	}
	t->users = nu;
	t->cap = ncap;
	/* users moved: the dummy pointed into the old block */
	t->dummy_hash = NULL;
	for (size_t u = 0; u < t->nusers && !t->dummy_hash; u++)
		if (t->users[u].hashed)
			t->dummy_hash = t->users[u].secret;
	return 0;
}

int
auth_table_add(struct auth_table *t, const char *name, const char *secret, bool *plaintext,
	char *err, size_t errlen)
{
	return auth_table_add_at(t, name, secret, NULL, plaintext, err, errlen);
}

int
auth_table_add_at(struct auth_table *t, const char *name, const char *secret, const char *where,
	bool *plaintext, char *err, size_t errlen)
{
	size_t nlen = strlen(name), slen = strlen(secret);
	struct auth_user *u;
	size_t i;

	if (nlen == 0) {
		snprintf(err, errlen, "empty user name");
		return -1;
	}
	if (nlen > AUTH_FIELD_MAX) {
		snprintf(err, errlen, "user name longer than %d bytes", AUTH_FIELD_MAX);
		return -1;
	}
	if (slen == 0) {
		snprintf(err, errlen, "empty secret for user '%s'", name);
		return -1;
	}
	if (slen > AUTH_FIELD_MAX) {
		snprintf(err, errlen, "secret for user '%s' longer than %d bytes", name,
			AUTH_FIELD_MAX);
		return -1;
	}
	if (find_user(t, name)) {
		snprintf(err, errlen, "duplicate user '%s'", name);
		return -1;
	}
	if (grow_users(t) < 0 || grow_index(t) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	u = &t->users[t->nusers];
	memset(u, 0, sizeof(*u));
	memcpy(u->name, name, nlen);
	memcpy(u->secret, secret, slen);
	snprintf(u->where, sizeof(u->where), "%s", where ? where : "");
	u->hashed = is_crypt_hash(secret);
	i = name_slot(t, name);
	while (t->index[i] != 0)
		i = (i + 1) & (t->index_cap - 1);
	t->index[i] = ++t->nusers;
	if (u->hashed) {
		if (!t->dummy_hash)
			t->dummy_hash = u->secret;
	} else {
		t->nplaintext++;
	}
	if (plaintext)
		*plaintext = !u->hashed;
	return 0;
}

/* --- users file --------------------------------------------------------- */

static bool
is_blank(int ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Reads one line (without '\n') into buf. Returns 1 for a line, 0 at end of
 * file, -1 for a line too long or holding a NUL byte (*why says which), -2 for
 * a read error (errno). */
static int
read_line(FILE *f, char *buf, size_t cap, const char **why)
{
	size_t n = 0;
	int ch;

	while ((ch = getc(f)) != EOF && ch != '\n') {
		if (ch == '\0') {
			*why = "NUL byte in line";
			return -1;
		}
		if (n + 1 >= cap) {
			*why = "line too long";
			return -1;
		}
		buf[n++] = (char)ch;
	}
	buf[n] = '\0';
	if (ch == EOF) {
		if (ferror(f))
			return -2;
		if (n == 0)
			return 0;
	}
	return 1;
}

int
auth_table_load_file(struct auth_table *t, const char *path, char *err, size_t errlen)
{
	char line[AUTH_LINE_MAX], msg[256], where[64], iobuf[4096];
	const char *why = NULL;
	struct stat st;
	FILE *f = NULL;
	int fd, lineno = 0, r, ret = -1;

	/* O_NONBLOCK: opening a FIFO must not hang; only regular files are
	 * read, so a mistaken path cannot make us wait on a device. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	f = fdopen(fd, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	/* Secrets pass through stdio's buffer: ours, wiped at the end. */
	setvbuf(f, iobuf, _IOFBF, sizeof(iobuf));
	for (;;) {
		char *s, *e, *colon;

		lineno++;
		r = read_line(f, line, sizeof(line), &why);
		if (r == 0)
			break;
		if (r == -1) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
			goto out;
		}
		if (r == -2) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
		/* Blanks around the line do not count (CRLF files, indentation). */
		s = line;
		while (is_blank(*s))
			s++;
		e = s + strlen(s);
		while (e > s && is_blank(e[-1]))
			*--e = '\0';
		if (*s == '\0' || *s == '#')
			continue;
		/* The name ends at the first colon; the secret may hold colons. */
		colon = strchr(s, ':');
		if (!colon) {
			snprintf(err, errlen, "%s:%d: missing ':' between name and secret", path,
				lineno);
			goto out;
		}
		*colon = '\0';
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (auth_table_add_at(t, s, colon + 1, where, NULL, msg, sizeof(msg)) < 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
			goto out;
		}
	}
	ret = 0;
out:
	explicit_bzero(line, sizeof(line));
	fclose(f);
	explicit_bzero(iobuf, sizeof(iobuf));
	return ret;
}

/* --- the check ---------------------------------------------------------- */

/* crypt_r into the table's scratch; the result is copied zero-padded into
 * out so it can be compared over AUTH_CMP_LEN bytes. */
static void
crypt_padded(struct auth_table *t, const char *pass, const char *setting, char out[AUTH_CMP_LEN])
{
	const char *h;
	size_t n;

	memset(out, 0, AUTH_CMP_LEN);
	h = crypt_r(pass, setting, t->cd);
	/* A failed crypt returns NULL or "*0"/"*1": never equal to a secret,
	 * which starts with '$'. */
	if (h) {
		n = strnlen(h, AUTH_CMP_LEN);
		if (n < AUTH_CMP_LEN)
			memcpy(out, h, n);
		else
			out[0] = '*';
	}
	/* The scratch holds the password (its input copy) and the hash. */
	explicit_bzero(t->cd, sizeof(*t->cd));
}

bool
auth_check(struct auth_table *t, const char *user, const char *pass)
{
	bool hashed;

	return auth_check_ex(t, user, pass, true, &hashed) == AUTH_RESULT_OK;
}

enum auth_result
auth_check_ex(struct auth_table *t, const char *user, const char *pass, bool may_hash, bool *hashed)
{
	static const char dummy_plain[AUTH_CMP_LEN];
	char given[AUTH_CMP_LEN], computed[AUTH_CMP_LEN];
	struct auth_user *u;
	size_t plen;
	uint64_t tag;
	bool ok, len_ok;

	*hashed = false;
	if (!t || !user || !pass)
		return AUTH_RESULT_FAIL;
	u = find_user(t, user);
	plen = strnlen(pass, AUTH_CMP_LEN);
	/* Over-long passwords still do the full work and then fail. */
	len_ok = plen <= AUTH_FIELD_MAX;
	memset(given, 0, sizeof(given));
	memcpy(given, pass, len_ok ? plen : AUTH_FIELD_MAX);
	tag = siphash24(t->cache_key, given, len_ok ? plen : AUTH_FIELD_MAX);

	if (!may_hash &&
		((!u && t->dummy_hash) ||
			(u && u->hashed && !(u->cache_valid && ((tag ^ u->cache_tag) == 0))))) {
		explicit_bzero(given, sizeof(given));
		return AUTH_RESULT_NEED_HASH;
	}
	if (!u) {
		/* Same work as a user of the table's kind, then fail. In a table
		 * mixing both kinds, a plain-text user answers faster than an
		 * unknown one; the man page advises against plain text. */
		if (t->dummy_hash) {
			crypt_padded(t, pass, t->dummy_hash, computed);
			*hashed = true;
		} else
			memcpy(computed, given, sizeof(computed));
		(void)ct_equal(computed, t->dummy_hash ? t->dummy_hash : dummy_plain, AUTH_CMP_LEN);
		ok = false;
	} else if (!u->hashed) {
		ok = ct_equal(given, u->secret, AUTH_CMP_LEN);
	} else if (u->cache_valid && ((tag ^ u->cache_tag) == 0)) {
		/* Only a password that passed crypt before gets here; the tag is
		 * one machine word, compared in one instruction. */
		ok = true;
	} else {
		crypt_padded(t, pass, u->secret, computed);
		*hashed = true;
		ok = ct_equal(computed, u->secret, AUTH_CMP_LEN);
		/* A wrong password never evicts the verified one. */
		if (ok && len_ok) {
			u->cache_tag = tag;
			u->cache_valid = true;
		}
	}
	explicit_bzero(given, sizeof(given));
	explicit_bzero(computed, sizeof(computed));
	return ok && len_ok ? AUTH_RESULT_OK : AUTH_RESULT_FAIL;
}

/* --- what the helper processes need --------------------------------------- */

void
auth_cache_store(struct auth_table *t, const char *user, const char *pass)
{
	struct auth_user *u = find_user(t, user);
	size_t plen = strnlen(pass, AUTH_CMP_LEN);

	if (!u || !u->hashed || plen > AUTH_FIELD_MAX)
		return;
	u->cache_tag = siphash24(t->cache_key, pass, plen);
	u->cache_valid = true;
}

void
auth_table_inherit_cache(struct auth_table *t, const struct auth_table *old)
{
	memcpy(t->cache_key, old->cache_key, sizeof(t->cache_key));
	for (size_t i = 0; i < t->nusers; i++) {
		struct auth_user *u = &t->users[i];
		const struct auth_user *o = find_user(old, u->name);
		/* Only a secret that did not change keeps its verified password. */
		if (o && o->cache_valid && ct_equal(o->secret, u->secret, AUTH_CMP_LEN)) {
			u->cache_tag = o->cache_tag;
			u->cache_valid = true;
		}
	}
}

/* How much of a hash names its algorithm and cost (not its salt): the
 * hashes of one class cost the same to verify. "$6$"/"$5$" carry their
 * rounds as a third field when not the default; yescrypt, bcrypt and
 * sha1crypt keep their parameters in the second. */
static size_t
cost_class_len(const char *secret)
{
	size_t dollars = 0, want = 3, i;

	bool sha_default = (strncmp(secret, "$5$", 3) == 0 || strncmp(secret, "$6$", 3) == 0) &&
		strncmp(secret + 3, "rounds=", 7) != 0;

	if (sha_default || strncmp(secret, "$1$", 3) == 0 || strncmp(secret, "$md5", 4) == 0)
		want = 2;
	for (i = 0; secret[i]; i++)
		if (secret[i] == '$' && ++dollars == want + 1)
			return i + 1;
	return i;
}

/* CPU time, not wall time: the warning of -t and the choice of the dummy
 * hash are about what a check costs, and time spent waiting for a core is
 * not part of it. */
static unsigned
time_one_crypt(struct auth_table *t, const char *setting)
{
	char out[AUTH_CMP_LEN];
	struct timespec a, b;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	crypt_padded(t, "socks5d cost probe", setting, out);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	explicit_bzero(out, sizeof(out));
	return (unsigned)((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000);
}

void
auth_table_prepare(struct auth_table *t)
{
	unsigned max_ms = 0;

	for (size_t i = 0; i < t->nusers; i++) {
		struct auth_user *u = &t->users[i];
		size_t len = cost_class_len(u->secret);
		bool measured = false;

		if (!u->hashed)
			continue;
		/* One probe per class: a class seen before costs the same. */
		for (size_t j = 0; j < i && !measured; j++) {
			const struct auth_user *v = &t->users[j];
			if (v->hashed && cost_class_len(v->secret) == len &&
				strncmp(v->secret, u->secret, len) == 0) {
				u->cost_ms = v->cost_ms;
				measured = true;
			}
		}
		if (!measured)
			u->cost_ms = time_one_crypt(t, u->secret);
		/* Unknown users are checked against the most expensive hash. */
		if (!t->dummy_hash || u->cost_ms > max_ms) {
			t->dummy_hash = u->secret;
			max_ms = u->cost_ms;
		}
	}
}

void
auth_table_each_slow(const struct auth_table *t, unsigned min_ms,
	void (*cb)(const char *where, const char *name, unsigned ms, void *arg), void *arg)
{
	for (size_t i = 0; i < t->nusers; i++)
		if (t->users[i].hashed && t->users[i].cost_ms > min_ms)
			cb(t->users[i].where, t->users[i].name, t->users[i].cost_ms, arg);
}

void
auth_table_forget_secrets(struct auth_table *t)
{
	for (size_t i = 0; i < t->nusers; i++) {
		explicit_bzero(t->users[i].secret, sizeof(t->users[i].secret));
		t->users[i].cache_valid = false;
		t->users[i].cache_tag = 0;
	}
	explicit_bzero(t->cache_key, sizeof(t->cache_key));
	t->dummy_hash = NULL;
}
