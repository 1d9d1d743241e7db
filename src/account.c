/*
 * account: records of users, client groups and rated rules, the sessions
 * charged to them, and the quota counters' life (periods, state file).
 *
 * Records live in one hash table (SipHash, keyed: client groups are the
 * clients' choice) and, per kind, a list in creation order (metrics export
 * the first users, ctl lists in that order). User records stay until the
 * end (their totals are counters); a client group's stays while sessions
 * or a quota's usage need it; a rule's while sessions use it. Buckets of a
 * record that goes are freed after the loop's batch, as a wakeup of theirs
 * may be under way.
 *
 * A quota that is reached is acted on at once for new requests and for
 * reads (its "after" buckets close, or take the then-rate), and its record
 * is queued for the owner's callback, which runs from a timer: closing
 * sessions from inside a charge (inside their relay's read) is not safe.
 */
#include "account.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "limitset.h"
#include "log.h"
#include "loop.h"
#include "siphash.h"

#define ACCOUNT_KINDS 3
/* A state file larger than this is not ours. */
#define ACCOUNT_STATE_MAX ((size_t)64 << 20)
#define ACCOUNT_STATE_ENTRIES_MAX ((size_t)1 << 20)

struct account_rec {
	enum account_kind kind;
	struct account_rec *hnext;      /* hash chain */
	TAILQ_ENTRY(account_rec) order; /* a->list[kind], creation order */
	uint64_t hash;
	uint64_t seq;
	unsigned refs; /* sessions charged to it */
	struct release rel;
	char *name;
	union sockaddr_any addr;   /* a client group's address (masked) */
	struct account_buckets *b; /* made when a limit or quota needs them */
	bool has_quota;
	bool reach_logged; /* "quota reached" said this period */
	bool reach_queued; /* on a->reach_head */
	struct account_rec *reach_next;
	struct quota_counter quota;
	uint64_t ended[2]; /* users: ended sessions' bytes */
	uint64_t live[2];  /* users: running sessions' bytes */
	unsigned live_sessions;
};

/* A record's buckets: most users have no limit of their own, and a user
 * record is made for every user who logs in (their totals). */
struct account_buckets {
	struct shaper_bucket rate[2];  /* the scope's shared rate */
	struct shaper_bucket after[2]; /* the quota's then-rate, or closed */
};

TAILQ_HEAD(account_list, account_rec);

struct account {
	struct loop *loop;
	uint8_t key[SIPHASH_KEY_LEN];
	struct config *cfg; /* the newest configuration (ref) */
	struct account_rec **tab;
	size_t tabsize, count, nclients;
	struct account_list list[ACCOUNT_KINDS];
	uint64_t seq[ACCOUNT_KINDS];
	struct timer tick;        /* quota periods and saving */
	uint64_t saved_ms;        /* loop time of the last save */
	bool dirty;               /* counters changed since the last save */
	bool save_failed;         /* the last save failed (logged once) */
	pid_t writer;             /* the state file's writer process, 0: none */
	struct timer reach_timer; /* runs reached_cb for the queued records */
	struct account_rec *reach_head;
	account_reached_cb reached_cb;
	void *reached_arg;
};

struct account_session {
	struct relay_throttle throttle; /* first: the relay's handle on us */
	struct account *a;
	struct shaper_flow flow[2];
	struct shaper_bucket own[2]; /* limit session rate */
	bool has_own;
	struct account_rec *rec[3]; /* user, client, rule; NULL where none */
	account_resume_cb resume;
	void *arg;
};

static void account_tick(struct loop *loop, void *arg);
static void rec_reached(struct account *a, struct account_rec *r);
static void account_run_reached(struct loop *loop, void *arg);
static void rec_configure(struct account *a, struct account_rec *r);

/* --- the table -------------------------------------------------------------- */

static uint64_t
rec_hash(const struct account *a, enum account_kind kind, const char *name)
{
	uint8_t key[SIPHASH_KEY_LEN];

	/* Each kind hashes under a key of its own. */
	memcpy(key, a->key, sizeof(key));
	key[0] ^= (uint8_t)(kind + 1);
	return siphash24(key, name, strlen(name));
}

