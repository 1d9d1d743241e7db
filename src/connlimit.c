/*
 * limits: counts connections per client IP and sessions per user, and keeps
 * per-IP authentication-failure streaks and lockouts in a table of bounded
 * size. Pure bookkeeping: the caller supplies the clock, the maxima and the
 * hash secret, and decides what to refuse and what to log.
 *
 * All three tables share one open-addressing hash (linear probing,
 * backward-shift deletion, so no tombstones build up under churn) whose
 * slots point into an array of entries. Entries never move, so the auth
 * table can keep them on two lists by index: streaks in start order and
 * lockouts in lock order, which makes both expiry and "evict the oldest"
 * O(1) at the head.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "connlimit.h"
#include "siphash.h"

#define LIM_NONE UINT32_MAX
/* Count tables are bounded by the caller's connection limit, not here. */
#define LIM_ENTS_MAX (UINT32_MAX - 1)

/* An IP as a table key: IPv4 in the first 4 bytes, the rest zero. */
struct lim_ip {
	uint8_t family; /* 4 or 6: not AF_*, so the key bytes are portable */
	uint8_t addr[16];
};

struct lim_entry {
	union {
		struct lim_ip ip;
		char *name; /* owned copy */
	} key;
	uint32_t hash;
	uint32_t count;        /* connections, sessions, or failures in the streak */
	uint32_t prev, next;   /* auth list links; next also links the free list */
	uint64_t since;        /* auth: start of the current streak */
	uint64_t locked_until; /* auth: end of the lockout, 0 = not locked */
};

struct lim_slot {
	uint32_t hash; /* the entry's hash, so probing and rehash skip the key */
	uint32_t ent;  /* entry index + 1; 0 = empty */
};

struct lim_table {
	bool by_name; /* keys are names, else struct lim_ip */
	struct lim_slot *slots;
	size_t mask;  /* slot count - 1 (power of two), 0 when none */
	size_t count; /* live entries */
	struct lim_entry *ents;
	uint32_t nents;     /* allocated entries */
	uint32_t top;       /* entries handed out at least once */
	uint32_t free_head; /* released entries, linked by next */
	uint32_t max_ents;  /* growth bound */
};

struct lim_list {
	uint32_t head, tail; /* LIM_NONE when empty */
};

struct connlimit {
	uint8_t key[SIPHASH_KEY_LEN]; /* the hashes' secret key */
	unsigned ipv6_prefix;         /* 1..128 */
	struct connlimit_auth_policy auth;
	struct lim_table ips, users, fails;
	struct lim_list streaks; /* unlocked fails entries, by since */
	struct lim_list locked;  /* locked fails entries, by locked_until */
};

/* --- keys ---------------------------------------------------------------- */

/* Builds the key for a client address: IPv4-mapped IPv6 becomes IPv4 (one
 * client on a dual-stack listener is one key), IPv6 is cut to the
 * configured prefix. False for anything that is not an IP address. */
static bool
lim_ip_key(const struct connlimit *lim, const union sockaddr_any *sa, struct lim_ip *k)
{
	unsigned bits, i;

	memset(k, 0, sizeof(*k));
	if (sa == NULL)
		return false;
	if (sa->sa.sa_family == AF_INET) {
		k->family = 4;
		memcpy(k->addr, &sa->sin.sin_addr, 4);
		return true;
	}
	if (sa->sa.sa_family != AF_INET6)
		return false;
	if (IN6_IS_ADDR_V4MAPPED(&sa->sin6.sin6_addr)) {
		k->family = 4;
		memcpy(k->addr, sa->sin6.sin6_addr.s6_addr + 12, 4);
		return true;
	}
	k->family = 6;
	memcpy(k->addr, sa->sin6.sin6_addr.s6_addr, 16);
	for (i = 0; i < 16; i++) {
		bits = i * 8;
		if (bits >= lim->ipv6_prefix)
			k->addr[i] = 0;
		else if (lim->ipv6_prefix - bits < 8)
			k->addr[i] &= (uint8_t)(0xffu << (8 - (lim->ipv6_prefix - bits)));
	}
	return true;
}

static uint32_t
lim_hash_ip(const struct connlimit *lim, const struct lim_ip *k)
{
	return (uint32_t)siphash24(lim->key, k, sizeof(*k));
}

