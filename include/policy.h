/*
 * policy: what a session may do. Client rules and the per-address limit at
 * admission, the password check with its lockout and hashing budget, the
 * request rules per destination with the built-in protection of the proxy
 * host, and the per-user session limit. Each refusal is counted in stats and
 * logged here, rate-limited so that a scan cannot flood the log; conn only
 * acts on the verdicts.
 */
#ifndef SOCKS5D_POLICY_H
#define SOCKS5D_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "addr.h"
#include "log.h"

struct config;
struct connlimit;
struct stats;

/* Who asks: what every decision about a session needs. */
struct policy_subject {
	uint64_t id;                      /* session id, for log lines */
	const struct config *cfg;         /* the session's configuration */
	const union sockaddr_any *client; /* the client (after a PROXY header) */
	const union sockaddr_any *local;  /* where the client reached us */
	const char *user;                 /* authenticated user, or NULL */
};

/* Process-wide state of the decisions. */
struct policy {
	struct connlimit *limits;      /* per-address and per-user counts, lockouts; NULL: none */
	struct stats *stats;           /* where refusals are counted */
	struct log_ratelimit refusals; /* refusal lines per second */
	int64_t hash_budget_us;        /* crypt(3) time the loop may still spend */
	uint64_t hash_budget_at_ms;    /* loop time of the last refill */
};

enum policy_admission {
	POLICY_ADMITTED,
	POLICY_CLIENT_DENIED, /* a client rule, or no client rule allows it */
	POLICY_IP_LIMIT,      /* max-connections-per-ip reached */
};

enum policy_auth {
	POLICY_AUTH_OK,
	POLICY_AUTH_FAILED, /* wrong user or password (counts toward lockout) */
	POLICY_AUTH_LOCKED, /* the address is locked out: not checked */
};

/* Client rules and the per-address limit, at accept or after a PROXY header
 * named the real client. Admitted with the limit configured, the address's
 * slot is taken: *ip_counted is set and policy_forget gives it back. */
enum policy_admission policy_admit(struct policy *p, const struct policy_subject *s,
	uint64_t now_ms, bool *ip_counted) __attribute__((warn_unused_result));
/* The reason a refused admission is logged with at the session's end. */
const char *policy_admission_str(enum policy_admission a);

/* RFC 1929 credentials (ulen/plen: the lengths the client sent; a NUL inside
 * never authenticates). Logs failures and lockouts. */
enum policy_auth policy_check_password(struct policy *p, const struct policy_subject *s,
	const char *user, size_t ulen, const char *pass, size_t plen, uint64_t now_ms)
	__attribute__((warn_unused_result));

/* Request rules for one destination (dst NULL: not known yet, e.g. before a
 * name is resolved). Returns ACL_ALLOW, ACL_DENY (*line: the deciding rule,
 * 0 for the built-in protection or "no rule allows it") or ACL_UNDECIDED.
 * cmd is a SOCKS command. UDP ASSOCIATE with dst and name NULL is the
 * request itself: rules on destinations and ports are left to its
 * datagrams (acl_request.dst_unknown). */
enum acl_verdict policy_check_request(const struct policy_subject *s, uint8_t cmd, const char *name,
	const union sockaddr_any *dst, uint16_t port, int *line);
/* Counts a request refused by policy_check_request and logs it (what: the
 * target as the log should name it; line: from policy_check_request). */
void policy_log_denied(struct policy *p, const struct policy_subject *s, const char *what, int line,
	uint64_t now_ms);

/* max-sessions-per-user: takes a slot for s->user (true), or counts and logs
 * the refusal (false). */
bool policy_acquire_user(struct policy *p, const struct policy_subject *s, uint64_t now_ms)
	__attribute__((warn_unused_result));
/* Gives back what policy_admit (ip_counted) and policy_acquire_user
 * (user_counted) took. */
void policy_forget(struct policy *p, const struct policy_subject *s, bool ip_counted,
	bool user_counted);

/* Whether a refusal line may be written now (at most a few a second). */
bool policy_refusal_log_ok(struct policy *p, uint64_t now_ms);

#endif
