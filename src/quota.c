/*
 * quota: counters over calendar periods and their state file.
 *
 * The file:
 *
 *     socks5d-quota-state 1
 *     user alice month 24323 1048576
 *     client 192.0.2.7 day 20431 5000
 *     end 2 1f3c9a0b4d5e6f70
 *
 * one line per counter (scope, name percent-encoded, period, the period's
 * number, bytes used), then "end", the number of counters and the FNV-1a
 * 64 hash of every byte before the end line. Anything else anywhere,
 * including a missing or short end line, makes the file invalid as a
 * whole: the caller starts from zero rather than from half a file.
 */
#include "quota.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "pct.h"
#include "strnum.h"

#define QUOTA_STATE_HEADER "socks5d-quota-state 1\n"
#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)
#define DAY_SECS INT64_C(86400)
/* How long the network process waits for a forked writer to have closed
 * its copies of the descriptors (normally well under a millisecond). */
#define QUOTA_WRITER_READY_MS 5000

/* --- periods --------------------------------------------------------------- */

static int64_t
floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int64_t
quota_period_id(enum limitset_period p, time_t now, int tz_min)
{
	int64_t local = (int64_t)now + (int64_t)tz_min * 60, days = floor_div(local, DAY_SECS);
	time_t t = (time_t)local;
	struct tm tm;

	switch (p) {
	case LIMITSET_DAY:
		return days;
	case LIMITSET_WEEK:
		/* 1970-01-01 was a Thursday: Monday 1969-12-29 begins week 0. */
		return floor_div(days + 3, 7);
	case LIMITSET_MONTH:
		if (!gmtime_r(&t, &tm))
			return 0;
		return (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
	}
	return 0;
}

time_t
quota_period_end(enum limitset_period p, int64_t id, int tz_min)
{
	int64_t local = 0;
	struct tm tm;

	switch (p) {
	case LIMITSET_DAY:
		local = (id + 1) * DAY_SECS;
		break;
	case LIMITSET_WEEK:
		local = ((id + 1) * 7 - 3) * DAY_SECS;
		break;
	case LIMITSET_MONTH:
		memset(&tm, 0, sizeof(tm));
		tm.tm_year = (int)(floor_div(id + 1, 12) - 1900);
		tm.tm_mon = (int)(id + 1 - floor_div(id + 1, 12) * 12);
		tm.tm_mday = 1;
		local = (int64_t)timegm(&tm);
		break;
	}
	return (time_t)(local - (int64_t)tz_min * 60);
}

/* --- counters -------------------------------------------------------------- */

void
quota_set_used(struct quota_counter *q, uint64_t used)
{
	q->used = used;
	q->reached = q->limit && used >= q->limit;
}

bool
quota_roll(struct quota_counter *q, int64_t id)
{
	if (q->period_id == id)
		return false;
	q->period_id = id;
	quota_set_used(q, 0);
	return true;
}

bool
quota_add(struct quota_counter *q, uint64_t n)
{
	q->used = q->used > UINT64_MAX - n ? UINT64_MAX : q->used + n;
	if (q->reached || !q->limit || q->used < q->limit)
		return false;
	q->reached = true;
	return true;
}

uint64_t
quota_left(const struct quota_counter *q)
{
	if (!q->limit)
		return UINT64_MAX;
	return q->used >= q->limit ? 0 : q->limit - q->used;
}

/* --- the state file's text -------------------------------------------------- */

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= FNV_PRIME;
	}
	return h;
}

static void
writer_put(struct quota_writer *w, const char *s)
{
	w->hash = fnv(w->hash, s, strlen(s));
	fputs(s, w->out);
}

void
quota_state_begin(struct quota_writer *w, FILE *out)
{
	w->out = out;
	w->hash = FNV_OFFSET;
	w->count = 0;
	writer_put(w, QUOTA_STATE_HEADER);
}

void
quota_state_add(struct quota_writer *w, const struct quota_entry *e)
{
	char name[PCT_ENCODED_SIZE(QUOTA_NAME_MAX)], line[sizeof(name) + 96];

	pct_encode((const uint8_t *)e->name, e->name_len, name, sizeof(name));
	snprintf(line, sizeof(line), "%s %s %s %" PRId64 " %" PRIu64 "\n",
		e->scope == 'c' ? "client" : "user", name, limitset_period_name(e->period),
		e->period_id, e->used);
	writer_put(w, line);
	w->count++;
}

