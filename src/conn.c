/*
 * conn: the per-client state machine. Every state is one row of a table:
 * its name, its step, what happens when its timer fires, how the client's
 * input is handled and which timer runs. Client input and every asynchronous
 * completion (lookup answered, connect finished, BIND peer arrived, relay or
 * UDP association ended, timer fired) store their result on the connection
 * and call conn_advance, which runs the state's step until one says stop;
 * only conn_advance (and accept) ever stop a connection. Once a target is
 * connected the relay module takes both fds and the handshake state is
 * freed, so an established session stays small.
 */
#include "conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bindcmd.h"
#include "config.h"
#include "conn_private.h"
#include "log.h"
#include "udpassoc.h"

struct conn_state_row {
	const char *name;
	enum conn_step (*step)(struct conn *c);   /* client input and completions */
	enum conn_step (*expire)(struct conn *c); /* the state's timer fired */
	enum conn_input input;
	enum conn_timeout timeout;
	const char *eof_end; /* end reason when the client closes; NULL: the one recorded */
	unsigned next;       /* states that may follow (bits by enum conn_state) */
};

#define ST(s) (1u << CONN_ST_##s)

#define CONN_HANDSHAKE_EOF "client closed during handshake"

/* Where a failed parent hands over: the next parent (by address, or by
 * name), or a `direct` hop (by address, by name, or BIND's listener). */
#define CONN_FAILOVER                                                                           \
	(ST(PARENT_CONNECTING) | ST(RESOLVING) | ST(CONNECTING) | ST(BIND_WAIT) | ST(CLOSING) | \
		ST(STOPPED))

