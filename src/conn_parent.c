/*
 * conn_parent: the session's steps through a parent proxy (a rule's `via`).
 * The list's hops are tried in order, those marked down skipped while
 * another is up; each gets a share of the connect budget. A parent's name
 * is looked up (RESOLVING), the parent connected to (PARENT_CONNECTING),
 * then its handshake moves the session one message per state: its method
 * choice, its password status, its reply (and BIND's second reply). A
 * parent that fails (refused, silent, a broken or refusing handshake) is
 * counted against it and the next hop is tried; a parent that answers, even
 * "target unreachable", has answered and its REP goes to the client. The
 * protocol is upstream's and the up/down bookkeeping parent's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "conn_private.h"
#include "log.h"

static enum conn_step conn_parent_next(struct conn *c);
static void conn_on_parent_io(struct loop *loop, unsigned events, void *arg);

/* The hops that can carry cmd, in list order: the ones up (a direct hop
 * always is), or all of them when none is up (a list whose parents are
 * all marked down is tried rather than refused, as nginx does with a lone
 * server). Returns how many went into order[]. */
static size_t
via_order(const struct acl_via *v, uint8_t cmd, struct parents *ps, uint64_t now,
	uint8_t order[ACL_VIA_MAX])
{
	size_t n = 0, i;

	for (i = 0; i < v->n; i++) {
		const struct upstream *u = &v->hop[i];
		struct parent_state *st;

		if (!upstream_can(u, cmd))
			continue;
		st = u->proto == UPSTREAM_DIRECT ? NULL : parents_get(ps, u);
		if (!st || !parent_is_down(st, now))
			order[n++] = (uint8_t)i;
	}
	for (i = 0; n == 0 && i < v->n; i++)
		if (upstream_can(&v->hop[i], cmd))
			order[n++] = (uint8_t)i;
	return n;
}

enum conn_step
conn_parent_start(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct conn_parent *p = calloc(1, sizeof(*p));

	if (!p)
		return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, "no memory for parent");
	hs->parent = p;
	p->n = via_order(hs->via, c->cmd, &c->env->parents, loop_now(c->env->loop), p->order);
	if (p->n == 0)
		return conn_fail(c, SOCKS_REP_COMMAND_NOT_SUPPORTED,
			"no parent of the rule can carry the command");
	p->dst = hs->req.dst;
	p->last_rep = SOCKS_REP_GENERAL_FAILURE;
	p->last_why = "every parent failed";
	if (hs->via->resolve_local && p->dst.atyp == SOCKS_ATYP_DOMAIN) {
		hs->lookup = CONN_LOOKUP_FOR_PARENT;
		return conn_lookup(c, p->dst.name);
	}
	return conn_parent_next(c);
}

/* The current parent failed: counted against it (and maybe marked down),
 * its socket closed, the next hop tried. */
static enum conn_step
conn_parent_failed(struct conn *c, const char *why)
{
	struct conn_parent *p = c->hs->parent;

	if (c->state == CONN_ST_PARENT_CONNECTING)
		dial_stop(&c->hs->dial);
	conn_target_close(c);
	parent_failed(p->st, why, loop_now(c->env->loop), c->cfg->parent_down_after,
		c->cfg->parent_down_for);
	log_info("conn %" PRIu64 ": parent %s failed: %s", c->id, p->u->label, why);
	p->last_rep = SOCKS_REP_GENERAL_FAILURE;
	p->last_why = why;
	return conn_parent_next(c);
}

/* A parent is reached the way the rule with its `via` says traffic
 * leaves (over the user's and the global settings). dial's route hook. */
static bool
conn_parent_route(const union sockaddr_any *to, struct dial_route *route, void *arg)
{
	struct conn *c = arg;

	conn_route_fill(c, c->hs->rule_egress, to, route);
	return true;
}

static enum conn_step
conn_parent_dial(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct conn_parent *p = hs->parent;
	struct dial_options opt = conn_dial_options(c, conn_parent_route);
	enum dial_result r;

	hs->dialed = DIAL_PENDING;
	r = dial_start(&hs->dial, c->env->loop, &c->tw, hs->res.addrs, hs->res.naddrs, p->u->port,
		p->attempt_deadline_ms, &opt, conn_on_dialed, c);
	conn_set_state(c, CONN_ST_PARENT_CONNECTING);
	if (r != DIAL_PENDING)
		return conn_parent_failed(c, strerror(hs->dial.last_err));
	return CONN_STEP_WAIT;
}

