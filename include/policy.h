/*
 * policy: what a session may do. Client rules and the per-address limit at
 * admission, the lockout of addresses that guess passwords, the request
 * rules per destination with the built-in protection of the proxy host, and
 * the per-user session limit. Each refusal is counted in stats and
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
#include "pwhelper.h"

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

#define POLICY_MAX_HOST_ADDRS 64

/* Process-wide state of the decisions. */
struct policy {
	union sockaddr_any host_addrs[POLICY_MAX_HOST_ADDRS]; /* the host's own addresses */
	size_t nhost_addrs;
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

/* Client rules and the per-address limit, at accept or after a PROXY header
 * named the real client. Admitted with the limit configured, the address's
 * slot is taken: *ip_counted is set and policy_forget gives it back. */
enum policy_admission policy_admit(struct policy *p, const struct policy_subject *s,
	uint64_t now_ms, bool *ip_counted) __attribute__((warn_unused_result));
/* The reason a refused admission is logged with at the session's end. */
const char *policy_admission_str(enum policy_admission a);

/* Whether the client's address is locked out after failed logins (then
 * counted and logged: user is who it tried, of ulen bytes); an address in
 * auth-fail-exempt never is. */
bool policy_auth_locked(struct policy *p, const struct policy_subject *s, const char *user,
	size_t ulen, uint64_t now_ms) __attribute__((warn_unused_result));
/* The helpers' verdict on a login: a wrong password is counted, logged
 * and counted toward the address's lockout; a right one clears the
 * address's streak; PWCHECK_ERROR (not checked) is logged only. */
void policy_auth_verdict(struct policy *p, const struct policy_subject *s, const char *user,
	size_t ulen, enum pwcheck_result r, uint64_t now_ms);

/* Why the built-in protection refused a destination. */
enum policy_protection {
	POLICY_PROTECT_NONE,
	POLICY_PROTECT_LOOPBACK,  /* the proxy host's loopback (or unspecified) address */
	POLICY_PROTECT_OWN_PORT,  /* one of the host's addresses at a port of the daemon */
	POLICY_PROTECT_MULTICAST, /* 224.0.0.0/4, ff00::/8 */
	POLICY_PROTECT_BROADCAST, /* 255.255.255.255 */
};

struct policy_verdict {
	enum acl_verdict verdict;          /* ACL_ALLOW, ACL_DENY or ACL_UNDECIDED */
	int line;                          /* the deciding rule's line, 0: none */
	enum policy_protection protection; /* the built-in protection decided (DENY) */
	const struct acl_via *via;         /* ALLOW: the deciding rule's parents; NULL: direct */
	const struct egress *egress;       /* ALLOW: the rule's outbound clauses, or NULL */
};

/* Request rules for one destination (dst NULL: not known yet, e.g. before a
 * name is resolved), then, unless a rule whose network holds dst allowed
 * it or the client is on loopback, the built-in protection. cmd is a SOCKS
 * command. UDP ASSOCIATE with dst and name NULL is the request itself:
 * rules on destinations and ports are left to its datagrams
 * (acl_request.dst_unknown). */
struct policy_verdict policy_check_request(const struct policy *p, const struct policy_subject *s,
	uint8_t cmd, const char *name, const union sockaddr_any *dst, uint16_t port);
/* Counts a request refused by policy_check_request and logs it, saying
 * which rule or which protection refused it (what: the target as the log
 * should name it). */
void policy_log_denied(struct policy *p, const struct policy_subject *s, const char *what,
	const struct policy_verdict *v, uint64_t now_ms);
const char *policy_protection_str(enum policy_protection why);
/* The host's own addresses (read at start and at each reload), which the
 * protection covers at the daemon's ports; at most POLICY_MAX_HOST_ADDRS. */
void policy_set_host_addrs(struct policy *p, const union sockaddr_any *addrs, size_t n);

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