static const struct conn_state_row conn_states[CONN_ST_COUNT] = {
	[CONN_ST_NEW] = { "new", conn_step_wait, NULL, CONN_IN_NONE, CONN_TO_NONE, NULL,
		ST(PROXY) | ST(GREETING) },
	[CONN_ST_PROXY] = { "proxy", conn_step_proxy, conn_expire_handshake, CONN_IN_PARSE,
		CONN_TO_HANDSHAKE, CONN_HANDSHAKE_EOF, ST(GREETING) | ST(STOPPED) },
	[CONN_ST_GREETING] = { "greeting", conn_step_greeting, conn_expire_handshake, CONN_IN_PARSE,
		CONN_TO_HANDSHAKE, CONN_HANDSHAKE_EOF,
		ST(AUTH) | ST(REQUEST) | ST(REQUEST4) | ST(CLOSING) | ST(STOPPED) },
	[CONN_ST_AUTH] = { "auth", conn_step_auth, conn_expire_handshake, CONN_IN_PARSE,
		CONN_TO_HANDSHAKE, CONN_HANDSHAKE_EOF,
		ST(AUTH_CHECK) | ST(AUTH_DELAY) | ST(CLOSING) | ST(STOPPED) },
	[CONN_ST_AUTH_CHECK] = { "auth-check", conn_step_auth_check, conn_expire_handshake,
		CONN_IN_PARSE, CONN_TO_HANDSHAKE, CONN_HANDSHAKE_EOF,
		ST(AUTH_DELAY) | ST(REQUEST) | ST(STOPPED) },
	[CONN_ST_AUTH_DELAY] = { "auth-delay", conn_step_wait, conn_expire_auth_delay, CONN_IN_NONE,
		CONN_TO_AUTH_DELAY, NULL, ST(CLOSING) | ST(STOPPED) },
	[CONN_ST_REQUEST] = { "request", conn_step_request, conn_expire_handshake, CONN_IN_PARSE,
		CONN_TO_HANDSHAKE, CONN_HANDSHAKE_EOF,
		ST(RESOLVING) | ST(CONNECTING) | ST(BIND_WAIT) | ST(UDP) | ST(PARENT_CONNECTING) |
			ST(CLOSING) | ST(STOPPED) },
	[CONN_ST_REQUEST4] = { "request4", conn_step_request4, conn_expire_handshake, CONN_IN_PARSE,
		CONN_TO_HANDSHAKE, CONN_HANDSHAKE_EOF,
		ST(RESOLVING) | ST(CONNECTING) | ST(BIND_WAIT) | ST(PARENT_CONNECTING) |
			ST(CLOSING) | ST(STOPPED) },
	/* A lookup for a parent may follow the target's (`resolve local`). */
	[CONN_ST_RESOLVING] = { "resolving", conn_step_resolving, conn_expire_resolving,
		CONN_IN_KEEP, CONN_TO_CONNECT, NULL,
		ST(CONNECTING) | ST(BIND_WAIT) | ST(RESOLVING) | ST(PARENT_CONNECTING) |
			ST(CLOSING) | ST(STOPPED) },
	[CONN_ST_CONNECTING] = { "connecting", conn_step_connecting, conn_expire_connecting,
		CONN_IN_KEEP, CONN_TO_CONNECT, NULL, ST(RELAY) | ST(CLOSING) | ST(STOPPED) },
	/* A parent that fails hands over to the next one of the list. */
	[CONN_ST_PARENT_CONNECTING] = { "parent-connecting", conn_step_parent_connecting,
		conn_expire_parent, CONN_IN_KEEP, CONN_TO_PARENT, NULL,
		ST(PARENT_GREETING) | ST(PARENT_REPLY) | CONN_FAILOVER },
	[CONN_ST_PARENT_GREETING] = { "parent-greeting", conn_step_parent, conn_expire_parent,
		CONN_IN_KEEP, CONN_TO_PARENT, NULL,
		ST(PARENT_AUTH) | ST(PARENT_REPLY) | CONN_FAILOVER },
	[CONN_ST_PARENT_AUTH] = { "parent-auth", conn_step_parent, conn_expire_parent, CONN_IN_KEEP,
		CONN_TO_PARENT, NULL, ST(PARENT_REPLY) | CONN_FAILOVER },
	[CONN_ST_PARENT_REPLY] = { "parent-reply", conn_step_parent, conn_expire_parent,
		CONN_IN_KEEP, CONN_TO_PARENT, NULL,
		ST(RELAY) | ST(PARENT_BIND_WAIT) | CONN_FAILOVER },
	[CONN_ST_PARENT_BIND_WAIT] = { "parent-bind-wait", conn_step_parent,
		conn_expire_parent_bind_wait, CONN_IN_PARSE, CONN_TO_BIND, "client closed",
		ST(RELAY) | ST(CLOSING) | ST(STOPPED) },
	[CONN_ST_BIND_WAIT] = { "bind-wait", conn_step_bind_wait, conn_expire_bind_wait,
		CONN_IN_PARSE, CONN_TO_BIND, "client closed",
		ST(RELAY) | ST(CLOSING) | ST(STOPPED) },
	[CONN_ST_UDP] = { "udp", conn_step_udp, conn_expire_interim, CONN_IN_DISCARD,
		CONN_TO_INTERIM, "client closed", ST(STOPPED) },
	[CONN_ST_RELAY] = { "relay", conn_step_relay, conn_expire_interim, CONN_IN_NONE,
		CONN_TO_INTERIM, NULL, ST(STOPPED) },
	[CONN_ST_CLOSING] = { "closing", conn_step_closing, conn_expire_closing, CONN_IN_DISCARD,
		CONN_TO_LINGER, NULL, ST(STOPPED) },
	[CONN_ST_STOPPED] = { "stopped", conn_step_wait, NULL, CONN_IN_NONE, CONN_TO_NONE, NULL,
		0 },
};

static conn_trace_cb conn_trace;
static void *conn_trace_arg;

static void conn_stop(struct conn *c);

/* --- the state table ----------------------------------------------------- */

size_t
conn_state_count(void)
{
	return CONN_ST_COUNT;
}

const char *
conn_state_name(size_t state)
{
	return state < CONN_ST_COUNT ? conn_states[state].name : "?";
}

