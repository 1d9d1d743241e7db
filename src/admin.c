/*
 * admin: the answers of the control socket's commands. Each listing is
 * written a record at a time into control's fixed buffer; when one does not
 * fit, the handler returns with a cursor and control calls it again once
 * the buffer has gone out (sessions: the last id written, as they are
 * listed newest first; users and clients: the next record's place in
 * account's creation order). Records are what the daemon knows at that
 * moment: a session that ends between two parts is simply not listed.
 */
#include "admin.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account.h"
#include "addr.h"
#include "conn.h"
#include "limitset.h"
#include "log.h"
#include "loop.h"
#include "proto.h"

struct admin {
	struct loop *loop;
	struct conn_env *env;
	admin_reload_cb reload;
	void *reload_arg;
	struct timer sample; /* conn_sample_rates, every ADMIN_SAMPLE_MS */
};

static void
admin_on_sample(struct loop *loop, void *arg)
{
	struct admin *a = arg;

	conn_sample_rates(a->env);
	timer_start(loop, &a->sample, ADMIN_SAMPLE_MS);
}

struct admin *
admin_new(struct loop *loop, struct conn_env *env, admin_reload_cb reload, void *arg)
{
	struct admin *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->loop = loop;
	a->env = env;
	a->reload = reload;
	a->reload_arg = arg;
	timer_init(&a->sample, admin_on_sample, a);
	conn_sample_rates(env);
	timer_start(loop, &a->sample, ADMIN_SAMPLE_MS);
	return a;
}

void
admin_free(struct admin *a)
{
	if (!a)
		return;
	timer_stop(a->loop, &a->sample);
	free(a);
}

char *
admin_json_string(const char *s, char *out, size_t cap)
{
	size_t w = 0;

	if (cap < 3) {
		if (cap)
			out[0] = '\0';
		return out;
	}
	out[w++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		size_t n;

		if (*p == '"' || *p == '\\')
			n = (size_t)snprintf(esc, sizeof(esc), "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *p);
		else
			n = (size_t)snprintf(esc, sizeof(esc), "%c", *p);
		if (w + n + 2 > cap)
			break;
		memcpy(out + w, esc, n);
		w += n;
	}
	out[w++] = '"';
	out[w] = '\0';
	return out;
}

/* A text value: escaped as log lines are ("-" for none). */
static const char *
text_value(const char *s, char *out, size_t cap)
{
	if (!s) {
		snprintf(out, cap, "-");
		return out;
	}
	return log_escape(s, strlen(s), out, cap);
}

/* A JSON value: a string, or null for none. */
static const char *
json_value(const char *s, char *out, size_t cap)
{
	if (!s) {
		snprintf(out, cap, "null");
		return out;
	}
	return admin_json_string(s, out, cap);
}

/* --- sessions --------------------------------------------------------------- */

struct sessions_walk {
	struct control_reply *w;
	bool json;
	bool full;        /* a record did not fit */
	bool wrote;       /* one did */
	uint64_t last_id; /* the last written */
};

static int
session_record(struct control_reply *w, const struct conn_info *ci, bool json)
{
	char client[ADDR_STRLEN], user[LOG_ESCAPED_SIZE(255)], target[1100], cmd[32];
	const char *cmdname = ci->cmd ? proto_cmd_str(ci->cmd) : NULL;
	const char *(*value)(const char *, char *, size_t) = json ? json_value : text_value;

	addr_format(ci->client, client, sizeof(client));
	value(ci->user, user, sizeof(user));
	value(ci->target, target, sizeof(target));
	value(cmdname, cmd, sizeof(cmd));
	if (json)
		return control_printf(w,
			"{\"id\":%" PRIu64
			",\"client\":\"%s\",\"user\":%s,\"cmd\":%s,\"target\":%s,"
			"\"state\":\"%s\",\"up\":%" PRIu64 ",\"down\":%" PRIu64
			",\"rate_up\":%u,\"rate_down\":%u,\"age_ms\":%" PRIu64 "}\n",
			ci->id, client, user, cmd, target, ci->state, ci->up, ci->down, ci->rate_up,
			ci->rate_down, ci->age_ms);
	return control_printf(w,
		"id=%" PRIu64 " client=%s user=%s cmd=%s target=%s state=%s up=%" PRIu64
		" down=%" PRIu64 " rate_up=%u rate_down=%u age=%" PRIu64 ".%03" PRIu64 "s\n",
		ci->id, client, user, cmd, target, ci->state, ci->up, ci->down, ci->rate_up,
		ci->rate_down, ci->age_ms / 1000, ci->age_ms % 1000);
}

static bool
sessions_cb(const struct conn_info *ci, void *arg)
{
	struct sessions_walk *sw = arg;

	if (session_record(sw->w, ci, sw->json) < 0) {
		sw->full = true;
		return false;
	}
	sw->wrote = true;
	sw->last_id = ci->id;
	return true;
}

static bool
admin_sessions(struct admin *a, const struct control_request *req, struct control_reply *w,
	uint64_t *cursor)
{
	struct sessions_walk sw = { .w = w, .json = req->json };

	if (*cursor == 0) {
		control_ok(w);
		*cursor = UINT64_MAX;
	}
	conn_each_below(a->env, *cursor, sessions_cb, &sw);
	if (!sw.full)
		return true;
	if (sw.wrote)
		*cursor = sw.last_id;
	return false;
}

/* --- users and client groups ---------------------------------------------------- */

static const char *
rate_text(uint64_t bytes, char *out, size_t cap)
{
	return limitset_format_rate(bytes * 8, out, cap);
}

static void
when_text(time_t t, char *out, size_t cap)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, cap, "-");
}

