/*
 * quota: byte quotas over calendar periods, and the file that keeps their
 * counters across restarts. A counter knows its limit, its period (day,
 * week, month: calendar, at quota-timezone's offset from UTC) and what was
 * used in the current one; it starts again from zero when the period
 * changes. The state file is text, one counter a line, ending in a line
 * that counts the lines and hashes the bytes before it, so a file cut short
 * or damaged anywhere is refused as a whole. Writing is atomic (temporary
 * file, fsync, rename) and happens in a short-lived child process, so the
 * event loop never waits for the disk.
 */
#ifndef SOCKS5D_QUOTA_H
#define SOCKS5D_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "limitset.h"

/* The state file's name under state-dir. */
#define QUOTA_STATE_FILE "quota.state"
/* Longest name a counter is kept under (a user name, a client group). */
#define QUOTA_NAME_MAX 255

struct quota_counter {
	uint64_t limit; /* bytes per period; 0: no quota */
	enum limitset_period period;
	bool then_rate;             /* reached: throttle (else close) */
	struct limitset_rate after; /* then rate UP DOWN, bit/s */
	uint64_t used;              /* bytes this period */
	int64_t period_id;          /* the period used counts for */
	bool reached;               /* used >= limit */
};

/* The period that contains now (UTC seconds) at tz_min minutes east of
 * UTC: days, Monday-based weeks or months since the epoch. */
int64_t quota_period_id(enum limitset_period p, time_t now, int tz_min);
/* When period id ends (UTC seconds): the next reset. */
time_t quota_period_end(enum limitset_period p, int64_t id, int tz_min);

/* Puts the counter in period id: a different one starts it from zero.
 * Returns true when it was reset that way. */
bool quota_roll(struct quota_counter *q, int64_t id);
/* Adds n bytes. Returns true when this addition reached the limit. */
bool quota_add(struct quota_counter *q, uint64_t n);
/* Sets used (a reset, a loaded value) and reached from it. */
void quota_set_used(struct quota_counter *q, uint64_t used);
/* Bytes left this period (0 when reached; UINT64_MAX without a quota). */
uint64_t quota_left(const struct quota_counter *q);

/* One line of the state file. */
struct quota_entry {
	char scope;                    /* 'u' user, 'c' client group */
	char name[QUOTA_NAME_MAX + 1]; /* unescaped */
	size_t name_len;
	enum limitset_period period;
	int64_t period_id;
	uint64_t used;
};

enum quota_state_status {
	QUOTA_STATE_OK,
	QUOTA_STATE_BAD_HEADER, /* not a socks5d quota state file */
	QUOTA_STATE_BAD_LINE,   /* a line that does not parse */
	QUOTA_STATE_TRUNCATED,  /* no end line: cut short */
	QUOTA_STATE_BAD_END,    /* the end line's count or hash do not match */
	QUOTA_STATE_TOO_MANY,   /* more entries than the reader takes */
};

const char *quota_state_status_str(enum quota_state_status st);

/* Text of the file: quota_state_begin, one quota_state_add per counter,
 * quota_state_end (which writes the count and hash line). */
struct quota_writer {
	FILE *out;
	uint64_t hash; /* FNV-1a 64 of everything written */
	size_t count;
};
void quota_state_begin(struct quota_writer *w, FILE *out);
void quota_state_add(struct quota_writer *w, const struct quota_entry *e);
void quota_state_end(struct quota_writer *w);

/* Parses a whole file's text. Nothing is handed to cb unless the whole
 * text is valid: entries go to cb only after the end line checked out
 * (at most max of them; more is QUOTA_STATE_TOO_MANY). *line is the line
 * of the error. */
typedef void (*quota_entry_cb)(const struct quota_entry *e, void *arg);
enum quota_state_status quota_state_parse(const char *text, size_t len, size_t max,
	quota_entry_cb cb, void *arg, size_t *line);

/* Writes text as dir/QUOTA_STATE_FILE atomically (temporary file, fsync,
 * rename, fsync of the directory). With child non-NULL the writing is done
 * by a forked child and *child gets its pid (reap it with
 * quota_state_reap); the call returns once the child has closed every
 * descriptor it inherited (so none is shared while the caller's loop
 * runs). Else here. Returns 0, or -1 with errno. */
int quota_state_save(const char *dir, const char *text, size_t len, pid_t *child)
	__attribute__((warn_unused_result));
/* A writer child that has finished (*child reset to 0; its failure
 * logged), or false while it runs. wait: block until it has. */
bool quota_state_reap(pid_t *child, bool wait);

#endif