bool
conn_state_may_follow(size_t from, size_t to)
{
	return from < CONN_ST_COUNT && to < CONN_ST_COUNT && (conn_states[from].next & (1u << to));
}

void
conn_set_trace(conn_trace_cb cb, void *arg)
{
	conn_trace = cb;
	conn_trace_arg = arg;
}

/* Absolute deadline of a state's timer entered now. */
static uint64_t
conn_deadline(const struct conn *c, enum conn_timeout kind, uint64_t now)
{
	switch (kind) {
	case CONN_TO_HANDSHAKE:
		return c->start_ms + (uint64_t)c->cfg->timeout_handshake * 1000u;
	case CONN_TO_AUTH_DELAY:
		return c->hs->auth_at_ms + CONN_AUTH_FAIL_DELAY_MS;
	case CONN_TO_CONNECT:
		return c->hs->connect_deadline_ms;
	case CONN_TO_PARENT:
		return c->hs->parent->attempt_deadline_ms;
	case CONN_TO_BIND:
		return now + (uint64_t)c->cfg->timeout_bind * 1000u;
	case CONN_TO_LINGER:
		return now + CONN_LINGER_MS;
	case CONN_TO_INTERIM:
		return c->cfg->log_interim ? now + (uint64_t)c->cfg->log_interim * 1000u : 0;
	case CONN_TO_NONE:
		break;
	}
	return 0;
}

/* The handshake states share one deadline, so a client that trickles
 * bytes cannot extend it. */
void
conn_set_state(struct conn *c, enum conn_state next)
{
	struct loop *loop = c->env->loop;
	enum conn_timeout kind = conn_states[next].timeout;
	uint64_t now = loop_now(loop), at;

	if (!conn_state_may_follow(c->state, next))
		log_warnx("conn %" PRIu64 ": %s -> %s is not in the state table", c->id,
			conn_states[c->state].name, conn_states[next].name);
	if (log_enabled(LOG_LVL_DEBUG))
		log_debug("conn %" PRIu64 ": %s -> %s", c->id, conn_states[c->state].name,
			conn_states[next].name);
	if (conn_trace)
		conn_trace(c->id, c->state, next, conn_trace_arg);
	c->state = next;
	at = kind == CONN_TO_NONE ? 0 : conn_deadline(c, kind, now);
	if (at == 0) {
		timer_stop(loop, &c->timer);
		return;
	}
	if (timer_active(&c->timer) && c->timer.deadline_ms == at)
		return;
	timer_start(loop, &c->timer, at > now ? at - now : 0);
}

void
conn_restart_timer(struct conn *c)
{
	uint64_t now = loop_now(c->env->loop),
		 at = conn_deadline(c, conn_states[c->state].timeout, now);

	if (at > now)
		timer_start(c->env->loop, &c->timer, at - now);
}

struct policy_subject
conn_subject(const struct conn *c)
{
	struct policy_subject s = {
		.id = c->id,
		.cfg = c->cfg,
		.client = &c->peer,
		.local = &c->local,
		.user = c->user,
	};
	return s;
}

/* --- output -------------------------------------------------------------- */

/* Sends queued reply bytes; leaves the rest queued. Returns -1 on error. */
static int
conn_flush(struct conn *c)
{
	while (buf_len(&c->hs->out) > 0)
		if (buf_drain(&c->hs->out, c->fd) < 0)
			return errno == EAGAIN ? 0 : -1;
	return 0;
}

/* Replies are tiny and few (method, auth status, one reply): they always
 * fit; anything else is a bug, answered by closing. */
static int
conn_queue(struct conn *c, const uint8_t *p, size_t len)
{
	if (buf_append(&c->hs->out, p, len) < 0)
		return -1;
	return conn_flush(c);
}

int
conn_queue_encoded(struct conn *c, size_t (*encode)(uint8_t out[2], uint8_t v), uint8_t v)
{
	uint8_t msg[2];
	size_t n = encode(msg, v);

	return conn_queue(c, msg, n);
}