static struct account_rec *
rec_lookup(const struct account *a, enum account_kind kind, const char *name)
{
	uint64_t h;

	if (!a->tabsize)
		return NULL;
	h = rec_hash(a, kind, name);
	for (struct account_rec *r = a->tab[h & (a->tabsize - 1)]; r; r = r->hnext)
		if (r->hash == h && r->kind == kind && strcmp(r->name, name) == 0)
			return r;
	return NULL;
}

static int
tab_grow(struct account *a)
{
	size_t size = a->tabsize ? a->tabsize * 2 : 64;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers. */
	struct account_rec **tab = calloc(size, sizeof(*tab));

	if (!tab)
		return -1;
	for (size_t i = 0; i < a->tabsize; i++)
		while (a->tab[i]) {
			struct account_rec *r = a->tab[i];
			a->tab[i] = r->hnext;
			r->hnext = tab[r->hash & (size - 1)];
			tab[r->hash & (size - 1)] = r;
		}
	free(a->tab);
	a->tab = tab;
	a->tabsize = size;
	return 0;
}

static struct account_rec *
rec_new(struct account *a, enum account_kind kind, const char *name, const union sockaddr_any *addr)
{
	struct account_rec *r;

	if (kind == ACCOUNT_CLIENT && a->nclients >= ACCOUNT_CLIENTS_MAX)
		return NULL;
	if (a->count >= a->tabsize && tab_grow(a) < 0)
		return NULL;
	if (!(r = calloc(1, sizeof(*r))) || !(r->name = strdup(name))) {
		free(r);
		return NULL;
	}
	r->kind = kind;
	r->hash = rec_hash(a, kind, name);
	r->seq = a->seq[kind]++;
	if (addr)
		r->addr = *addr;
	r->hnext = a->tab[r->hash & (a->tabsize - 1)];
	a->tab[r->hash & (a->tabsize - 1)] = r;
	TAILQ_INSERT_TAIL(&a->list[kind], r, order);
	a->count++;
	a->nclients += kind == ACCOUNT_CLIENT;
	rec_configure(a, r);
	return r;
}

static void
rec_free(void *arg)
{
	struct account_rec *r = arg;

	free(r->name);
	free(r->b);
	free(r);
}

/* Out of the table now, memory after the batch. */
static void
rec_remove(struct account *a, struct account_rec *r)
{
	struct account_rec **pp = &a->tab[r->hash & (a->tabsize - 1)];

	while (*pp != r)
		pp = &(*pp)->hnext;
	*pp = r->hnext;
	TAILQ_REMOVE(&a->list[r->kind], r, order);
	a->count--;
	a->nclients -= r->kind == ACCOUNT_CLIENT;
	for (int d = 0; d < 2 && r->b; d++) {
		shaper_bucket_stop(&r->b->rate[d]);
		shaper_bucket_stop(&r->b->after[d]);
	}
	loop_release(a->loop, &r->rel, rec_free, r);
}

/* A client group: the address itself (IPv4), or its first ipv6-prefix
 * bits; *name is what it is called. */
static void
client_group(const struct account *a, const union sockaddr_any *client, union sockaddr_any *g,
	char *name, size_t cap)
{
	unsigned prefix = a->cfg->ipv6_prefix ? a->cfg->ipv6_prefix : 128;
	char ip[INET6_ADDRSTRLEN];

	memset(g, 0, sizeof(*g));
	if (client->sa.sa_family == AF_INET6) {
		g->sin6.sin6_family = AF_INET6;
		for (unsigned i = 0; i < 16; i++) {
			unsigned keep = prefix >= 8 * (i + 1) ? 8
				: prefix > 8 * i              ? prefix - 8 * i
							      : 0;
			g->sin6.sin6_addr.s6_addr[i] = client->sin6.sin6_addr.s6_addr[i] &
				(uint8_t)(0xff00u >> keep);
		}
		inet_ntop(AF_INET6, &g->sin6.sin6_addr, ip, sizeof(ip));
		if (prefix < 128)
			snprintf(name, cap, "%s/%u", ip, prefix);
		else
			snprintf(name, cap, "%s", ip);
		return;
	}
	g->sin.sin_family = AF_INET;
	g->sin.sin_addr = client->sin.sin_addr;
	inet_ntop(AF_INET, &g->sin.sin_addr, ip, sizeof(ip));
	snprintf(name, cap, "%s", ip);
}

