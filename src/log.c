/*
 * log: leveled lines to stderr. Under systemd (JOURNAL_STREAM set) each line
 * starts with a "<N>" syslog priority and carries no timestamp, since the
 * journal adds its own; otherwise lines start with a UTC timestamp.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "strnum.h"

static enum log_level log_threshold = LOG_LVL_INFO;
static bool log_journal;
static bool log_syslog;
static char log_tag[32];

static const char *const level_names[] = {
	[LOG_LVL_ERROR] = "error",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};
/* syslog priorities: err, warning, info, debug */
static const int level_prio[] = { 3, 4, 6, 7 };

/* systemd sets JOURNAL_STREAM=DEV:INODE for the stream it connected to
 * stderr; only when stderr still is that stream do lines go to the journal. */
static bool
stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	const char *colon = e ? strchr(e, ':') : NULL;
	uint64_t dev, ino;
	struct stat st;

	if (!colon ||
		strnum_parse_u64_span(e, (size_t)(colon - e), 0, UINT64_MAX, &dev) != STRNUM_OK ||
		strnum_parse_u64(colon + 1, 0, UINT64_MAX, &ino) != STRNUM_OK)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (uint64_t)st.st_dev == dev && (uint64_t)st.st_ino == ino;
}

void
log_init(enum log_level level)
{
	log_threshold = level;
	log_journal = stderr_is_journal();
}

void
log_set_tag(const char *tag)
{
	snprintf(log_tag, sizeof(log_tag), "%s", tag ? tag : "");
}

void
log_use_syslog(bool on)
{
	if (on && !log_syslog)
		openlog("socks5d", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	else if (!on && log_syslog)
		closelog();
	log_syslog = on;
}

void
log_set_level(enum log_level level)
{
	log_threshold = level;
}

enum log_level
log_get_level(void)
{
	return log_threshold;
}

bool
log_enabled(enum log_level level)
{
	return level <= log_threshold;
}

bool
log_ratelimit_ok(struct log_ratelimit *rl, uint64_t now_ms, uint64_t interval_ms, unsigned burst)
{
	if (!rl->started || now_ms - rl->window_start_ms >= interval_ms) {
		rl->started = true;
		rl->window_start_ms = now_ms;
		rl->in_window = 0;
	}
	if (rl->in_window >= burst)
		return false;
	rl->in_window++;
	return true;
}

bool
log_level_from_name(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	return false;
}

const char *
log_level_name(enum log_level level)
{
	return STRNUM_NAME(level_names, level, "?");
}

const char *
log_escape(const void *s, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = s;
	size_t o = 0, i;

	if (cap == 0)
		return out;
	for (i = 0; i < len; i++) {
		unsigned char c = p[i];
		bool plain = c > 0x20 && c < 0x7f && c != '"' && c != '\\';

		/* Room for this byte's form and, if more follow, "...". */
		if (o + (plain ? 1 : 4) + (i + 1 < len ? 3 : 0) >= cap)
			break;
		if (plain) {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 0xf];
		}
	}
	if (i < len && o + 3 < cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* The last line of defence: whatever a caller formatted, a line stays one
 * line (control bytes become '?'); client strings were escaped before. */
static void
log_one_line(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			p[i] = '?';
}

static void log_vwrite(enum log_level level, int err, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void
log_vwrite(enum log_level level, int err, const char *fmt, va_list ap)
{
	char line[2048];
	size_t n = 0;

	if (!log_enabled(level))
		return;
	if (log_syslog) {
		char msg[2048];
		int w = vsnprintf(msg, sizeof(msg), fmt, ap);
		log_one_line(msg,
			w < 0                             ? 0
				: (size_t)w < sizeof(msg) ? (size_t)w
							  : sizeof(msg) - 1);
		if (err)
			syslog(level_prio[level], "%s%s%s: %s", log_tag, log_tag[0] ? ": " : "",
				msg, strerror(err));
		else
			syslog(level_prio[level], "%s%s%s", log_tag, log_tag[0] ? ": " : "", msg);
		return;
	}
	if (log_journal) {
		n = (size_t)snprintf(line, sizeof(line), "<%d>", level_prio[level]);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
	}
	n += (size_t)snprintf(line + n, sizeof(line) - n, "%s: %s%s", log_level_name(level),
		log_tag, log_tag[0] ? ": " : "");
	if (n < sizeof(line)) {
		int w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (w > 0) {
			size_t m = (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;
			log_one_line(line + n, m);
			n += (size_t)w;
		}
	}
	if (err && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, ": %s", strerror(err));
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line so concurrent writers (workers) never interleave. */
	fwrite(line, 1, n, stderr);
	fflush(stderr);
}

#define LOG_FN(name, level, with_errno)                               \
	void name(const char *fmt, ...)                               \
	{                                                             \
		int saved = errno;                                    \
		va_list ap;                                           \
		va_start(ap, fmt);                                    \
		log_vwrite(level, (with_errno) ? saved : 0, fmt, ap); \
		va_end(ap);                                           \
		errno = saved;                                        \
	}

LOG_FN(log_error, LOG_LVL_ERROR, 1)
LOG_FN(log_errorx, LOG_LVL_ERROR, 0)
LOG_FN(log_warn, LOG_LVL_WARN, 1)
LOG_FN(log_warnx, LOG_LVL_WARN, 0)
LOG_FN(log_info, LOG_LVL_INFO, 0)
LOG_FN(log_debug, LOG_LVL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(LOG_LVL_ERROR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(LOG_LVL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