int
conn_reply(struct conn *c, uint8_t rep, const struct sockaddr *bnd)
{
	uint8_t msg[PROTO_REPLY_MAX];
	size_t n;

	if (c->version == SOCKS4_VERSION)
		n = proto_encode_socks4_reply(msg,
			rep == SOCKS_REP_SUCCEEDED ? SOCKS4_REP_GRANTED : SOCKS4_REP_REJECTED, bnd);
	else
		n = proto_encode_reply(msg, rep, bnd);
	return conn_queue(c, msg, n);
}

enum conn_step
conn_fail(struct conn *c, uint8_t rep, const char *why)
{
	c->rep = rep;
	c->end = why;
	if (conn_reply(c, rep, NULL) < 0)
		return CONN_STEP_CLOSE;
	conn_set_state(c, CONN_ST_CLOSING);
	return CONN_STEP_AGAIN;
}

static unsigned
conn_client_mask(const struct conn *c)
{
	const struct conn_hs *hs = c->hs;
	unsigned mask = buf_len(&hs->out) ? LOOP_WRITE : 0;

	switch (conn_states[c->state].input) {
	case CONN_IN_PARSE:
	case CONN_IN_DISCARD:
		mask |= LOOP_READ;
		break;
	case CONN_IN_KEEP:
		/* Bytes the client sends early are kept for the relay (while
		 * they fit); staying registered lets the relay take the fd
		 * over with one EPOLL_CTL_MOD. A FIN is seen again by the
		 * relay (EOF is sticky), so it only stops the reading here. */
		if (!hs->client_eof && buf_space(&hs->in) > 0)
			mask |= LOOP_READ;
		break;
	case CONN_IN_NONE:
		break;
	}
	return mask;
}

/* --- the step loop and the client's input -------------------------------- */

void
conn_advance(struct conn *c)
{
	enum conn_step st;

	do {
		const struct conn_state_row *row = &conn_states[c->state];
		if (c->kill_end) {
			c->end = c->kill_end;
			st = CONN_STEP_CLOSE;
		} else if (c->hs && c->hs->client_end) {
			c->end = c->hs->client_end;
			st = CONN_STEP_CLOSE;
		} else if (c->expired) {
			c->expired = false;
			st = row->expire ? row->expire(c) : CONN_STEP_WAIT;
		} else {
			st = row->step(c);
		}
	} while (st == CONN_STEP_AGAIN);
	if (st == CONN_STEP_CLOSE) {
		conn_stop(c);
		return;
	}
	if (c->state == CONN_ST_STOPPED || !c->hs)
		return; /* the relay watches both fds now */
	if (loop_watch(c->env->loop, &c->cw, conn_client_mask(c)) < 0) {
		log_warn("conn %" PRIu64 ": epoll_ctl", c->id);
		c->end = "epoll";
		conn_stop(c);
	}
}

/* Reads what the state takes from the client; records an end of input
 * that ends the session in hs->client_end. */
static void
conn_read_client(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	const struct conn_state_row *row = &conn_states[c->state];
	uint8_t sink[512];
	ssize_t n;

	switch (row->input) {
	case CONN_IN_PARSE:
		n = buf_fill(&hs->in, c->fd);
		if (n == 0)
			hs->client_end = row->eof_end;
		else if (n < 0 && errno != EAGAIN)
			hs->client_end = errno == ENOBUFS ? "handshake too large" : strerror(errno);
		break;
	case CONN_IN_KEEP:
		n = buf_space(&hs->in) ? buf_fill(&hs->in, c->fd) : -1;
		if (n == 0)
			hs->client_eof = true;
		else if (n < 0 && errno != EAGAIN && buf_space(&hs->in))
			hs->client_end = strerror(errno);
		break;
	case CONN_IN_DISCARD:
		n = read(c->fd, sink, sizeof(sink));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			hs->client_end = row->eof_end ? row->eof_end : c->end;
		break;
	case CONN_IN_NONE:
		break;
	}
}