static struct account_rec *
client_rec(struct account *a, const union sockaddr_any *client, bool create)
{
	char name[INET6_ADDRSTRLEN + 8];
	union sockaddr_any g;
	struct account_rec *r;

	if (client->sa.sa_family != AF_INET && client->sa.sa_family != AF_INET6)
		return NULL;
	client_group(a, client, &g, name, sizeof(name));
	r = rec_lookup(a, ACCOUNT_CLIENT, name);
	return r || !create ? r : rec_new(a, ACCOUNT_CLIENT, name, &g);
}

/* --- configuration ----------------------------------------------------------- */

static void
set_rates(struct shaper_bucket b[2], const struct limitset_rate *rate)
{
	shaper_bucket_set_rate(&b[0], rate ? shaper_rate_from_bits(rate->up) : 0);
	shaper_bucket_set_rate(&b[1], rate ? shaper_rate_from_bits(rate->down) : 0);
}

/* r's buckets, made (all unlimited) when first needed; NULL when out of
 * memory (the record then limits nothing). */
static struct account_buckets *
rec_buckets(struct account *a, struct account_rec *r)
{
	if (r->b || !(r->b = calloc(1, sizeof(*r->b))))
		return r->b;
	for (int d = 0; d < 2; d++) {
		shaper_bucket_init(&r->b->rate[d], a->loop, 0);
		shaper_bucket_init(&r->b->after[d], a->loop, 0);
	}
	return r->b;
}

/* The scope's shared rate (NULL: unlimited); buckets are made only for a
 * rate that limits something. */
static void
rec_set_rate(struct account *a, struct account_rec *r, const struct limitset_rate *rate)
{
	if (rate && !rate->up && !rate->down)
		rate = NULL;
	if (rate ? rec_buckets(a, r) != NULL : r->b != NULL)
		set_rates(r->b->rate, rate);
}

/* The after buckets as the quota's state says: open and unlimited before
 * it is reached; then closed, or at the then-rate. */
static void
rec_apply_quota(struct account_rec *r)
{
	bool reached = r->has_quota && r->quota.reached;

	if (!r->b)
		return;
	for (int d = 0; d < 2; d++)
		shaper_bucket_set_closed(&r->b->after[d], reached && !r->quota.then_rate);
	set_rates(r->b->after, reached && r->quota.then_rate ? &r->quota.after : NULL);
}

static int64_t
rec_period_now(const struct account *a, const struct account_rec *r)
{
	return quota_period_id(r->quota.period, time(NULL), a->cfg->limits->tz_min);
}

static void
rec_set_quota(struct account *a, struct account_rec *r, const struct limitset_line *ln)
{
	bool had = r->has_quota, was_reached = r->has_quota && r->quota.reached;
	enum limitset_period was = r->quota.period;

	r->has_quota = ln && ln->quota.bytes && rec_buckets(a, r);
	if (!r->has_quota) {
		rec_apply_quota(r);
		return;
	}
	r->quota.limit = ln->quota.bytes;
	r->quota.period = ln->quota.period;
	r->quota.then_rate = ln->quota.then_rate;
	r->quota.after = ln->quota.after;
	if (had && was != r->quota.period)
		r->quota.period_id = INT64_MIN; /* another kind of period: from zero */
	if (quota_roll(&r->quota, rec_period_now(a, r)))
		r->reach_logged = false;
	quota_set_used(&r->quota, r->quota.used);
	/* A smaller quota than what was used already: reached now, and acted
	 * on as when a read reaches it. */
	if (!was_reached && r->quota.reached)
		rec_reached(a, r);
	else
		rec_apply_quota(r);
}

static void
rec_configure(struct account *a, struct account_rec *r)
{
	const struct limitset *l = a->cfg->limits;
	struct limitset_match m;

	switch (r->kind) {
	case ACCOUNT_USER:
		limitset_match(l, r->name, NULL, 0, &m);
		rec_set_rate(a, r, m.user_rate ? &m.user_rate->rate : NULL);
		rec_set_quota(a, r, m.user_quota);
		break;
	case ACCOUNT_CLIENT:
		limitset_match(l, NULL, &r->addr, 0, &m);
		rec_set_rate(a, r, m.client_rate ? &m.client_rate->rate : NULL);
		rec_set_quota(a, r, m.client_quota);
		break;
	case ACCOUNT_RULE:
		/* A rule no longer in the file keeps its rate for the
		 * sessions it allowed. */
		for (size_t i = 0; i < l->nrules; i++)
			if (strcmp(l->rules[i].key, r->name) == 0)
				rec_set_rate(a, r, &l->rules[i].rate);
		break;
	}
}

