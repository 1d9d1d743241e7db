/*
 * policy: the decisions about a session, apart from the state machine that
 * acts on them. Rules come from acl (pure), counts and lockouts from
 * connlimit, passwords from auth; this module adds what socks5d decides on
 * top: a client list that denies what it does not allow, the built-in
 * protection of the proxy host, and the hashing budget.
 */
#include "policy.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "config.h"
#include "connlimit.h"
#include "proto.h"
#include "stats.h"

/* Refusals (client rules, limits) are logged at most this often per
 * second, so a scan cannot flood the log. */
#define POLICY_REFUSAL_LOGS_PER_SEC 5
/* Password hashes (yescrypt, SHA-crypt) cost milliseconds each, on the one
 * thread that serves everyone: wrong passwords from many addresses must not
 * stall the other sessions. At most a fifth of the loop's time goes to
 * crypt(3); past that, checks that need a hash fail at once (a verified
 * password is cached and never needs one). */
#define POLICY_HASH_US_PER_SEC 200000

bool
policy_refusal_log_ok(struct policy *p, uint64_t now_ms)
{
	return log_ratelimit_ok(&p->refusals, now_ms, 1000, POLICY_REFUSAL_LOGS_PER_SEC);
}

/* --- admission ----------------------------------------------------------- */

static bool
policy_client_allowed(struct policy *p, const struct policy_subject *s, uint64_t now_ms)
{
	const struct acl *acl = s->cfg->acl;
	struct acl_result r;
	char peer[ADDR_STRLEN];

	if (acl_client_rule_count(acl) == 0)
		return true;
	r = acl_check_client(acl, s->client);
	/* With client rules written, a client none matches is denied. */
	if (r.verdict == ACL_ALLOW && r.line != 0)
		return true;
	p->stats->client_denials++;
	if (policy_refusal_log_ok(p, now_ms)) {
		addr_format(s->client, peer, sizeof(peer));
		if (r.line)
			log_info("client %s denied by %s:%d", peer, s->cfg->name, r.line);
		else
			log_info("client %s denied: no client rule allows it", peer);
	}
	return false;
}

enum policy_admission
policy_admit(struct policy *p, const struct policy_subject *s, uint64_t now_ms, bool *ip_counted)
{
	unsigned limit = s->cfg->max_connections_per_ip;
	char peer[ADDR_STRLEN];

	*ip_counted = false;
	if (!policy_client_allowed(p, s, now_ms))
		return POLICY_CLIENT_DENIED;
	if (!limit || !p->limits)
		return POLICY_ADMITTED;
	if (connlimit_ip_acquire(p->limits, s->client, limit) != CONNLIMIT_OK) {
		p->stats->limit_refusals++;
		if (policy_refusal_log_ok(p, now_ms))
			log_info("client %s refused: max-connections-per-ip %u reached",
				addr_format(s->client, peer, sizeof(peer)), limit);
		return POLICY_IP_LIMIT;
	}
	*ip_counted = true;
	return POLICY_ADMITTED;
}

const char *
policy_admission_str(enum policy_admission a)
{
	switch (a) {
	case POLICY_ADMITTED:
		return "admitted";
	case POLICY_CLIENT_DENIED:
		return "client denied";
	case POLICY_IP_LIMIT:
		return "max-connections-per-ip";
	}
	return "refused";
}

/* --- passwords ----------------------------------------------------------- */

/* auth_check_ex within the hashing budget. */
static bool
policy_hash_check(struct policy *p, const struct policy_subject *s, const char *user,
	const char *pass, uint64_t now_ms)
{
	enum auth_result r;
	struct timespec t0, t1;
	bool hashed;

	p->hash_budget_us += (int64_t)(now_ms - p->hash_budget_at_ms) *
		(POLICY_HASH_US_PER_SEC / 1000);
	if (p->hash_budget_us > POLICY_HASH_US_PER_SEC)
		p->hash_budget_us = POLICY_HASH_US_PER_SEC;
	p->hash_budget_at_ms = now_ms;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = auth_check_ex(s->cfg->users, user, pass, p->hash_budget_us > 0, &hashed);
	if (hashed) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		p->hash_budget_us -= (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000 +
			(t1.tv_nsec - t0.tv_nsec) / 1000;
	}
	if (r == AUTH_RESULT_NEED_HASH && policy_refusal_log_ok(p, now_ms))
		log_warnx("conn %" PRIu64 ": password hashing budget spent (many failed "
			  "logins?): user \"%s\" refused unchecked",
			s->id, user);
	return r == AUTH_RESULT_OK;
}