static void
conn_on_client(struct loop *loop, unsigned events, void *arg)
{
	struct conn *c = arg;

	if (c->state == CONN_ST_STOPPED || !c->hs)
		return;
	if ((events & LOOP_WRITE) && conn_flush(c) < 0)
		c->hs->client_end = "client gone";
	else if (events & LOOP_READ)
		conn_read_client(c);
	conn_advance(c);
}

static void
conn_on_timer(struct loop *loop, void *arg)
{
	struct conn *c = arg;

	c->expired = true;
	conn_advance(c);
}

/* --- handshake steps ----------------------------------------------------- */

/* --- steps of every phase ------------------------------------------------- */

enum conn_step
conn_step_wait(struct conn *c)
{
	return CONN_STEP_WAIT;
}

enum conn_step
conn_step_closing(struct conn *c)
{
	/* Everything queued is sent: stop writing, wait for EOF. */
	if (buf_len(&c->hs->out) == 0 && shutdown(c->fd, SHUT_WR) < 0)
		return CONN_STEP_CLOSE;
	return CONN_STEP_WAIT;
}

enum conn_step
conn_expire_closing(struct conn *c)
{
	return CONN_STEP_CLOSE;
}

/* --- lifecycle ----------------------------------------------------------- */

static void
conn_free(void *arg)
{
	struct conn *c = arg;

	config_unref(c->cfg);
	conn_hs_free(c->hs);
	free(c->user);
	free(c->target);
	free(c);
}

void
conn_hs_free(struct conn_hs *hs)
{
	if (hs)
		free(hs->parent);
	free(hs);
}

/* What the session line and the interim line say. */
static struct stats_session
conn_session_stats(const struct conn *c)
{
	struct stats_session s = {
		.id = c->id,
		.version = c->version,
		.cmd = c->cmd,
		.rep = c->rep,
		.client = &c->peer,
		.user = c->user,
		.target = c->target,
		.end = c->end ? c->end : "protocol error",
		.duration_ms = loop_now(c->env->loop) - c->start_ms,
		.udp = c->udp ? udpassoc_get_stats(c->udp) : NULL,
	};

	conn_bytes(c, &s.up, &s.down);
	return s;
}

static void
conn_log_end(struct conn *c)
{
	struct stats_session s = conn_session_stats(c);

	stats_session_end(&c->env->stats, &s, true);
}

enum conn_step
conn_expire_interim(struct conn *c)
{
	struct stats_session s = conn_session_stats(c);

	stats_session_interim(&s);
	conn_restart_timer(c);
	return CONN_STEP_WAIT;
}

void
conn_bytes(const struct conn *c, uint64_t *up, uint64_t *down)
{
	if (c->udp) {
		const struct udpassoc_stats *u = udpassoc_get_stats(c->udp);
		*up = u->bytes_up;
		*down = u->bytes_down;
		return;
	}
	*up = c->relay.dir[RELAY_UP].bytes;
	*down = c->relay.dir[RELAY_DOWN].bytes;
}

/* Unregisters and closes everything the connection holds, gives back its
 * limits' slots and queues its release: events of this batch may still
 * name it. */