/* quota=... used=... left=... period=... resets=... state=... */
static int
quota_text(char *out, size_t cap, const struct account_info *i, bool json)
{
	char amount[LIMITSET_VALUE_STRLEN], when[32];
	const struct quota_counter *q = &i->quota;

	if (!i->has_quota)
		return snprintf(out, cap,
			json ? ",\"quota\":null,\"used\":null,\"left\":null,\"period\":null,"
			       "\"resets\":null,\"state\":null"
			     : " quota=- used=- left=- period=- resets=- state=-");
	when_text(i->quota_resets, when, sizeof(when));
	if (json)
		return snprintf(out, cap,
			",\"quota\":%" PRIu64 ",\"used\":%" PRIu64 ",\"left\":%" PRIu64
			",\"period\":\"%s\",\"resets\":\"%s\",\"state\":\"%s\"",
			q->limit, q->used, quota_left(q), limitset_period_name(q->period), when,
			q->reached ? "reached" : "ok");
	return snprintf(out, cap,
		" quota=%s used=%" PRIu64 " left=%" PRIu64 " period=%s resets=%s state=%s",
		limitset_format_amount(q->limit, amount, sizeof(amount)), q->used, quota_left(q),
		limitset_period_name(q->period), when, q->reached ? "reached" : "ok");
}

static int
record_text(struct control_reply *w, const struct account_info *i, bool json)
{
	char name[LOG_ESCAPED_SIZE(255) + 8], quota[512], up[LIMITSET_VALUE_STRLEN],
		down[LIMITSET_VALUE_STRLEN];
	const char *key = i->kind == ACCOUNT_USER ? "user" : "client";
	unsigned sessions = i->kind == ACCOUNT_USER ? i->sessions : i->charged;

	quota_text(quota, sizeof(quota), i, json);
	if (json)
		return control_printf(w,
			"{\"%s\":%s,\"sessions\":%u,\"up\":%" PRIu64 ",\"down\":%" PRIu64
			",\"limit_up\":%" PRIu64 ",\"limit_down\":%" PRIu64 "%s}\n",
			key, admin_json_string(i->name, name, sizeof(name)), sessions,
			i->ended[0] + i->live[0], i->ended[1] + i->live[1], i->rate[0] * 8,
			i->rate[1] * 8, quota);
	if (i->kind == ACCOUNT_CLIENT)
		return control_printf(w, "client=%s sessions=%u limit_up=%s limit_down=%s%s\n",
			text_value(i->name, name, sizeof(name)), sessions,
			rate_text(i->rate[0], up, sizeof(up)),
			rate_text(i->rate[1], down, sizeof(down)), quota);
	return control_printf(w,
		"user=%s sessions=%u up=%" PRIu64 " down=%" PRIu64 " limit_up=%s limit_down=%s%s\n",
		text_value(i->name, name, sizeof(name)), sessions, i->ended[0] + i->live[0],
		i->ended[1] + i->live[1], rate_text(i->rate[0], up, sizeof(up)),
		rate_text(i->rate[1], down, sizeof(down)), quota);
}

