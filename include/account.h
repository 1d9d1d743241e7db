/*
 * account: who a session is charged to, and what they have used. A record
 * per user, per client address group (an IPv4 address, an IPv6 prefix of
 * ipv6-prefix bits) that a `limit client` line covers, and per rule with a
 * rate clause holds the buckets that scope shares, its quota counter and,
 * for users, the byte totals metrics and `socks5d ctl users` show. A
 * session that some limit or quota covers gets an account session: its two
 * flows charged against every bucket that applies, and the quota counters
 * it adds to. A session that none covers gets nothing, and its relay runs
 * unmetered. Records outlive reloads (a reload gives shared buckets and
 * quotas the new configuration's values); quota counters are saved under
 * state-dir every few seconds and at stop, and read at start.
 */
#ifndef SOCKS5D_ACCOUNT_H
#define SOCKS5D_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "addr.h"
#include "quota.h"
#include "relay.h"
#include "shaper.h"

struct config;
struct loop;
struct account;

enum account_kind {
	ACCOUNT_USER,
	ACCOUNT_CLIENT,
	ACCOUNT_RULE,
};

/* Client groups with a record at most (their addresses are the clients'
 * choice): a new client that needs one beyond this is refused. */
#define ACCOUNT_CLIENTS_MAX 65536
/* How often quota periods are checked and counters saved (when changed). */
#define ACCOUNT_TICK_MS 1000
#define ACCOUNT_SAVE_EVERY_MS 5000

struct account_rec;

/* What a record shows (metrics, ctl). */
struct account_info {
	enum account_kind kind;
	const char *name;  /* user name, client group ("192.0.2.7", "2001:db8::/64") */
	uint64_t seq;      /* creation order among records of its kind, from 0 */
	uint64_t ended[2]; /* bytes of ended sessions, up and down (users) */
	uint64_t live[2];  /* bytes of running sessions (account_live_add) */
	unsigned sessions; /* running sessions (account_live_add) */
	unsigned charged;  /* sessions charged to its buckets or quota now */
	uint64_t rate[2];  /* shared rate, bytes per second; 0: unlimited */
	bool has_quota;    /* a quota is configured */
	struct quota_counter quota;
	time_t quota_resets; /* when the period ends (UTC) */
};

enum account_admission {
	ACCOUNT_ADMITTED,
	ACCOUNT_QUOTA_REACHED, /* a quota whose action is close */
	ACCOUNT_TABLE_FULL,    /* ACCOUNT_CLIENTS_MAX client groups have records */
};

/* A quota was reached: act on it (close the sessions charged to r when
 * it closes). Called from a timer, never from inside a charge. */
typedef void (*account_reached_cb)(struct account_rec *r, void *arg);

/* key: the secret of the table's hash (client addresses are chosen by
 * clients). cfg gives the first limits, ipv6-prefix and state-dir; the
 * quota counters are read from there when it has quotas. */
struct account *account_new(struct loop *loop, const struct config *cfg, const uint8_t key[16]);
/* Saves the quota counters (waiting for the disk: call at stop) and frees
 * everything; sessions must be stopped first. */
void account_free(struct account *a);
void account_set_reached_cb(struct account *a, account_reached_cb cb, void *arg);
/* A reload: shared buckets and quotas take cfg's values. */
void account_configure(struct account *a, const struct config *cfg);

/* The record of an authenticated user (created at first sight, kept until
 * the end: its totals are counters), or NULL when out of memory. */
struct account_rec *account_user(struct account *a, const char *name);
void account_user_ended(struct account_rec *r, uint64_t up, uint64_t down);

/* Whether a request of user (NULL: none) from client may go on, as far as
 * quotas go (cfg: the session's configuration). Refusals are counted by the
 * caller; the first of a period is logged here. */
enum account_admission account_admit(struct account *a, const struct config *cfg, uint64_t id,
	const char *user, const union sockaddr_any *client);
const char *account_admission_str(enum account_admission adm);

/* A session's metering. resume(dir, arg): the flow of direction dir
 * (RELAY_UP, RELAY_DOWN) may read again. */
typedef void (*account_resume_cb)(int dir, void *arg);
struct account_session;
/* NULL when no limit or quota covers the session (or out of memory). */
struct account_session *account_session_start(struct account *a, const struct config *cfg,
	const char *user, const union sockaddr_any *client, int rule_line, account_resume_cb resume,
	void *arg);
void account_session_stop(struct account_session *s);
/* The relay's meter for this session. */
struct relay_throttle *account_session_throttle(struct account_session *s);
/* A datagram of n bytes in direction dir: all of it charged, or false
 * (dropped: over a limit or quota). */
bool account_session_take(struct account_session *s, int dir, size_t n);
/* Whether s is charged to r. */
bool account_session_uses(const struct account_session *s, const struct account_rec *r);

/* Live totals for a scrape or a listing: account_live_reset, then
 * account_live_add for each running session's user record. */
void account_live_reset(struct account *a);
void account_live_add(struct account_rec *r, uint64_t up, uint64_t down);
/* The records of kind in creation order: the first with seq >= from, or
 * NULL. */
struct account_rec *account_next(struct account *a, enum account_kind kind, uint64_t from);
/* The record after r in its kind's order, or NULL. */
struct account_rec *account_rec_next(struct account_rec *r);
void account_rec_info(const struct account *a, const struct account_rec *r,
	struct account_info *out);
/* The record of kind named name (a client group as account_info names it,
 * or any address in it), or NULL. */
struct account_rec *account_find(struct account *a, enum account_kind kind, const char *name);
/* Starts the quota of r over from zero (ctl quota-reset). */
void account_quota_reset(struct account *a, struct account_rec *r);

#endif
