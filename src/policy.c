/*
 * policy: the decisions about a session, apart from the state machine that
 * acts on them. Rules come from acl (pure), counts and lockouts from
 * connlimit, password verdicts from the helper processes (pwcheck); this
 * module adds what socks5d decides on top: a client list that denies what
 * it does not allow, the built-in protection of the proxy host, and which
 * failed logins count toward a lockout.
 */
#include "policy.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <string.h>

#include "config.h"
#include "connlimit.h"
#include "proto.h"
#include "stats.h"

/* Refusals (client rules, limits) are logged at most this often per
 * second, so a scan cannot flood the log. */
#define POLICY_REFUSAL_LOGS_PER_SEC 5

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

/* auth-fail-exempt: networks never locked out (an office NAT). */
static bool
policy_auth_exempt(const struct policy_subject *s)
{
	for (size_t i = 0; i < s->cfg->nauth_exempt; i++)
		if (acl_cidr_match(&s->cfg->auth_exempt[i], s->client))
			return true;
	return false;
}

bool
policy_auth_locked(struct policy *p, const struct policy_subject *s, const char *user, size_t ulen,
	uint64_t now_ms)
{
	char peer[ADDR_STRLEN], u[LOG_ESCAPED_SIZE(255)];
	uint64_t left = 0;

	if (!p->limits || policy_auth_exempt(s) ||
		!connlimit_auth_locked(p->limits, s->client, now_ms, &left))
		return false;
	p->stats->auth_failures++;
	log_warnx("conn %" PRIu64 ": %s is locked out for %" PRIu64 " s more; user \"%s\" not "
		  "checked",
		s->id, addr_format(s->client, peer, sizeof(peer)), (left + 999) / 1000,
		log_escape(user, ulen, u, sizeof(u)));
	return true;
}

void
policy_auth_verdict(struct policy *p, const struct policy_subject *s, const char *user, size_t ulen,
	enum pwcheck_result r, uint64_t now_ms)
{
	char peer[ADDR_STRLEN], u[LOG_ESCAPED_SIZE(255)];
	bool exempt = policy_auth_exempt(s);

	if (r == PWCHECK_OK) {
		if (p->limits && !exempt)
			connlimit_auth_ok(p->limits, s->client, now_ms);
		return;
	}
	addr_format(s->client, peer, sizeof(peer));
	log_escape(user, ulen, u, sizeof(u));
	if (r == PWCHECK_ERROR) {
		/* Not the client's fault: never counted toward a lockout. */
		log_warnx("conn %" PRIu64 ": the password of user \"%s\" from %s could not be "
			  "checked (a password helper died twice)",
			s->id, u, peer);
		return;
	}
	/* Only a password checked and found wrong counts as a failure. */
	p->stats->auth_failures++;
	log_warnx("conn %" PRIu64 ": authentication failed for user \"%s\" from %s", s->id, u,
		peer);
	if (p->limits && !exempt &&
		connlimit_auth_fail(p->limits, s->client, now_ms) == CONNLIMIT_LOCKOUT_STARTED)
		log_warnx("%s locked out for %u s after %u failed authentications", peer,
			s->cfg->auth_lockout, s->cfg->auth_fail_limit);
}

/* --- requests ------------------------------------------------------------ */

static unsigned
policy_acl_cmd(uint8_t cmd)
{
	return cmd == SOCKS_CMD_BIND             ? ACL_CMD_BIND
		: cmd == SOCKS_CMD_UDP_ASSOCIATE ? ACL_CMD_UDP
						 : ACL_CMD_CONNECT;
}

/* A port the daemon serves on: a SOCKS listener or the metrics endpoint
 * (one port per worker). */
static bool
policy_is_own_port(const struct config *cfg, uint16_t port)
{
	for (size_t i = 0; i < cfg->nlisten; i++)
		if (addr_port(&cfg->listen[i].addr) == port)
			return true;
	if (cfg->has_metrics) {
		unsigned first = addr_port(&cfg->metrics);
		if (port >= first && port < first + (cfg->workers ? cfg->workers : 1))
			return true;
	}
	return false;
}

static bool
policy_is_host_addr(const struct policy *p, const struct policy_subject *s,
	const union sockaddr_any *d)
{
	if (addr_ip_equal(s->local, d))
		return true;
	for (size_t i = 0; i < p->nhost_addrs; i++)
		if (addr_ip_equal(&p->host_addrs[i], d))
			return true;
	for (size_t i = 0; i < s->cfg->nlisten; i++)
		if (addr_ip_equal(&s->cfg->listen[i].addr, d))
			return true;
	return false;
}

/* What the built-in protection keeps clients from without a rule naming
 * the network: the proxy host itself (its loopback, and the unspecified
 * address, which Linux routes to loopback), its own addresses at the
 * daemon's ports (a proxy loop), multicast and the limited broadcast. */