/* users and clients: *cursor is 1 + the creation number of the next
 * record to write (0: the first call). */
static bool
admin_records(struct admin *a, enum account_kind kind, const struct control_request *req,
	struct control_reply *w, uint64_t *cursor)
{
	struct account_rec *r;
	struct account_info info;

	if (!a->env->acct) {
		control_error(w, "no accounting in this process");
		return true;
	}
	if (*cursor == 0) {
		control_ok(w);
		conn_live_totals(a->env);
		*cursor = 1;
	}
	for (r = account_next(a->env->acct, kind, *cursor - 1); r; r = account_rec_next(r)) {
		account_rec_info(a->env->acct, r, &info);
		if (kind == ACCOUNT_CLIENT && !info.has_quota && !info.rate[0] && !info.rate[1])
			continue;
		if (record_text(w, &info, req->json) < 0) {
			*cursor = info.seq + 1;
			return false;
		}
	}
	return true;
}

/* --- the other commands ---------------------------------------------------------------- */

static void
admin_kill(struct admin *a, const struct control_request *req, struct control_reply *w)
{
	if (!conn_kill_id(a->env, req->id)) {
		control_error(w, "no session %" PRIu64, req->id);
		return;
	}
	control_ok(w);
	(void)control_printf(w,
		req->json ? "{\"killed\":%" PRIu64 "}\n" : "killed id=%" PRIu64 "\n", req->id);
}

static void
admin_quota_reset(struct admin *a, const struct control_request *req, struct control_reply *w)
{
	enum account_kind kind = req->client ? ACCOUNT_CLIENT : ACCOUNT_USER;
	const char *what = req->client ? "client" : "user";
	char name[LOG_ESCAPED_SIZE(255) + 8];
	struct account_rec *r = a->env->acct ? account_find(a->env->acct, kind, req->name) : NULL;
	struct account_info info;

	if (r)
		account_rec_info(a->env->acct, r, &info);
	if (!r || !info.has_quota) {
		control_error(w, "no quota for %s %s", what,
			log_escape(req->name, req->name_len, name, sizeof(name)));
		return;
	}
	account_quota_reset(a->env->acct, r);
	log_info("quota reset: %s \"%s\" had used %" PRIu64 " bytes", what,
		log_escape(info.name, strlen(info.name), name, sizeof(name)), info.quota.used);
	control_ok(w);
	if (req->json)
		(void)control_printf(w, "{\"%s\":%s,\"was\":%" PRIu64 "}\n", what,
			admin_json_string(info.name, name, sizeof(name)), info.quota.used);
	else
		(void)control_printf(w, "reset %s=%s was=%" PRIu64 "\n", what,
			log_escape(info.name, strlen(info.name), name, sizeof(name)),
			info.quota.used);
}

static void
admin_reload(struct admin *a, const struct control_request *req, struct control_reply *w)
{
	char err[1024] = "";
	int rc = a->reload(a->reload_arg, err, sizeof(err));

	if (rc < 0) {
		control_error(w, "%s", err);
		return;
	}
	control_ok(w);
	(void)control_printf(w, "%s\n",
		req->json ? (rc ? "{\"reload\":\"requested\"}" : "{\"reload\":\"done\"}")
			  : (rc ? "reload requested" : "reloaded"));
}

bool
admin_handle(const struct control_request *req, struct control_reply *w, uint64_t *cursor,
	void *arg)
{
	struct admin *a = arg;

	switch (req->cmd) {
	case CONTROL_SESSIONS:
		return admin_sessions(a, req, w, cursor);
	case CONTROL_USERS:
		return admin_records(a, ACCOUNT_USER, req, w, cursor);
	case CONTROL_CLIENTS:
		return admin_records(a, ACCOUNT_CLIENT, req, w, cursor);
	case CONTROL_KILL:
		admin_kill(a, req, w);
		return true;
	case CONTROL_QUOTA_RESET:
		admin_quota_reset(a, req, w);
		return true;
	case CONTROL_RELOAD:
		admin_reload(a, req, w);
		return true;
	}
	control_error(w, "unknown command");
	return true;
}