static uint32_t
lim_hash_name(const struct connlimit *lim, const char *name)
{
	return (uint32_t)siphash24(lim->key, name, strlen(name));
}

/* --- table --------------------------------------------------------------- */

static void
table_init(struct lim_table *t, bool by_name, uint32_t max_ents)
{
	memset(t, 0, sizeof(*t));
	t->by_name = by_name;
	t->free_head = LIM_NONE;
	t->max_ents = max_ents;
}

static void
table_clear(struct lim_table *t)
{
	uint32_t i;

	if (t->by_name) {
		/* Free entries have name NULL (table_remove clears it). */
		for (i = 0; i < t->top; i++)
			free(t->ents[i].key.name);
	}
	free(t->ents);
	free(t->slots);
	table_init(t, t->by_name, t->max_ents);
}

/* key is a struct lim_ip * or a name, per t->by_name. */
static bool
table_key_eq(const struct lim_table *t, const struct lim_entry *e, const void *key)
{
	if (t->by_name)
		return strcmp(e->key.name, key) == 0;
	return memcmp(&e->key.ip, key, sizeof(e->key.ip)) == 0;
}

/* Returns the entry index for key, or LIM_NONE. */
static uint32_t
table_find(const struct lim_table *t, const void *key, uint32_t hash)
{
	size_t i;

	if (t->slots == NULL)
		return LIM_NONE;
	for (i = hash & t->mask; t->slots[i].ent != 0; i = (i + 1) & t->mask) {
		uint32_t e = t->slots[i].ent - 1;

		if (t->slots[i].hash == hash && table_key_eq(t, &t->ents[e], key))
			return e;
	}
	return LIM_NONE;
}

static void
table_place(struct lim_slot *slots, size_t mask, uint32_t hash, uint32_t ent)
{
	size_t i;

	for (i = hash & mask; slots[i].ent != 0; i = (i + 1) & mask)
		;
	slots[i].hash = hash;
	slots[i].ent = ent;
}

/* Keeps the load at most 1/2 so probe runs stay short. */
static int
table_reserve_slot(struct lim_table *t)
{
	size_t n = t->slots ? t->mask + 1 : 0, nn, i;
	struct lim_slot *ns;

	if ((t->count + 1) * 2 <= n)
		return 0;
	nn = n ? n * 2 : 16;
	ns = calloc(nn, sizeof(*ns));
	if (ns == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		if (t->slots[i].ent != 0)
			table_place(ns, nn - 1, t->slots[i].hash, t->slots[i].ent);
	}
	free(t->slots);
	t->slots = ns;
	t->mask = nn - 1;
	return 0;
}

static uint32_t
table_take_entry(struct lim_table *t)
{
	struct lim_entry *ne;
	uint32_t e, nn;

	if (t->free_head != LIM_NONE) {
		e = t->free_head;
		t->free_head = t->ents[e].next;
		return e;
	}
	if (t->top == t->nents) {
		if (t->nents >= t->max_ents)
			return LIM_NONE;
		nn = t->nents ? t->nents : 16;
		nn = nn > t->max_ents - t->nents ? t->max_ents : t->nents + nn;
		ne = realloc(t->ents, (size_t)nn * sizeof(*ne));
		if (ne == NULL)
			return LIM_NONE;
		t->ents = ne;
		t->nents = nn;
	}
	return t->top++;
}

/* Adds key (known to be absent) with everything else zero. Returns the
 * entry index, or LIM_NONE when out of memory or at max_ents. Entry
 * pointers taken before this call are stale after it. */
static uint32_t
table_insert(struct lim_table *t, const void *key, uint32_t hash)
{
	struct lim_entry *ent;
	char *name = NULL;
	uint32_t e;

	if (table_reserve_slot(t) != 0)
		return LIM_NONE;
	if (t->by_name && (name = strdup(key)) == NULL)
		return LIM_NONE;
	e = table_take_entry(t);
	if (e == LIM_NONE) {
		free(name);
		return LIM_NONE;
	}
	ent = &t->ents[e];
	memset(ent, 0, sizeof(*ent));
	if (name != NULL) /* exactly when t->by_name: a failed strdup returned */
		ent->key.name = name;
	else
		memcpy(&ent->key.ip, key, sizeof(ent->key.ip));
	ent->hash = hash;
	ent->prev = ent->next = LIM_NONE;
	table_place(t->slots, t->mask, hash, e + 1);
	t->count++;
	/* name is owned by ent->key.name now (freed by table_remove). */
	// cppcheck-suppress memleak
	return e;
}