void
account_configure(struct account *a, const struct config *cfg)
{
	struct config *old = a->cfg;

	a->cfg = config_ref((struct config *)(uintptr_t)cfg);
	config_unref(old);
	for (int k = 0; k < ACCOUNT_KINDS; k++) {
		struct account_rec *r;
		TAILQ_FOREACH(r, &a->list[k], order)
		rec_configure(a, r);
	}
	if (limitset_have_quota(cfg->limits) && !timer_active(&a->tick))
		timer_start(a->loop, &a->tick, ACCOUNT_TICK_MS);
}

/* --- quotas --------------------------------------------------------------------- */

static const char *
rec_what(const struct account_rec *r)
{
	return r->kind == ACCOUNT_USER ? "user" : r->kind == ACCOUNT_CLIENT ? "client" : "rule";
}

static void
rec_log_reached(const struct account *a, struct account_rec *r)
{
	char esc[LOG_ESCAPED_SIZE(255)], amount[LIMITSET_VALUE_STRLEN], when[32];
	char up[LIMITSET_VALUE_STRLEN], down[LIMITSET_VALUE_STRLEN];
	time_t end = quota_period_end(r->quota.period, r->quota.period_id, a->cfg->limits->tz_min);
	struct tm tm;

	if (r->reach_logged)
		return;
	r->reach_logged = true;
	if (!gmtime_r(&end, &tm) || !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(when, sizeof(when), "-");
	log_escape(r->name, strlen(r->name), esc, sizeof(esc));
	limitset_format_amount(r->quota.limit, amount, sizeof(amount));
	if (r->quota.then_rate)
		log_info("quota reached: %s \"%s\" used %s this %s (until %s); its sessions are "
			 "limited to %s up, %s down",
			rec_what(r), esc, amount, limitset_period_name(r->quota.period), when,
			limitset_format_rate(r->quota.after.up, up, sizeof(up)),
			limitset_format_rate(r->quota.after.down, down, sizeof(down)));
	else
		log_info("quota reached: %s \"%s\" used %s this %s (until %s); its sessions are "
			 "closed and new requests refused",
			rec_what(r), esc, amount, limitset_period_name(r->quota.period), when);
}

/* r's quota was just reached. */
static void
rec_reached(struct account *a, struct account_rec *r)
{
	rec_apply_quota(r);
	rec_log_reached(a, r);
	if (r->quota.then_rate || r->reach_queued)
		return;
	r->reach_queued = true;
	r->reach_next = a->reach_head;
	a->reach_head = r;
	timer_start(a->loop, &a->reach_timer, 0);
}

static void
account_run_reached(struct loop *loop, void *arg)
{
	struct account *a = arg;
	struct account_rec *r;

	while ((r = a->reach_head)) {
		a->reach_head = r->reach_next;
		r->reach_queued = false;
		if (a->reached_cb && r->has_quota && r->quota.reached)
			a->reached_cb(r, a->reached_arg);
	}
}

static void
rec_charge(struct account *a, struct account_rec *r, size_t n)
{
	if (!r || !r->has_quota)
		return;
	a->dirty = true;
	if (quota_add(&r->quota, n))
		rec_reached(a, r);
}

void
account_quota_reset(struct account *a, struct account_rec *r)
{
	quota_set_used(&r->quota, 0);
	r->reach_logged = false;
	a->dirty = true;
	rec_apply_quota(r);
}

/* --- the state file ----------------------------------------------------------------- */

static void
state_add_rec(struct quota_writer *w, const struct account_rec *r)
{
	struct quota_entry e;

	if (!r->has_quota || r->quota.used == 0)
		return;
	memset(&e, 0, sizeof(e));
	e.scope = r->kind == ACCOUNT_USER ? 'u' : 'c';
	e.name_len = strlen(r->name);
	if (e.name_len > QUOTA_NAME_MAX)
		return;
	memcpy(e.name, r->name, e.name_len);
	e.period = r->quota.period;
	e.period_id = r->quota.period_id;
	e.used = r->quota.used;
	quota_state_add(w, &e);
}

/* Writes the counters (wait: here and now; else in a child, unless the
 * last one still writes). */
static void
account_save(struct account *a, bool wait)
{
	struct quota_writer w;
	struct account_rec *r;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if (!quota_state_reap(&a->writer, wait))
		return;
	if (!(f = open_memstream(&text, &len))) {
		log_warn("quota state");
		return;
	}
	quota_state_begin(&w, f);
	for (int k = ACCOUNT_USER; k <= ACCOUNT_CLIENT; k++)
		TAILQ_FOREACH(r, &a->list[k], order)
	state_add_rec(&w, r);
	quota_state_end(&w);
	if (fclose(f) != 0) {
		log_warn("quota state");
		free(text);
		return;
	}
	if (quota_state_save(a->cfg->state_dir, text, len, wait ? NULL : &a->writer) < 0) {
		if (!a->save_failed)
			log_warn("quota state: saving %s/%s", a->cfg->state_dir, QUOTA_STATE_FILE);
		a->save_failed = true;
	} else {
		a->dirty = false;
		a->save_failed = false;
	}
	a->saved_ms = loop_now(a->loop);
	free(text);
}

/* A loaded counter: kept when the configuration still has that quota,
 * for the same kind of period, and its period is the current one. */
static void
state_load_entry(const struct quota_entry *e, void *arg)
{
	struct account *a = arg;
	struct account_rec *r = NULL;
	union sockaddr_any addr;
	char *slash;
	char ip[QUOTA_NAME_MAX + 1];

	struct limitset_match m;

	/* Only what the configuration still has a quota for gets a record. */
	if (e->scope == 'u') {
		limitset_match(a->cfg->limits, e->name, NULL, 0, &m);
		if (m.user_quota && m.user_quota->quota.bytes)
			r = account_user(a, e->name);
	} else {
		snprintf(ip, sizeof(ip), "%s", e->name);
		if ((slash = strchr(ip, '/')))
			*slash = '\0';
		if (addr_parse(ip, 0, &addr) < 0)
			return;
		limitset_match(a->cfg->limits, NULL, &addr, 0, &m);
		if (m.client_quota && m.client_quota->quota.bytes)
			r = client_rec(a, &addr, true);
	}
	if (!r || !r->has_quota || r->quota.period != e->period)
		return;
	if (e->period_id != rec_period_now(a, r))
		return;
	r->quota.period_id = e->period_id;
	quota_set_used(&r->quota, e->used);
	rec_apply_quota(r);
	if (r->quota.reached)
		rec_log_reached(a, r);
}

/* Keeps a damaged file for whoever wants to look, out of the next save's
 * way. */
static void
state_set_aside(const char *path)
{
	char aside[PATH_MAX + 64];

	snprintf(aside, sizeof(aside), "%s.corrupt", path);
	if (rename(path, aside) == 0)
		log_warnx("quota state: kept the damaged file as %s", aside);
}

static char *
state_read(const char *path, size_t *len)
{
	struct stat st;
	char *text = NULL;
	ssize_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > ACCOUNT_STATE_MAX ||
		!(text = malloc((size_t)st.st_size + 1))) {
		int err = errno;
		if (!text && fstat(fd, &st) == 0)
			err = !S_ISREG(st.st_mode)                       ? EINVAL
				: (size_t)st.st_size > ACCOUNT_STATE_MAX ? EFBIG
									 : ENOMEM;
		close(fd);
		errno = err;
		return NULL;
	}
	*len = 0;
	while (*len < (size_t)st.st_size &&
		((n = read(fd, text + *len, (size_t)st.st_size - *len)) > 0 ||
			(n < 0 && errno == EINTR)))
		*len += n > 0 ? (size_t)n : 0;
	close(fd);
	if (n < 0) {
		free(text);
		return NULL;
	}
	return text;
}