void
quota_state_end(struct quota_writer *w)
{
	fprintf(w->out, "end %zu %016" PRIx64 "\n", w->count, w->hash);
}

const char *
quota_state_status_str(enum quota_state_status st)
{
	switch (st) {
	case QUOTA_STATE_OK:
		return "ok";
	case QUOTA_STATE_BAD_HEADER:
		return "not a quota state file";
	case QUOTA_STATE_BAD_LINE:
		return "malformed line";
	case QUOTA_STATE_TRUNCATED:
		return "cut short (no end line)";
	case QUOTA_STATE_BAD_END:
		return "count or checksum does not match";
	case QUOTA_STATE_TOO_MANY:
		return "too many counters";
	}
	return "unknown status";
}

/* Splits line[0..len) at single spaces into at most max words. Returns
 * the number of words, or -1 (an empty word, too many). */
static int
split_words(const char *line, size_t len, const char **w, size_t *wl, int max)
{
	int n = 0;
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ')
			continue;
		if (i == start || n == max)
			return -1;
		w[n] = line + start;
		wl[n++] = i - start;
		start = i + 1;
	}
	return n;
}

static bool
word_is(const char *w, size_t wl, const char *s)
{
	return wl == strlen(s) && memcmp(w, s, wl) == 0;
}

/* "SCOPE NAME PERIOD ID USED". */
static bool
parse_entry(const char *line, size_t len, struct quota_entry *e)
{
	const char *w[5];
	size_t wl[5];
	uint64_t id, used;
	long nl;
	char period[8];
	bool neg;

	if (split_words(line, len, w, wl, 5) != 5)
		return false;
	if (word_is(w[0], wl[0], "user"))
		e->scope = 'u';
	else if (word_is(w[0], wl[0], "client"))
		e->scope = 'c';
	else
		return false;
	nl = pct_decode(w[1], wl[1], (uint8_t *)e->name, QUOTA_NAME_MAX);
	if (nl <= 0 || memchr(e->name, '\0', (size_t)nl))
		return false;
	e->name_len = (size_t)nl;
	e->name[nl] = '\0';
	if (wl[2] >= sizeof(period))
		return false;
	memcpy(period, w[2], wl[2]);
	period[wl[2]] = '\0';
	if (limitset_parse_period(period, &e->period, NULL, 0) < 0)
		return false;
	neg = wl[3] > 1 && w[3][0] == '-';
	if (strnum_parse_u64_span(w[3] + neg, wl[3] - neg, 0, INT64_MAX, &id) != STRNUM_OK ||
		strnum_parse_u64_span(w[4], wl[4], 0, UINT64_MAX, &used) != STRNUM_OK)
		return false;
	e->period_id = neg ? -(int64_t)id : (int64_t)id;
	e->used = used;
	return true;
}

/* "end COUNT HASH", hash as 16 lower-case hex digits. */
static bool
parse_end(const char *line, size_t len, size_t count, uint64_t hash)
{
	char want[64];
	int n = snprintf(want, sizeof(want), "end %zu %016" PRIx64, count, hash);

	return n > 0 && (size_t)n == len && memcmp(line, want, len) == 0;
}

/* Checks the whole text; counts entries (*count) without handing them out
 * unless cb is set. */