static enum policy_protection
policy_protection_for(const struct policy *p, const struct policy_subject *s,
	const union sockaddr_any *dst)
{
	union sockaddr_any d = *dst;

	addr_unmap(&d);
	if (addr_is_loopback(&d) || addr_is_unspecified(&d))
		return POLICY_PROTECT_LOOPBACK;
	if (policy_is_own_port(s->cfg, addr_port(&d)) && policy_is_host_addr(p, s, &d))
		return POLICY_PROTECT_OWN_PORT;
	if (d.sa.sa_family == AF_INET) {
		uint32_t ip = ntohl(d.sin.sin_addr.s_addr);
		if ((ip >> 28) == 0xE)
			return POLICY_PROTECT_MULTICAST;
		if (ip == 0xFFFFFFFFu)
			return POLICY_PROTECT_BROADCAST;
	} else if (d.sa.sa_family == AF_INET6 && d.sin6.sin6_addr.s6_addr[0] == 0xFF) {
		return POLICY_PROTECT_MULTICAST;
	}
	return POLICY_PROTECT_NONE;
}

const char *
policy_protection_str(enum policy_protection why)
{
	switch (why) {
	case POLICY_PROTECT_NONE:
		break;
	case POLICY_PROTECT_LOOPBACK:
		return "loopback of the proxy host";
	case POLICY_PROTECT_OWN_PORT:
		return "a port of the proxy itself";
	case POLICY_PROTECT_MULTICAST:
		return "multicast";
	case POLICY_PROTECT_BROADCAST:
		return "broadcast";
	}
	return "none";
}

struct policy_verdict
policy_check_request(const struct policy *p, const struct policy_subject *s, uint8_t cmd,
	const char *name, const union sockaddr_any *dst, uint16_t port)
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
	struct policy_verdict v = { r.verdict, r.line, POLICY_PROTECT_NONE, r.via, r.egress };

	if (r.verdict != ACL_ALLOW)
		return v;
	v.via = r.via;
	/* With rules written, what none of them allows is denied. */
	if (r.line == 0 && acl_request_rule_count(s->cfg->acl) > 0) {
		v.verdict = ACL_DENY;
		return v;
	}
	/* Only a rule whose network holds the address lifts the protection:
	 * a name (*.example.com) says nothing about where it resolves to. */
	if (dst && !(r.line && r.to_addr) && !addr_is_loopback(s->client)) {
		v.protection = policy_protection_for(p, s, dst);
		if (v.protection != POLICY_PROTECT_NONE) {
			v.verdict = ACL_DENY;
			v.line = 0;
			v.egress = NULL;
		}
	}
	return v;
}

void
policy_log_denied(struct policy *p, const struct policy_subject *s, const char *what,
	const struct policy_verdict *v, uint64_t now_ms)
{
	char peer[ADDR_STRLEN];

	p->stats->rule_denials++;
	if (!policy_refusal_log_ok(p, now_ms))
		return;
	addr_format(s->client, peer, sizeof(peer));
	if (v->protection != POLICY_PROTECT_NONE)
		log_info("conn %" PRIu64 ": %s from %s denied: built-in protection: %s (allow it "
			 "with a rule naming the network: 'rule allow to NETWORK')",
			s->id, what, peer, policy_protection_str(v->protection));
	else if (v->line)
		log_info("conn %" PRIu64 ": %s from %s denied by %s:%d", s->id, what, peer,
			s->cfg->name, v->line);
	else
		log_info("conn %" PRIu64 ": %s from %s denied: no rule allows it", s->id, what,
			peer);
}

void
policy_set_host_addrs(struct policy *p, const union sockaddr_any *addrs, size_t n)
{
	if (n > POLICY_MAX_HOST_ADDRS) {
		log_warnx("built-in protection: %zu host addresses, only the first %d are "
			  "protected",
			n, POLICY_MAX_HOST_ADDRS);
		n = POLICY_MAX_HOST_ADDRS;
	}
	memcpy(p->host_addrs, addrs, n * sizeof(addrs[0]));
	p->nhost_addrs = n;
}

/* --- per-user sessions --------------------------------------------------- */

bool
policy_acquire_user(struct policy *p, const struct policy_subject *s, uint64_t now_ms)
{
	unsigned limit = s->cfg->max_sessions_per_user;

	if (connlimit_user_acquire(p->limits, s->user, limit) == CONNLIMIT_OK)
		return true;
	p->stats->limit_refusals++;
	if (policy_refusal_log_ok(p, now_ms)) {
		char u[LOG_ESCAPED_SIZE(255)];
		log_info("conn %" PRIu64 ": user \"%s\" refused: max-sessions-per-user %u reached",
			s->id, log_escape(s->user, strlen(s->user), u, sizeof(u)), limit);
	}
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