static void
account_load(struct account *a)
{
	char path[PATH_MAX + 32];
	enum quota_state_status st;
	size_t len = 0, line = 0;
	char *text;

	snprintf(path, sizeof(path), "%s/%s", a->cfg->state_dir, QUOTA_STATE_FILE);
	errno = 0;
	if (!(text = state_read(path, &len))) {
		if (errno == ENOENT)
			log_info("quota state: no %s yet; counting starts from zero", path);
		else
			log_warn("quota state: %s; counting starts from zero", path);
		return;
	}
	st = quota_state_parse(text, len, ACCOUNT_STATE_ENTRIES_MAX, state_load_entry, a, &line);
	free(text);
	if (st != QUOTA_STATE_OK) {
		log_warnx("quota state: %s:%zu: %s; counting starts from zero", path, line,
			quota_state_status_str(st));
		state_set_aside(path);
		return;
	}
	log_info("quota state: read %s", path);
}

/* Client groups no session and no quota usage needs any more. */
static void
account_trim_clients(struct account *a)
{
	struct account_rec *r, *next;

	for (r = TAILQ_FIRST(&a->list[ACCOUNT_CLIENT]); r; r = next) {
		next = TAILQ_NEXT(r, order);
		if (r->refs == 0 && (!r->has_quota || r->quota.used == 0))
			rec_remove(a, r);
	}
}