/* Removes entry e, shifting later members of its probe run back so lookups
 * never need tombstones (Knuth 6.4, algorithm R). */
static void
table_remove(struct lim_table *t, uint32_t e)
{
	struct lim_entry *ent = &t->ents[e];
	size_t i, j, home;

	for (i = ent->hash & t->mask; t->slots[i].ent != e + 1; i = (i + 1) & t->mask)
		;
	for (j = i;;) {
		j = (j + 1) & t->mask;
		if (t->slots[j].ent == 0)
			break;
		home = t->slots[j].hash & t->mask;
		/* Leave slot j alone when its home lies cyclically in (i, j]:
		 * moving it to i would put it before its home. */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		t->slots[i] = t->slots[j];
		i = j;
	}
	t->slots[i].ent = 0;
	if (t->by_name) {
		free(ent->key.name);
		ent->key.name = NULL;
	}
	ent->next = t->free_head;
	t->free_head = e;
	t->count--;
}

/* --- auth lists ---------------------------------------------------------- */

static void
list_append(struct lim_table *t, struct lim_list *l, uint32_t e)
{
	t->ents[e].prev = l->tail;
	t->ents[e].next = LIM_NONE;
	if (l->tail != LIM_NONE)
		t->ents[l->tail].next = e;
	else
		l->head = e;
	l->tail = e;
}

static void
list_unlink(struct lim_table *t, struct lim_list *l, uint32_t e)
{
	struct lim_entry *ent = &t->ents[e];

	if (ent->prev != LIM_NONE)
		t->ents[ent->prev].next = ent->next;
	else
		l->head = ent->next;
	if (ent->next != LIM_NONE)
		t->ents[ent->next].prev = ent->prev;
	else
		l->tail = ent->prev;
	ent->prev = ent->next = LIM_NONE;
}

static struct lim_list *
auth_list_of(struct connlimit *lim, uint32_t e)
{
	return lim->fails.ents[e].locked_until != 0 ? &lim->locked : &lim->streaks;
}

static void
auth_remove(struct connlimit *lim, uint32_t e)
{
	list_unlink(&lim->fails, auth_list_of(lim, e), e);
	table_remove(&lim->fails, e);
}

/* Nothing left to remember: the lockout is over, or the streak's window
 * has passed (its failures no longer count). */
static bool
auth_expired(const struct connlimit *lim, const struct lim_entry *ent, uint64_t now)
{
	if (ent->locked_until != 0)
		return now >= ent->locked_until;
	return now - ent->since >= lim->auth.window_ms;
}

static bool
auth_enabled(const struct connlimit *lim)
{
	return lim->auth.max_failures != 0 && lim->auth.lockout_ms != 0;
}

/* Makes room for one more entry: the oldest streak goes first; a locked
 * IP only when nothing else is left. */
static void
auth_evict_to(struct connlimit *lim, size_t keep)
{
	while (lim->fails.count > keep) {
		if (lim->streaks.head != LIM_NONE)
			auth_remove(lim, lim->streaks.head);
		else
			auth_remove(lim, lim->locked.head);
	}
}

static size_t
auth_max_tracked(const struct connlimit_auth_policy *p)
{
	if (p->max_tracked == 0)
		return CONNLIMIT_AUTH_TRACKED_DEFAULT;
	return p->max_tracked > CONNLIMIT_AUTH_TRACKED_MAX ? CONNLIMIT_AUTH_TRACKED_MAX
							   : p->max_tracked;
}

/* --- public -------------------------------------------------------------- */