/* The next hop of the list: a parent gets its share of what is left of
 * the connect budget; `direct` goes out as a rule without via would. */
static enum conn_step
conn_parent_next(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct conn_parent *p = hs->parent;
	uint64_t now = loop_now(c->env->loop);

	while (p->pos < p->n && now < hs->connect_deadline_ms) {
		const struct upstream *u = &hs->via->hop[p->order[p->pos++]];

		if (u->proto == UPSTREAM_DIRECT)
			return conn_start_direct(c);
		if (upstream_hs_start(&p->hs, u, c->cmd, &p->dst) < 0) {
			p->last_rep = p->hs.res.rep;
			p->last_why = p->hs.res.why;
			continue;
		}
		if (!(p->st = parents_get(&c->env->parents, u)))
			return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, "no memory for parent");
		p->u = u;
		p->answered = false;
		p->attempt_deadline_ms = now +
			(hs->connect_deadline_ms - now) / (p->n - p->pos + 1);
		if (log_enabled(LOG_LVL_DEBUG))
			log_debug("conn %" PRIu64 ": via %s", c->id, u->label);
		if (addr_parse(u->host, u->port, &hs->res.addrs[0]) == 0) {
			hs->res.naddrs = 1;
			return conn_parent_dial(c);
		}
		hs->lookup = CONN_LOOKUP_PARENT;
		return conn_lookup(c, u->host);
	}
	if (now >= hs->connect_deadline_ms)
		return conn_fail(c, proto_rep_from_errno(ETIMEDOUT), "connect timeout");
	return conn_fail(c, p->last_rep, p->last_why);
}

enum conn_step
conn_parent_resolved(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct conn_parent *p = hs->parent;
	bool ok = hs->res.status == RESOLVER_OK && hs->res.naddrs > 0;

	if (hs->lookup == CONN_LOOKUP_PARENT) {
		/* A parent whose name does not resolve is not reachable: its
		 * failure, like a refused connect. */
		if (!ok)
			return conn_parent_failed(c, resolver_status_str(hs->res.status));
		return conn_parent_dial(c);
	}
	/* `resolve local`: the parents get the first address. */
	if (!ok)
		return conn_fail(c, SOCKS_REP_HOST_UNREACHABLE,
			resolver_status_str(hs->res.status));
	addr_set_port(&hs->res.addrs[0], p->dst.port);
	proto_addr_from_sockaddr(&p->dst, &hs->res.addrs[0].sa);
	return conn_parent_next(c);
}

/* Sends what the handshake queued, moves to the state that waits for the
 * parent's next message and watches the parent's socket for it. */
static enum conn_step
conn_parent_exchange(struct conn *c)
{
	struct conn_parent *p = c->hs->parent;
	static const enum conn_state by_phase[] = {
		[UPSTREAM_PH_METHOD] = CONN_ST_PARENT_GREETING,
		[UPSTREAM_PH_AUTH] = CONN_ST_PARENT_AUTH,
		[UPSTREAM_PH_REPLY] = CONN_ST_PARENT_REPLY,
		[UPSTREAM_PH_SECOND] = CONN_ST_PARENT_BIND_WAIT,
		[UPSTREAM_PH_DONE] = CONN_ST_PARENT_REPLY,
	};
	enum conn_state next = by_phase[p->hs.phase];

	if (parent_hs_send(&p->hs, c->target_fd) < 0)
		return conn_parent_failed(c, strerror(errno));
	if (c->state != next)
		conn_set_state(c, next);
	if (loop_watch(c->env->loop, &c->tw, LOOP_READ | (p->hs.out_len ? LOOP_WRITE : 0)) < 0)
		return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, "epoll");
	return CONN_STEP_WAIT;
}

enum conn_step
conn_step_parent_connecting(struct conn *c)
{
	struct conn_hs *hs = c->hs;

	if (hs->dialed == DIAL_PENDING)
		return CONN_STEP_WAIT;
	if (hs->dialed != DIAL_CONNECTED)
		return conn_parent_failed(c, strerror(hs->dial_err));
	watcher_set_callback(&c->tw, conn_on_parent_io, c);
	return conn_parent_exchange(c);
}