enum policy_auth
policy_check_password(struct policy *p, const struct policy_subject *s, const char *user,
	size_t ulen, const char *pass, size_t plen, uint64_t now_ms)
{
	uint64_t left = 0;
	bool locked = p->limits && connlimit_auth_locked(p->limits, s->client, now_ms, &left);
	char peer[ADDR_STRLEN];

	/* A NUL inside a field would make the C-string check see a different
	 * name than the client sent: never authenticates. A locked-out
	 * address is not checked at all. */
	if (!locked && strlen(user) == ulen && strlen(pass) == plen &&
		policy_hash_check(p, s, user, pass, now_ms)) {
		if (p->limits)
			connlimit_auth_ok(p->limits, s->client, now_ms);
		return POLICY_AUTH_OK;
	}
	p->stats->auth_failures++;
	addr_format(s->client, peer, sizeof(peer));
	if (locked) {
		log_warnx("conn %" PRIu64 ": %s is locked out for %" PRIu64 " s more; user \"%s\" "
			  "not checked",
			s->id, peer, (left + 999) / 1000, user);
		return POLICY_AUTH_LOCKED;
	}
	log_warnx("conn %" PRIu64 ": authentication failed for user \"%s\" from %s", s->id, user,
		peer);
	if (p->limits &&
		connlimit_auth_fail(p->limits, s->client, now_ms) == CONNLIMIT_LOCKOUT_STARTED)
		log_warnx("%s locked out for %u s after %u failed authentications", peer,
			s->cfg->auth_lockout, s->cfg->auth_fail_limit);
	return POLICY_AUTH_FAILED;
}

/* --- requests ------------------------------------------------------------ */

static unsigned
policy_acl_cmd(uint8_t cmd)
{
	return cmd == SOCKS_CMD_BIND             ? ACL_CMD_BIND
		: cmd == SOCKS_CMD_UDP_ASSOCIATE ? ACL_CMD_UDP
						 : ACL_CMD_CONNECT;
}

/* The daemon itself as a destination: its loopback, or one of its
 * listening addresses (a wildcard listener counts at the address the
 * client reached us on) — a proxy loop. */
static bool
policy_is_self(const struct policy_subject *s, const union sockaddr_any *dst)
{
	union sockaddr_any d = *dst;

	addr_unmap(&d);
	/* connect() to 0.0.0.0 or :: reaches this host (Linux routes it to
	 * loopback): as much "self" as 127.0.0.1. */
	if (addr_is_loopback(&d) || addr_is_unspecified(&d))
		return true;
	for (size_t i = 0; i < s->cfg->nlisten; i++) {
		const union sockaddr_any *l = &s->cfg->listen[i].addr;
		if (addr_equal(l, &d))
			return true;
		if (addr_port(l) == addr_port(&d) && addr_is_unspecified(l) &&
			addr_ip_equal(s->local, &d))
			return true;
	}
	return false;
}

enum acl_verdict
policy_check_request(const struct policy_subject *s, uint8_t cmd, const char *name,
	const union sockaddr_any *dst, uint16_t port, int *line)
{
	struct acl_request request = {
		.client = s->client,
		.user = s->user,
		.cmd = policy_acl_cmd(cmd),
		.dst_name = name,
		.dst_addr = dst,
		.port = port,
		/* The UDP ASSOCIATE request itself: its DST is no destination. */
		.dst_unknown = cmd == SOCKS_CMD_UDP_ASSOCIATE && !dst && !name,
	};
	struct acl_result r = acl_check_request(s->cfg->acl, &request);

	*line = r.line;
	if (r.verdict != ACL_ALLOW)
		return r.verdict;
	/* With rules written, what none of them allows is denied. */
	if (r.line == 0 && acl_request_rule_count(s->cfg->acl) > 0)
		return ACL_DENY;
	if (dst && !(r.line && r.explicit_to) && !addr_is_loopback(s->client) &&
		policy_is_self(s, dst)) {
		*line = 0;
		return ACL_DENY;
	}
	return ACL_ALLOW;
}

void
policy_log_denied(struct policy *p, const struct policy_subject *s, const char *what, int line,
	uint64_t now_ms)
{
	char peer[ADDR_STRLEN];

	p->stats->rule_denials++;
	if (!policy_refusal_log_ok(p, now_ms))
		return;
	addr_format(s->client, peer, sizeof(peer));
	if (line)
		log_info("conn %" PRIu64 ": %s from %s denied by %s:%d", s->id, what, peer,
			s->cfg->name, line);
	else if (acl_request_rule_count(s->cfg->acl) > 0)
		log_info("conn %" PRIu64 ": %s from %s denied: no rule allows it", s->id, what,
			peer);
	else
		log_info("conn %" PRIu64 ": %s from %s denied: the proxy's own loopback or "
			 "listening address (allow it with an explicit 'rule allow to ...')",
			s->id, what, peer);
}

/* --- per-user sessions --------------------------------------------------- */

bool
policy_acquire_user(struct policy *p, const struct policy_subject *s, uint64_t now_ms)
{
	unsigned limit = s->cfg->max_sessions_per_user;

	if (connlimit_user_acquire(p->limits, s->user, limit) == CONNLIMIT_OK)
		return true;
	p->stats->limit_refusals++;
	if (policy_refusal_log_ok(p, now_ms))
		log_info("conn %" PRIu64 ": user \"%s\" refused: max-sessions-per-user %u reached",
			s->id, s->user, limit);
	return false;
}

void
policy_forget(struct policy *p, const struct policy_subject *s, bool ip_counted, bool user_counted)
{
	if (ip_counted)
		connlimit_ip_release(p->limits, s->client);
	if (user_counted)
		connlimit_user_release(p->limits, s->user);
}