struct connlimit *
connlimit_new(const struct connlimit_config *cfg)
{
	struct connlimit *lim;

	if (cfg->ipv6_prefix > 128)
		return NULL;
	lim = calloc(1, sizeof(*lim));
	if (lim == NULL)
		return NULL;
	memcpy(lim->key, cfg->hash_key, sizeof(lim->key));
	lim->ipv6_prefix = cfg->ipv6_prefix ? cfg->ipv6_prefix : 128;
	table_init(&lim->ips, false, LIM_ENTS_MAX);
	table_init(&lim->users, true, LIM_ENTS_MAX);
	table_init(&lim->fails, false, CONNLIMIT_AUTH_TRACKED_DEFAULT);
	lim->streaks.head = lim->streaks.tail = LIM_NONE;
	lim->locked.head = lim->locked.tail = LIM_NONE;
	connlimit_set_auth_policy(lim, &cfg->auth);
	return lim;
}

void
connlimit_free(struct connlimit *lim)
{
	if (lim == NULL)
		return;
	table_clear(&lim->ips);
	table_clear(&lim->users);
	table_clear(&lim->fails);
	free(lim);
}

void
connlimit_set_auth_policy(struct connlimit *lim, const struct connlimit_auth_policy *p)
{
	size_t max = auth_max_tracked(p);

	lim->auth = *p;
	lim->auth.max_tracked = max;
	lim->fails.max_ents = (uint32_t)max;
	if (!auth_enabled(lim)) {
		/* Turned off: lift every lockout rather than enforce a
		 * policy the administrator removed. */
		table_clear(&lim->fails);
		lim->streaks.head = lim->streaks.tail = LIM_NONE;
		lim->locked.head = lim->locked.tail = LIM_NONE;
		return;
	}
	auth_evict_to(lim, max);
}

/* Shared acquire for both count tables. */
static enum connlimit_status
count_acquire(struct lim_table *t, const void *key, uint32_t hash, unsigned max)
{
	uint32_t e = table_find(t, key, hash);

	if (e == LIM_NONE) {
		e = table_insert(t, key, hash);
		if (e == LIM_NONE)
			return CONNLIMIT_NOMEM;
	} else if ((max != 0 && t->ents[e].count >= max) || t->ents[e].count == UINT32_MAX) {
		return CONNLIMIT_OVER;
	}
	t->ents[e].count++;
	return CONNLIMIT_OK;
}

static void
count_release(struct lim_table *t, const void *key, uint32_t hash)
{
	uint32_t e = table_find(t, key, hash);

	if (e != LIM_NONE && --t->ents[e].count == 0)
		table_remove(t, e);
}

enum connlimit_status
connlimit_ip_acquire(struct connlimit *lim, const union sockaddr_any *ip, unsigned max)
{
	struct lim_ip k;

	if (!lim_ip_key(lim, ip, &k))
		return CONNLIMIT_OK;
	return count_acquire(&lim->ips, &k, lim_hash_ip(lim, &k), max);
}

void
connlimit_ip_release(struct connlimit *lim, const union sockaddr_any *ip)
{
	struct lim_ip k;

	if (lim_ip_key(lim, ip, &k))
		count_release(&lim->ips, &k, lim_hash_ip(lim, &k));
}

unsigned
connlimit_ip_count(const struct connlimit *lim, const union sockaddr_any *ip)
{
	struct lim_ip k;
	uint32_t e;

	if (!lim_ip_key(lim, ip, &k))
		return 0;
	e = table_find(&lim->ips, &k, lim_hash_ip(lim, &k));
	return e == LIM_NONE ? 0 : lim->ips.ents[e].count;
}

size_t
connlimit_ip_entries(const struct connlimit *lim)
{
	return lim->ips.count;
}

enum connlimit_status
connlimit_user_acquire(struct connlimit *lim, const char *user, unsigned max)
{
	if (user == NULL)
		return CONNLIMIT_OK;
	return count_acquire(&lim->users, user, lim_hash_name(lim, user), max);
}

void
connlimit_user_release(struct connlimit *lim, const char *user)
{
	if (user != NULL)
		count_release(&lim->users, user, lim_hash_name(lim, user));
}

unsigned
connlimit_user_count(const struct connlimit *lim, const char *user)
{
	uint32_t e;

	if (user == NULL)
		return 0;
	e = table_find(&lim->users, user, lim_hash_name(lim, user));
	return e == LIM_NONE ? 0 : lim->users.ents[e].count;
}