static enum quota_state_status
state_walk(const char *text, size_t len, size_t max, quota_entry_cb cb, void *arg, size_t *lineno)
{
	size_t hlen = strlen(QUOTA_STATE_HEADER), pos = hlen, count = 0;
	struct quota_entry e;

	*lineno = 1;
	if (len < hlen || memcmp(text, QUOTA_STATE_HEADER, hlen) != 0)
		return len < hlen && memcmp(text, QUOTA_STATE_HEADER, len) == 0
			? QUOTA_STATE_TRUNCATED
			: QUOTA_STATE_BAD_HEADER;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos), *line = text + pos;
		size_t ll = nl ? (size_t)(nl - line) : len - pos;

		(*lineno)++;
		if (ll >= 4 && memcmp(line, "end ", 4) == 0) {
			if (!nl)
				return QUOTA_STATE_TRUNCATED;
			if (!parse_end(line, ll, count, fnv(FNV_OFFSET, text, pos)))
				return QUOTA_STATE_BAD_END;
			return pos + ll + 1 == len ? QUOTA_STATE_OK : QUOTA_STATE_BAD_LINE;
		}
		if (!nl)
			return QUOTA_STATE_TRUNCATED;
		memset(&e, 0, sizeof(e));
		if (!parse_entry(line, ll, &e))
			return QUOTA_STATE_BAD_LINE;
		if (++count > max)
			return QUOTA_STATE_TOO_MANY;
		if (cb)
			cb(&e, arg);
		pos += ll + 1;
	}
	return QUOTA_STATE_TRUNCATED;
}

enum quota_state_status
quota_state_parse(const char *text, size_t len, size_t max, quota_entry_cb cb, void *arg,
	size_t *line)
{
	enum quota_state_status st = state_walk(text, len, max, NULL, NULL, line);
	size_t ignored;

	if (st == QUOTA_STATE_OK && cb)
		(void)state_walk(text, len, max, cb, arg, &ignored);
	return st;
}

/* --- writing ------------------------------------------------------------------ */

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The atomic replacement itself. Only async-signal-safe calls: it runs in a
 * freshly forked child too. */
static int
save_file(const char *dir, const char *text, size_t len)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	int fd, dfd, saved;

	if ((size_t)snprintf(dst, sizeof(dst), "%s/%s", dir, QUOTA_STATE_FILE) >= sizeof(dst) ||
		(size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, QUOTA_STATE_FILE) >=
			sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	if (write_all(fd, text, len) < 0 || fsync(fd) < 0) {
		saved = errno;
		close(fd);
		unlink(tmp);
		errno = saved;
		return -1;
	}
	if (close(fd) < 0 || rename(tmp, dst) < 0) {
		saved = errno;
		unlink(tmp);
		errno = saved;
		return -1;
	}
	/* The rename itself reaches the disk with the directory. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
}

/* The forked writer, before anything else: it keeps none of the network
 * process's descriptors (a socket the parent closes while a child still
 * holds it would stay in the parent's epoll set), then says so on ready. */
static void __attribute__((noreturn))
writer_child(int ready, const char *dir, const char *text, size_t len)
{
	char one = 'r';

	if (ready != 3 && dup2(ready, 3) < 0)
		_exit(100 + EBADF);
	if (close_range(4, ~0U, 0) < 0)
		for (int fd = 4; fd < 65536; fd++)
			(void)close(fd);
	if (write(3, &one, 1) != 1)
		_exit(100 + EPIPE);
	close(3);
	_exit(save_file(dir, text, len) == 0 ? 0 : 100 + (errno & 0x3f));
}

int
quota_state_save(const char *dir, const char *text, size_t len, pid_t *child)
{
	struct pollfd pfd;
	int p[2], saved;
	char one;
	pid_t pid;

	if (!child)
		return save_file(dir, text, len);
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0)
		writer_child(p[1], dir, text, len);
	saved = errno;
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		errno = saved;
		return -1;
	}
	/* Nothing of ours may close while the child still shares it: wait
	 * (bounded) until it has let go of every descriptor. */
	pfd.fd = p[0];
	pfd.events = POLLIN;
	if (poll(&pfd, 1, QUOTA_WRITER_READY_MS) != 1 || read(p[0], &one, 1) != 1) {
		kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		close(p[0]);
		errno = ETIMEDOUT;
		return -1;
	}
	close(p[0]);
	*child = pid;
	return 0;
}

bool
quota_state_reap(pid_t *child, bool wait)
{
	int status;
	pid_t r;

	if (*child <= 0)
		return true;
	do {
		r = waitpid(*child, &status, wait ? 0 : WNOHANG);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return false;
	if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) >= 100) {
		errno = WEXITSTATUS(status) - 100;
		log_warn("quota state: writing %s", QUOTA_STATE_FILE);
	} else if (r > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		log_warnx("quota state: the writer process failed (status %d)", status);
	}
	*child = 0;
	return true;
}