static void
account_tick(struct loop *loop, void *arg)
{
	struct account *a = arg;
	struct account_rec *r;

	for (int k = ACCOUNT_USER; k <= ACCOUNT_CLIENT; k++)
		TAILQ_FOREACH(r, &a->list[k], order)
		{
			if (!r->has_quota || !quota_roll(&r->quota, rec_period_now(a, r)))
				continue;
			/* A new period: from zero, and whatever was closed opens. */
			r->reach_logged = false;
			a->dirty = true;
			rec_apply_quota(r);
		}
	account_trim_clients(a);
	if (a->dirty && loop_now(loop) - a->saved_ms >= ACCOUNT_SAVE_EVERY_MS)
		account_save(a, false);
	else
		(void)quota_state_reap(&a->writer, false);
	if (limitset_have_quota(a->cfg->limits) || a->dirty || a->writer)
		timer_start(loop, &a->tick, ACCOUNT_TICK_MS);
}

/* --- the table's life ------------------------------------------------------------------ */

struct account *
account_new(struct loop *loop, const struct config *cfg, const uint8_t key[16])
{
	struct account *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->loop = loop;
	memcpy(a->key, key, SIPHASH_KEY_LEN);
	for (int k = 0; k < ACCOUNT_KINDS; k++)
		TAILQ_INIT(&a->list[k]);
	timer_init(&a->tick, account_tick, a);
	timer_init(&a->reach_timer, account_run_reached, a);
	a->cfg = config_ref((struct config *)(uintptr_t)cfg);
	a->saved_ms = loop_now(loop);
	if (limitset_have_quota(cfg->limits)) {
		account_load(a);
		timer_start(loop, &a->tick, ACCOUNT_TICK_MS);
	}
	return a;
}

void
account_free(struct account *a)
{
	if (!a)
		return;
	if (limitset_have_quota(a->cfg->limits) || a->dirty)
		account_save(a, true);
	(void)quota_state_reap(&a->writer, true);
	timer_stop(a->loop, &a->tick);
	timer_stop(a->loop, &a->reach_timer);
	for (int k = 0; k < ACCOUNT_KINDS; k++)
		while (!TAILQ_EMPTY(&a->list[k]))
			rec_remove(a, TAILQ_FIRST(&a->list[k]));
	config_unref(a->cfg);
	free(a->tab);
	free(a);
}

void
account_set_reached_cb(struct account *a, account_reached_cb cb, void *arg)
{
	a->reached_cb = cb;
	a->reached_arg = arg;
}

struct account_rec *
account_user(struct account *a, const char *name)
{
	struct account_rec *r = rec_lookup(a, ACCOUNT_USER, name);

	return r ? r : rec_new(a, ACCOUNT_USER, name, NULL);
}

void
account_user_ended(struct account_rec *r, uint64_t up, uint64_t down)
{
	r->ended[0] += up;
	r->ended[1] += down;
}

/* --- admission and sessions --------------------------------------------------------------- */

static bool
rate_set(const struct limitset_rate *r)
{
	return r->up || r->down;
}

static bool
quota_refuses(struct account *a, struct account_rec *r, uint64_t id)
{
	if (!r || !r->has_quota || !r->quota.reached || r->quota.then_rate)
		return false;
	rec_log_reached(a, r);
	return true;
}