size_t
connlimit_user_entries(const struct connlimit *lim)
{
	return lim->users.count;
}

enum connlimit_status
connlimit_auth_fail(struct connlimit *lim, const union sockaddr_any *ip, uint64_t now_ms)
{
	struct lim_entry *ent;
	struct lim_ip k;
	uint32_t hash, e;

	if (!auth_enabled(lim) || !lim_ip_key(lim, ip, &k))
		return CONNLIMIT_OK;
	hash = lim_hash_ip(lim, &k);
	e = table_find(&lim->fails, &k, hash);
	if (e != LIM_NONE && lim->fails.ents[e].locked_until > now_ms)
		return CONNLIMIT_LOCKED;
	if (e != LIM_NONE && auth_expired(lim, &lim->fails.ents[e], now_ms)) {
		/* A finished lockout or streak: start afresh, at the tail. */
		auth_remove(lim, e);
		e = LIM_NONE;
	}
	if (e == LIM_NONE) {
		connlimit_auth_expire(lim, now_ms);
		auth_evict_to(lim, lim->auth.max_tracked - 1);
		e = table_insert(&lim->fails, &k, hash);
		if (e == LIM_NONE)
			return CONNLIMIT_NOMEM;
		lim->fails.ents[e].since = now_ms;
		list_append(&lim->fails, &lim->streaks, e);
	}
	ent = &lim->fails.ents[e];
	if (++ent->count < lim->auth.max_failures)
		return CONNLIMIT_OK;
	/* Threshold reached: lock, and start the count over so the IP gets
	 * a fresh streak once the lockout ends. */
	list_unlink(&lim->fails, &lim->streaks, e);
	ent->count = 0;
	ent->locked_until = now_ms > UINT64_MAX - lim->auth.lockout_ms
		? UINT64_MAX
		: now_ms + lim->auth.lockout_ms;
	list_append(&lim->fails, &lim->locked, e);
	return CONNLIMIT_LOCKOUT_STARTED;
}

void
connlimit_auth_ok(struct connlimit *lim, const union sockaddr_any *ip, uint64_t now_ms)
{
	struct lim_ip k;
	uint32_t e;

	if (!lim_ip_key(lim, ip, &k))
		return;
	e = table_find(&lim->fails, &k, lim_hash_ip(lim, &k));
	if (e == LIM_NONE || lim->fails.ents[e].locked_until > now_ms)
		return;
	auth_remove(lim, e);
}

bool
connlimit_auth_locked(struct connlimit *lim, const union sockaddr_any *ip, uint64_t now_ms,
	uint64_t *remaining_ms)
{
	const struct lim_entry *ent;
	struct lim_ip k;
	uint32_t e;

	if (remaining_ms != NULL)
		*remaining_ms = 0;
	if (!lim_ip_key(lim, ip, &k))
		return false;
	e = table_find(&lim->fails, &k, lim_hash_ip(lim, &k));
	if (e == LIM_NONE)
		return false;
	ent = &lim->fails.ents[e];
	if (ent->locked_until > now_ms) {
		if (remaining_ms != NULL)
			*remaining_ms = ent->locked_until - now_ms;
		return true;
	}
	if (auth_expired(lim, ent, now_ms))
		auth_remove(lim, e);
	return false;
}

/* Both lists are in expiry order while the policy stays the same (entries
 * join at the tail with since = now, or locked_until = now + L), so the
 * sweep stops at the first live head. After a policy change the order may
 * be off for a while; lookups still expire what the sweep misses. */
size_t
connlimit_auth_expire(struct connlimit *lim, uint64_t now_ms)
{
	size_t dropped = 0;

	while (lim->streaks.head != LIM_NONE &&
		auth_expired(lim, &lim->fails.ents[lim->streaks.head], now_ms)) {
		auth_remove(lim, lim->streaks.head);
		dropped++;
	}
	while (lim->locked.head != LIM_NONE &&
		auth_expired(lim, &lim->fails.ents[lim->locked.head], now_ms)) {
		auth_remove(lim, lim->locked.head);
		dropped++;
	}
	return dropped;
}

size_t
connlimit_auth_entries(const struct connlimit *lim)
{
	return lim->fails.count;
}