static void
conn_on_parent_io(struct loop *loop, unsigned events, void *arg)
{
	struct conn *c = arg;
	struct conn_parent *p;

	if (c->state == CONN_ST_STOPPED || !c->hs || !c->hs->parent)
		return;
	p = c->hs->parent;
	p->fed = UPSTREAM_FEED_MORE;
	if ((events & LOOP_WRITE) && parent_hs_send(&p->hs, c->target_fd) < 0) {
		upstream_hs_eof(&p->hs);
		p->hs.res.why = strerror(errno);
		p->fed = UPSTREAM_FEED_FAILED;
	} else if (events & LOOP_READ) {
		p->fed = parent_hs_recv(&p->hs, c->target_fd);
	}
	p->io = true;
	conn_advance(c);
}

/* A socket address from a parent's BND; NULL when it names a host. */
static const union sockaddr_any *
parent_bnd(const struct socks_addr *bnd, union sockaddr_any *out)
{
	socklen_t len;

	memset(out, 0, sizeof(*out));
	if (bnd->atyp == 0 || proto_addr_to_sockaddr(bnd, &out->ss, &len) < 0)
		return NULL;
	return out;
}

/* BIND's first reply came: the client gets it, the second is awaited. */
static enum conn_step
conn_parent_bind_first(struct conn *c)
{
	struct conn_parent *p = c->hs->parent;
	union sockaddr_any bnd;
	const union sockaddr_any *b = parent_bnd(&p->hs.res.bnd, &bnd);

	parent_answered(p->st);
	p->answered = true;
	c->rep = SOCKS_REP_SUCCEEDED;
	if (conn_reply(c, SOCKS_REP_SUCCEEDED, b ? &b->sa : NULL) < 0) {
		c->end = "client gone";
		return CONN_STEP_CLOSE;
	}
	return conn_parent_exchange(c);
}

/* The parent's final answer: its REP to the client, or the relay. */
static enum conn_step
conn_parent_done(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct conn_parent *p = hs->parent;
	const struct upstream_result *res = &p->hs.res;
	union sockaddr_any bnd;
	const union sockaddr_any *b = parent_bnd(&res->bnd, &bnd);

	if (!p->answered)
		parent_answered(p->st);
	if (res->rep != SOCKS_REP_SUCCEEDED) {
		conn_target_close(c);
		return conn_fail(c, res->rep, res->why);
	}
	watcher_set_callback(&c->tw, NULL, c); /* the relay's from its start */
	if (c->cmd == SOCKS_CMD_BIND) {
		if (!b)
			b = &bnd; /* a peer named by host: 0.0.0.0:0 */
		return conn_bind_peer_relay(c, b);
	}
	/* BND as the parent said it; an HTTP parent says none: ours. */
	return conn_start_relay(c, b ? b : &hs->bnd, &hs->dial.route.egress);
}

enum conn_step
conn_step_parent(struct conn *c)
{
	struct conn_parent *p = c->hs->parent;

	if (!p->io)
		return CONN_STEP_WAIT;
	p->io = false;
	switch (p->fed) {
	case UPSTREAM_FEED_MORE:
		return conn_parent_exchange(c);
	case UPSTREAM_FEED_STEP:
		if (p->hs.phase == UPSTREAM_PH_SECOND)
			return conn_parent_bind_first(c);
		return conn_parent_exchange(c);
	case UPSTREAM_FEED_DONE:
		return conn_parent_done(c);
	case UPSTREAM_FEED_FAILED:
		break;
	}
	if (p->hs.res.parent_failed)
		return conn_parent_failed(c, p->hs.res.why);
	conn_target_close(c);
	return conn_fail(c, p->hs.res.rep, p->hs.res.why);
}

enum conn_step
conn_expire_parent(struct conn *c)
{
	return conn_parent_failed(c, "timeout");
}

enum conn_step
conn_expire_parent_bind_wait(struct conn *c)
{
	conn_target_close(c);
	return conn_fail(c, SOCKS_REP_HOST_UNREACHABLE, "bind timeout");
}
