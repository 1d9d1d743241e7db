/*
 * limitset: the bandwidth limits and byte quotas of socks5d.conf as data.
 * `limit` lines (session, user, client), the `rate UP DOWN` clause of a
 * `rule allow` line and `quota-timezone`: parsed from words, looked up for
 * a session, printed back. Pure: no I/O, no logging, no globals; the
 * buckets and counters that enforce them are account's and quota's.
 */
#ifndef SOCKS5D_LIMITSET_H
#define SOCKS5D_LIMITSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "acl.h"
#include "addr.h"

/* Rates are bits per second (1000-based units), 0 for unlimited; a rate
 * is at least 1kbit and at most 1000gbit. Amounts are bytes (MB, GB, TB:
 * 1000-based), at most 1000000TB. Both take up to three decimals. */
#define LIMITSET_RATE_MIN UINT64_C(1000)
#define LIMITSET_RATE_MAX UINT64_C(1000000000000)
#define LIMITSET_AMOUNT_MAX UINT64_C(1000000000000000000)
/* quota-timezone: -14:00 .. +14:00, in minutes east of UTC. */
#define LIMITSET_TZ_MAX_MIN 840
/* Text of a rate or amount: "1000000000000kbit" at most. */
#define LIMITSET_VALUE_STRLEN 32

enum limitset_scope {
	LIMITSET_SESSION, /* each session on its own */
	LIMITSET_USER,    /* all sessions of one user */
	LIMITSET_CLIENT,  /* all sessions of one client address (IPv6: per ipv6-prefix) */
	LIMITSET_RULE,    /* all sessions one rule allowed */
};

enum limitset_period {
	LIMITSET_DAY,
	LIMITSET_WEEK, /* Monday to Sunday */
	LIMITSET_MONTH,
};

/* Upload (client -> target) and download (target -> client), bit/s. */
struct limitset_rate {
	uint64_t up, down; /* 0: unlimited */
};

struct limitset_quota {
	uint64_t bytes; /* upload plus download per period; 0: unlimited */
	enum limitset_period period;
	bool then_rate;             /* when reached: throttle to `after` (else close) */
	struct limitset_rate after; /* then rate UP DOWN */
};

/* One `limit` line. */
struct limitset_line {
	int line;
	enum limitset_scope scope; /* SESSION, USER or CLIENT */
	bool is_quota;             /* a quota line, else a rate line */
	char *user;                /* USER: the name, or "*" for every other user */
	struct acl_cidr net;       /* CLIENT: the network */
	struct limitset_rate rate; /* rate lines */
	struct limitset_quota quota;
};

/* The `rate UP DOWN` clause of a `rule allow` line. */
struct limitset_rule_rate {
	int line; /* the rule's line */
	struct limitset_rate rate;
	char *key; /* the rule's words: the same rule shares one bucket */
};

struct limitset {
	struct limitset_line *v;
	size_t n;
	struct limitset_rule_rate *rules;
	size_t nrules;
	int tz_min;  /* quota-timezone, minutes east of UTC */
	bool tz_set; /* quota-timezone was given */
};

/* What applies to one session (NULL: nothing at that scope). */
struct limitset_match {
	const struct limitset_line *session;   /* limit session rate */
	const struct limitset_line *user_rate; /* the user's line, else user * */
	const struct limitset_line *user_quota;
	const struct limitset_line *client_rate; /* the first line whose network holds it */
	const struct limitset_line *client_quota;
	const struct limitset_rule_rate *rule; /* the allowing rule's clause */
};

struct limitset *limitset_new(void);
void limitset_free(struct limitset *l);
/* Whether no limit, quota or rule rate is configured (the relay's fast path). */
bool limitset_empty(const struct limitset *l);
/* Whether a quota line exists (quota counters and the state file). */
bool limitset_have_quota(const struct limitset *l);
/* The first line of a limit shared between sessions (user, client, rule,
 * any quota), 0 when there is none. */
int limitset_first_shared_line(const struct limitset *l);

/* Parses the words after `limit` (NULL-terminated) and appends the line.
 * Returns 0, or -1 with a message (no file/line prefix) in err. */
int limitset_add_line(struct limitset *l, char **argv, int line, char *err, size_t errlen);
/* Records the `rate UP DOWN` clause of the rule at line; key identifies the
 * rule's text. Returns 0, or -1 with a message in err. */
int limitset_add_rule_rate(struct limitset *l, int line, const char *up, const char *down,
	const char *key, char *err, size_t errlen);
/* quota-timezone "+HH:MM" / "-HH:MM". Returns 0, or -1 with a message. */
int limitset_set_timezone(struct limitset *l, const char *s, char *err, size_t errlen);

/* Which lines apply to a session of user (NULL: none) from client, allowed
 * by the rule at rule_line (0: none). */
void limitset_match(const struct limitset *l, const char *user, const union sockaddr_any *client,
	int rule_line, struct limitset_match *m);
/* The rule clause at line, or NULL. */
const struct limitset_rule_rate *limitset_rule_at(const struct limitset *l, int line);

/* Values. Each returns 0 and the value, or -1 with a message in err:
 * a rate "20mbit", "1.5gbit", "unlimited" (0); an amount "50GB", "1.5TB";
 * a period "day", "week", "month"; an offset "+HH:MM". */
int limitset_parse_rate(const char *s, uint64_t *bits, char *err, size_t errlen);
int limitset_parse_amount(const char *s, uint64_t *bytes, char *err, size_t errlen);
int limitset_parse_period(const char *s, enum limitset_period *p, char *err, size_t errlen);
int limitset_parse_tz(const char *s, int *minutes, char *err, size_t errlen);
/* The shortest text the parsers read back as the same value. */
const char *limitset_format_rate(uint64_t bits, char *out, size_t cap);
const char *limitset_format_amount(uint64_t bytes, char *out, size_t cap);
const char *limitset_period_name(enum limitset_period p);
const char *limitset_format_tz(int minutes, char *out, size_t cap);

/* Prints the limit lines and quota-timezone in config syntax (socks5d -T). */
void limitset_dump(const struct limitset *l, FILE *out);
/* Prints " rate UP DOWN" for the rule at line, if it has a clause. */
void limitset_dump_rule_rate(const struct limitset *l, int line, FILE *out);

#endif