enum account_admission
account_admit(struct account *a, const struct config *cfg, uint64_t id, const char *user,
	const union sockaddr_any *client)
{
	struct limitset_match m;
	struct account_rec *r;

	if (limitset_empty(cfg->limits))
		return ACCOUNT_ADMITTED;
	limitset_match(cfg->limits, user, client, 0, &m);
	if (user && m.user_quota && m.user_quota->quota.bytes &&
		quota_refuses(a, account_user(a, user), id))
		return ACCOUNT_QUOTA_REACHED;
	if (m.client_quota && m.client_quota->quota.bytes) {
		if (!(r = client_rec(a, client, true)))
			return a->nclients >= ACCOUNT_CLIENTS_MAX ? ACCOUNT_TABLE_FULL
								  : ACCOUNT_ADMITTED;
		if (quota_refuses(a, r, id))
			return ACCOUNT_QUOTA_REACHED;
	}
	return ACCOUNT_ADMITTED;
}

const char *
account_admission_str(enum account_admission adm)
{
	switch (adm) {
	case ACCOUNT_ADMITTED:
		return "admitted";
	case ACCOUNT_QUOTA_REACHED:
		return "quota reached";
	case ACCOUNT_TABLE_FULL:
		return "too many clients with limits";
	}
	return "refused";
}

static void
session_resume_up(void *arg)
{
	struct account_session *s = arg;

	s->resume(0, s->arg);
}

static void
session_resume_down(void *arg)
{
	struct account_session *s = arg;

	s->resume(1, s->arg);
}

/* A read never goes past what is left of a quota: the quota is reached
 * on the byte (its after buckets take over from there). */
static size_t
quota_cap(const struct account_rec *r, size_t want)
{
	uint64_t left;

	if (!r || !r->has_quota || r->quota.reached)
		return want;
	left = quota_left(&r->quota);
	return left < want ? (size_t)left : want;
}

static size_t
session_allow(struct relay_throttle *t, int dir, size_t want)
{
	struct account_session *s = (struct account_session *)t;

	want = quota_cap(s->rec[1], quota_cap(s->rec[0], want));
	return shaper_flow_allow(&s->flow[dir], want);
}

static void
session_charge(struct relay_throttle *t, int dir, size_t n)
{
	struct account_session *s = (struct account_session *)t;

	shaper_flow_charge(&s->flow[dir], n);
	rec_charge(s->a, s->rec[0], n);
	rec_charge(s->a, s->rec[1], n);
}

/* The records of the scopes m says cover the session (each held). */
static void
session_hold(struct account_session *s, const char *user, const union sockaddr_any *client,
	const struct limitset_match *m)
{
	struct account *a = s->a;

	if (user &&
		((m->user_rate && rate_set(&m->user_rate->rate)) ||
			(m->user_quota && m->user_quota->quota.bytes)))
		s->rec[0] = account_user(a, user);
	if ((m->client_rate && rate_set(&m->client_rate->rate)) ||
		(m->client_quota && m->client_quota->quota.bytes))
		s->rec[1] = client_rec(a, client, true);
	if (m->rule && rate_set(&m->rule->rate)) {
		s->rec[2] = rec_lookup(a, ACCOUNT_RULE, m->rule->key);
		if (!s->rec[2] && (s->rec[2] = rec_new(a, ACCOUNT_RULE, m->rule->key, NULL)))
			rec_set_rate(a, s->rec[2], &m->rule->rate);
	}
	for (int i = 0; i < 3; i++)
		if (s->rec[i])
			s->rec[i]->refs++;
}

