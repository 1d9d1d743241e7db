/*
 * log: leveled logging to stderr (journal-friendly) — the only place that
 * formats diagnostics. No other module writes to stderr.
 */
#ifndef SOCKS5D_LOG_H
#define SOCKS5D_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

#define LOG_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Sets the threshold; lines above it are dropped. Journal mode (JOURNAL_STREAM
 * set) prefixes "<N>" syslog priorities and drops timestamps. */
void log_init(enum log_level level);
/* The threshold alone (reload), keeping the destination. */
void log_set_level(enum log_level level);
/* A short tag (e.g. "worker 2") put after the level on every line. */
void log_set_tag(const char *tag);
/* Sends lines to syslog(3) (facility daemon) instead of stderr. */
void log_use_syslog(bool on);
/* The threshold; whether a line at level would be written (guard costly
 * formatting with it). */
enum log_level log_get_level(void);
bool log_enabled(enum log_level level);
/* The level called name: exactly "error", "warn", "info" or "debug" (lower
 * case, as config files and socks5d -T write them). Returns true with
 * *out set, or false (and *out untouched) for any other text. */
bool log_level_from_name(const char *name, enum log_level *out) __attribute__((warn_unused_result));
/* The name log_level_from_name takes for level; also the word on each
 * log line. */
const char *log_level_name(enum log_level level);

/* For lines an outsider can trigger at will (refusals, fd exhaustion): at
 * most `burst` lines per `interval_ms`. Keep one, zeroed, per kind of line. */
struct log_ratelimit {
	uint64_t window_start_ms; /* start of the current interval */
	unsigned in_window;       /* lines allowed in it so far */
	bool started;
};
bool log_ratelimit_ok(struct log_ratelimit *rl, uint64_t now_ms, uint64_t interval_ms,
	unsigned burst);

/* Client-supplied bytes (user names, domain names, SOCKS4 user ids, HTTP
 * request lines) as one log-safe word: printable ASCII but space, '"' and
 * '\\' as is, every other byte as \xHH (space too, since session lines
 * separate their fields with spaces). What does not fit in cap (with the
 * NUL) is cut and marked "...". Returns out. LOG_ESCAPED_SIZE(n) holds n
 * bytes escaped whole. */
const char *log_escape(const void *s, size_t len, char *out, size_t cap);
#define LOG_ESCAPED_SIZE(n) (4 * (n) + 1)

/* log_warn/log_error append ": strerror(errno)"; the x variants do not. */
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_errorx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Startup failures only: log and exit(1). */
void fatal(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));

#endif