static void
conn_stop(struct conn *c)
{
	struct conn_env *env = c->env;
	struct policy_subject s = conn_subject(c);

	if (c->state == CONN_ST_STOPPED)
		return;
	if (c->state == CONN_ST_RELAY)
		relay_stop(&c->relay);
	if (c->state == CONN_ST_CONNECTING || c->state == CONN_ST_PARENT_CONNECTING)
		dial_stop(&c->hs->dial);
	if (c->state == CONN_ST_AUTH_CHECK)
		pwcheck_cancel(&c->hs->pwjob);
	if (!c->quiet)
		conn_log_end(c);
	if (c->acct_user) {
		uint64_t up, down;
		conn_bytes(c, &up, &down);
		account_user_ended(c->acct_user, up, down);
	}
	account_session_stop(c->meter);
	c->meter = NULL;
	conn_set_state(c, CONN_ST_STOPPED);
	if (c->hs && c->hs->query) {
		resolver_cancel(c->hs->query);
		c->hs->query = NULL;
	}
	conn_target_close(c);
	bindcmd_stop(c->bind);
	c->bind = NULL;
	udpassoc_stop(c->udp);
	c->udp = NULL;
	if (c->fd >= 0) {
		loop_unwatch_closing(env->loop, &c->cw);
		close(c->fd);
		c->fd = -1;
	}
	LIST_REMOVE(c, link);
	policy_forget(&env->policy, &s, c->ip_counted, c->user_counted);
	env->stats.active--;
	if (c->cmd && c->cmd < STATS_CMD_SLOTS)
		env->stats.active_by_cmd[c->cmd]--;
	loop_release(env->loop, &c->rel, conn_free, c);
	if (env->stats.active == 0 && env->on_empty)
		env->on_empty(env->on_empty_arg);
}

static bool
conn_proxy_source_allowed(const struct conn *c)
{
	for (size_t i = 0; i < c->cfg->nproxy_from; i++)
		if (acl_cidr_match(&c->cfg->proxy_from[i], &c->peer))
			return true;
	return false;
}

/* The connection and its handshake state (its buffers and address list
 * are written before they are read: only the rest is cleared). */
static struct conn *
conn_new(struct conn_env *env, int fd, const union sockaddr_any *peer,
	const union sockaddr_any *local)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct conn_hs *hs;

	if (!c || !(c->hs = hs = malloc(sizeof(*c->hs)))) {
		free(c);
		return NULL;
	}
	memset(hs, 0, offsetof(struct conn_hs, req));
	buf_init(&hs->in, hs->in_data, sizeof(hs->in_data));
	buf_init(&hs->out, hs->out_data, sizeof(hs->out_data));
	hs->bind_fd = -1;
	c->env = env;
	c->cfg = config_ref(env->cfg);
	c->id = env->id_base + 1 + env->next_id++ * (env->id_step ? env->id_step : 1);
	c->fd = fd;
	c->target_fd = -1;
	c->peer = *peer;
	c->local = *local;
	addr_unmap(&c->peer);
	c->rep = STATS_REP_NONE;
	c->version = SOCKS_VERSION;
	c->start_ms = loop_now(env->loop);
	watcher_init(&c->cw, fd, conn_on_client, c);
	timer_init(&c->timer, conn_on_timer, c);
	return c;
}

void
conn_accept(struct conn_env *env, int fd, const union sockaddr_any *peer,
	const union sockaddr_any *local, bool proxy_protocol)
{
	static struct log_ratelimit rl;
	struct conn *c;

	if (env->cfg->max_connections && env->stats.active >= env->cfg->max_connections) {
		/* Accepted and closed at once: a client waiting in the backlog
		 * would only time out later. */
		env->stats.limit_refusals++;
		if (log_ratelimit_ok(&rl, loop_now(env->loop), 1000, 1))
			log_info("max-connections %u reached: refusing new connections",
				env->cfg->max_connections);
		close(fd);
		return;
	}
	if (!(c = conn_new(env, fd, peer, local))) {
		log_warnx("out of memory: dropping a new connection");
		close(fd);
		return;
	}
	LIST_INSERT_HEAD(&env->conns, c, link);
	env->stats.accepted++;
	env->stats.active++;
	conn_set_state(c, proxy_protocol ? CONN_ST_PROXY : CONN_ST_GREETING);
	if (proxy_protocol && !conn_proxy_source_allowed(c)) {
		env->stats.proxy_rejects++;
		c->end = "not an allowed PROXY protocol source";
		conn_stop(c);
		return;
	}
	if (!proxy_protocol && !conn_admit(c)) {
		conn_stop(c);
		return;
	}
	conn_advance(c);
}