struct account_session *
account_session_start(struct account *a, const struct config *cfg, const char *user,
	const union sockaddr_any *client, int rule_line, account_resume_cb resume, void *arg)
{
	static const shaper_resume_cb resumes[2] = { session_resume_up, session_resume_down };
	const struct limitset_line *own;
	struct limitset_match m;
	struct account_session *s;

	if (!a || limitset_empty(cfg->limits))
		return NULL;
	limitset_match(cfg->limits, user, client, rule_line, &m);
	if (!(s = calloc(1, sizeof(*s))))
		return NULL;
	s->a = a;
	s->resume = resume;
	s->arg = arg;
	s->throttle.allow = session_allow;
	s->throttle.charge = session_charge;
	own = m.session && rate_set(&m.session->rate) ? m.session : NULL;
	s->has_own = own != NULL;
	session_hold(s, user, client, &m);
	if (!s->has_own && !s->rec[0] && !s->rec[1] && !s->rec[2]) {
		free(s);
		return NULL;
	}
	for (int d = 0; d < 2; d++) {
		shaper_flow_init(&s->flow[d], resumes[d], s);
		if (own) {
			shaper_bucket_init(&s->own[d], a->loop,
				shaper_rate_from_bits(d ? own->rate.down : own->rate.up));
			shaper_flow_attach(&s->flow[d], &s->own[d]);
		}
		for (int i = 0; i < 3; i++)
			if (s->rec[i] && s->rec[i]->b) {
				shaper_flow_attach(&s->flow[d], &s->rec[i]->b->rate[d]);
				if (i < 2)
					shaper_flow_attach(&s->flow[d], &s->rec[i]->b->after[d]);
			}
	}
	return s;
}

void
account_session_stop(struct account_session *s)
{
	struct account *a;

	if (!s)
		return;
	a = s->a;
	for (int d = 0; d < 2; d++) {
		shaper_flow_detach(&s->flow[d]);
		if (s->has_own)
			shaper_bucket_stop(&s->own[d]);
	}
	for (int i = 0; i < 3; i++) {
		struct account_rec *r = s->rec[i];
		if (!r || --r->refs > 0)
			continue;
		if (r->kind == ACCOUNT_RULE ||
			(r->kind == ACCOUNT_CLIENT && (!r->has_quota || r->quota.used == 0)))
			rec_remove(a, r);
	}
	free(s);
}

struct relay_throttle *
account_session_throttle(struct account_session *s)
{
	return &s->throttle;
}

bool
account_session_take(struct account_session *s, int dir, size_t n)
{
	if (!shaper_flow_take(&s->flow[dir], n))
		return false;
	rec_charge(s->a, s->rec[0], n);
	rec_charge(s->a, s->rec[1], n);
	return true;
}

bool
account_session_uses(const struct account_session *s, const struct account_rec *r)
{
	return s && (s->rec[0] == r || s->rec[1] == r || s->rec[2] == r);
}

/* --- reading ------------------------------------------------------------------------------- */

void
account_live_reset(struct account *a)
{
	struct account_rec *r;

	TAILQ_FOREACH(r, &a->list[ACCOUNT_USER], order)
	{
		r->live[0] = r->live[1] = 0;
		r->live_sessions = 0;
	}
}

void
account_live_add(struct account_rec *r, uint64_t up, uint64_t down)
{
	r->live[0] += up;
	r->live[1] += down;
	r->live_sessions++;
}

struct account_rec *
account_next(struct account *a, enum account_kind kind, uint64_t from)
{
	struct account_rec *r;

	TAILQ_FOREACH(r, &a->list[kind], order)
	if (r->seq >= from)
		return r;
	return NULL;
}

struct account_rec *
account_rec_next(struct account_rec *r)
{
	return TAILQ_NEXT(r, order);
}

void
account_rec_info(const struct account *a, const struct account_rec *r, struct account_info *out)
{
	memset(out, 0, sizeof(*out));
	out->kind = r->kind;
	out->name = r->name;
	out->seq = r->seq;
	for (int d = 0; d < 2; d++) {
		out->ended[d] = r->ended[d];
		out->live[d] = r->live[d];
		out->rate[d] = r->b ? r->b->rate[d].rate : 0;
	}
	out->sessions = r->live_sessions;
	out->charged = r->refs;
	out->has_quota = r->has_quota;
	out->quota = r->quota;
	if (r->has_quota)
		out->quota_resets = quota_period_end(r->quota.period, r->quota.period_id,
			a->cfg->limits->tz_min);
}

struct account_rec *
account_find(struct account *a, enum account_kind kind, const char *name)
{
	union sockaddr_any addr;
	char ip[INET6_ADDRSTRLEN + 8], *slash;

	if (kind != ACCOUNT_CLIENT)
		return rec_lookup(a, kind, name);
	snprintf(ip, sizeof(ip), "%s", name);
	if ((slash = strchr(ip, '/')))
		*slash = '\0';
	if (addr_parse(ip, 0, &addr) < 0)
		return NULL;
	addr_unmap(&addr);
	return client_rec(a, &addr, false);
}
