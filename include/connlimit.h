/*
 * connlimit: bounded-memory bookkeeping for the connection code — open
 * connections per client IP, sessions per user, and authentication-failure
 * lockouts per client IP. Pure: the caller passes the time (monotonic ms)
 * and the maxima, and does the logging and the refusing.
 *
 * Keys: IPv4-mapped IPv6 addresses count as their IPv4 address, and IPv6
 * addresses can be grouped by prefix (one /64 is one client), so a dual-stack
 * listener or a host with a whole /64 cannot multiply its allowance. Hashes
 * are keyed (SipHash) with a secret from the caller, so chosen addresses or
 * names cannot pile up in one bucket.
 */

#ifndef SOCKS5D_CONNLIMIT_H
#define SOCKS5D_CONNLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Declared in addr.h; only pointers are used here, and not including addr.h
 * keeps this header light. */
union sockaddr_any;

struct connlimit;

enum connlimit_status {
	CONNLIMIT_OK = 0,          /* counted */
	CONNLIMIT_OVER,            /* *_acquire: already at the maximum; nothing counted */
	CONNLIMIT_NOMEM,           /* could not allocate; nothing counted */
	CONNLIMIT_LOCKED,          /* auth_fail: the IP is locked out; not counted */
	CONNLIMIT_LOCKOUT_STARTED, /* auth_fail: this failure reached the threshold */
};

/* Default and hard bound on the number of IPs tracked for auth failures. */
#define CONNLIMIT_AUTH_TRACKED_DEFAULT 65536u
#define CONNLIMIT_AUTH_TRACKED_MAX (1u << 24)

/* Auth-failure policy; may change on reload (connlimit_set_auth_policy).
 * A streak starts at an IP's first failure and lasts window_ms; the
 * max_failures-th failure within the streak locks the IP out for lockout_ms
 * and ends the streak. A failure after the window starts a new streak (a
 * fixed window, not a sliding one: O(1) memory per IP, at the cost that up
 * to 2 * (max_failures - 1) failures can straddle two streaks). */
struct connlimit_auth_policy {
	unsigned max_failures; /* N; 0 disables tracking (never locked) */
	uint64_t window_ms;    /* W */
	uint64_t lockout_ms;   /* L; 0 disables tracking too */
	size_t max_tracked;    /* IPs remembered; 0 = default; capped at _MAX */
};

/* Fixed for the life of the object: changing how keys are made would
 * orphan counts taken under the old rule. */
struct connlimit_config {
	uint8_t hash_key[16]; /* random secret (getrandom) for the hashes */
	unsigned ipv6_prefix; /* IPv6 keys keep this many bits: 1..128, 0 = 128 */
	struct connlimit_auth_policy auth;
};

/* Returns a new object, or NULL when out of memory or ipv6_prefix > 128.
 * Nothing is allocated for the tables until they are used. */
struct connlimit *connlimit_new(const struct connlimit_config *cfg)
	__attribute__((warn_unused_result));
void connlimit_free(struct connlimit *lim);

/* Applies a new auth policy: keeps all counts and lockouts, except that a
 * lower max_tracked evicts the oldest entries now and a disabled policy
 * forgets every entry (lifting lockouts). */
void connlimit_set_auth_policy(struct connlimit *lim, const struct connlimit_auth_policy *p);

/* Connections per client IP. acquire counts one more connection unless the
 * IP already has max (0 = no maximum); every CONNLIMIT_OK must be matched by
 * one release, which drops the entry at zero. Releasing an IP with no count
 * does nothing. Non-IP addresses (AF_UNIX) are never counted: acquire says
 * CONNLIMIT_OK and release ignores them. */
enum connlimit_status connlimit_ip_acquire(struct connlimit *lim, const union sockaddr_any *ip,
	unsigned max) __attribute__((warn_unused_result));
void connlimit_ip_release(struct connlimit *lim, const union sockaddr_any *ip);
unsigned connlimit_ip_count(const struct connlimit *lim, const union sockaddr_any *ip);
size_t connlimit_ip_entries(const struct connlimit *lim); /* distinct IPs counted */

/* Sessions per user name (copied; compared exactly), same contract; a NULL
 * user (no authentication) is never counted. */
enum connlimit_status connlimit_user_acquire(struct connlimit *lim, const char *user, unsigned max)
	__attribute__((warn_unused_result));
void connlimit_user_release(struct connlimit *lim, const char *user);
unsigned connlimit_user_count(const struct connlimit *lim, const char *user);
size_t connlimit_user_entries(const struct connlimit *lim);

/* Records a failed authentication from ip at now_ms. Returns CONNLIMIT_OK
 * (counted, still below the threshold), CONNLIMIT_LOCKOUT_STARTED (log it: the
 * IP is locked from now for lockout_ms), CONNLIMIT_LOCKED (already locked;
 * the lockout is not extended), or CONNLIMIT_NOMEM (not recorded). When the
 * table is full the IP whose streak is oldest is forgotten; locked IPs are
 * forgotten only when every tracked IP is locked, so a flood from fresh
 * addresses cannot unlock an attacker. Disabled policy: CONNLIMIT_OK. */
enum connlimit_status connlimit_auth_fail(struct connlimit *lim, const union sockaddr_any *ip,
	uint64_t now_ms) __attribute__((warn_unused_result));
/* Successful authentication: forgets the IP's failures. An active lockout
 * stays (a success from the same NAT must not release an attacker). */
void connlimit_auth_ok(struct connlimit *lim, const union sockaddr_any *ip, uint64_t now_ms);
/* True when ip is locked out at now_ms; *remaining_ms (may be NULL) gets
 * the time left, 0 when not locked. Drops the IP's entry if it expired. */
bool connlimit_auth_locked(struct connlimit *lim, const union sockaddr_any *ip, uint64_t now_ms,
	uint64_t *remaining_ms) __attribute__((warn_unused_result));
/* Drops expired auth entries (call from a periodic timer; lookups also
 * expire lazily). Returns how many were dropped. */
size_t connlimit_auth_expire(struct connlimit *lim, uint64_t now_ms);
size_t connlimit_auth_entries(const struct connlimit *lim); /* IPs tracked */

#endif