void
conn_stop_all(struct conn_env *env)
{
	struct conn *c;

	while ((c = LIST_FIRST(&env->conns))) {
		c->end = "shutdown";
		conn_stop(c);
	}
}

/* --- what other modules ask of the sessions ------------------------------ */

static void
conn_kill(struct conn *c, const char *why)
{
	if (c->state == CONN_ST_STOPPED)
		return;
	c->kill_end = why;
	conn_advance(c);
}

/* A quota whose action is close was reached: the sessions charged to it
 * end (new requests are refused by account_admit). */
static void
conn_on_quota_reached(struct account_rec *r, void *arg)
{
	struct conn_env *env = arg;
	struct conn *c, *next;

	for (c = LIST_FIRST(&env->conns); c; c = next) {
		next = LIST_NEXT(c, link);
		if (account_session_uses(c->meter, r))
			conn_kill(c, "quota reached");
	}
}

void
conn_env_set_account(struct conn_env *env, struct account *acct)
{
	env->acct = acct;
	if (acct)
		account_set_reached_cb(acct, conn_on_quota_reached, env);
}

bool
conn_kill_id(struct conn_env *env, uint64_t id)
{
	struct conn *c;

	LIST_FOREACH(c, &env->conns, link)
	if (c->id == id) {
		conn_kill(c, "killed");
		return true;
	}
	return false;
}

void
conn_each_below(struct conn_env *env, uint64_t below, conn_info_cb cb, void *arg)
{
	uint64_t now = loop_now(env->loop);
	struct conn_info ci;
	struct conn *c;

	/* The list is newest first (inserted at the head at accept). */
	LIST_FOREACH(c, &env->conns, link)
	{
		if (c->id >= below)
			continue;
		memset(&ci, 0, sizeof(ci));
		ci.id = c->id;
		ci.client = &c->peer;
		ci.user = c->user;
		ci.target = c->target;
		ci.cmd = c->cmd;
		ci.state = conn_states[c->state].name;
		conn_bytes(c, &ci.up, &ci.down);
		ci.rate_up = c->rate[0];
		ci.rate_down = c->rate[1];
		ci.age_ms = now - c->start_ms;
		if (!cb(&ci, arg))
			return;
	}
}

void
conn_sample_rates(struct conn_env *env)
{
	uint64_t now = loop_now(env->loop), dt = now - env->rates_at_ms;
	struct conn *c;

	env->rates_at_ms = now;
	LIST_FOREACH(c, &env->conns, link)
	{
		uint64_t b[2];
		conn_bytes(c, &b[0], &b[1]);
		for (int d = 0; d < 2; d++) {
			uint64_t r = dt ? (b[d] - c->rate_bytes[d]) * 1000 / dt : 0;
			c->rate[d] = r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
			c->rate_bytes[d] = b[d];
		}
	}
}

void
conn_live_totals(struct conn_env *env)
{
	uint64_t up = 0, down = 0;
	struct conn *c;

	if (env->acct)
		account_live_reset(env->acct);
	LIST_FOREACH(c, &env->conns, link)
	{
		uint64_t u, d;
		conn_bytes(c, &u, &d);
		up += u;
		down += d;
		if (c->acct_user)
			account_live_add(c->acct_user, u, d);
	}
	env->stats.live_up = up;
	env->stats.live_down = down;
}

void
conn_env_init(struct conn_env *env, struct loop *loop, struct config *cfg,
	struct resolver *resolver, struct connlimit *limits)
{
	memset(env, 0, sizeof(*env));
	env->loop = loop;
	env->cfg = cfg;
	env->resolver = resolver;
	env->policy.limits = limits;
	env->policy.stats = &env->stats;
	parents_init(&env->parents);
	LIST_INIT(&env->conns);
}

void
conn_env_free(struct conn_env *env)
{
	parents_free(&env->parents);
}
