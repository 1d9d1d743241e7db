/*
 * resolver: name lookups inside the event loop. A name is answered, in this
 * order, as a numeric address, from the hosts file (localhost built in), from
 * the cache, by joining a lookup already in flight, or by a new lookup: one A
 * and one AAAA query in parallel, each on its own connected UDP socket with a
 * random id, retried across the nameservers and moved to TCP when the answer
 * is truncated. Message encoding and checking is left to dns; this module
 * owns the sockets, timers, retries, cache and callbacks. Nothing here
 * blocks; no callback runs from inside resolver_start.
 */
#include "resolver.h"

#include <errno.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dns.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "strnum.h"

#define RESOLVER_DNS_PORT 53
#define RESOLVER_MAX_NAMESERVERS 8
/* resolv.conf(5): defaults and glibc's caps (RES_MAXRETRANS, RES_MAXRETRY). */
#define RESOLVER_DEFAULT_TIMEOUT_MS 5000u
#define RESOLVER_DEFAULT_ATTEMPTS 2u
#define RESOLVER_MAX_TIMEOUT_S 30u
#define RESOLVER_MAX_ATTEMPTS 5u
/* Negative answers are kept at most this long (RFC 2308 §5 suggests 1-3 h
 * as a ceiling; a proxy wants a name that starts to exist to work soon). */
#define RESOLVER_MAX_NEG_TTL 300u
/* The hosts file is stat()ed at most this often to notice edits. */
#define RESOLVER_HOSTS_CHECK_MS 1000u
/* Receive buffer: a UDP answer is at most 512 bytes without EDNS, but a
 * server may send more; a datagram never exceeds 64 KiB. */
#define RESOLVER_SCRATCH (64u * 1024u)

/* Hosts entries, answers and the cache keep addresses as union
 * sockaddr_any with port 0, the type the results are handed out in. */
struct hosts_entry {
	char *name;  /* lowercase, no final dot */
	size_t line; /* file order: ties keep it */
	union sockaddr_any addr;
};

struct cache_entry {
	LIST_ENTRY(cache_entry) chain; /* hash bucket */
	TAILQ_ENTRY(cache_entry) lru;  /* r->lru, most recently used first */
	uint32_t hash;
	uint64_t expires_ms; /* loop_now() deadline */
	enum resolver_status status;
	char name[DNS_HOSTNAME_MAX + 1];
	size_t naddrs;
	union sockaddr_any addrs[]; /* naddrs, already in preference order */
};

LIST_HEAD(cache_chain, cache_entry);
TAILQ_HEAD(cache_lru, cache_entry);

/*
 * One query (A or AAAA) of a lookup. The state says which watcher and timer
 * are armed; every state but DONE has the timer armed.
 */
enum subquery_state {
	SUBQUERY_IDLE,        /* timer (0 ms) to send the first try; no fd */
	SUBQUERY_UDP,         /* datagram sent; READ on fd, timer = try timeout */
	SUBQUERY_TCP_CONNECT, /* TC answer seen, connecting; WRITE on fd */
	SUBQUERY_TCP_WRITE,   /* writing length + query; WRITE on fd */
	SUBQUERY_TCP_READ,    /* reading length + answer; READ on fd */
	SUBQUERY_DONE,        /* outcome below is final; no fd, no timer */
};

struct subquery {
	struct lookup *lk;
	uint16_t qtype; /* DNS_TYPE_A or DNS_TYPE_AAAA */
	enum subquery_state state;
	unsigned tries;                 /* tries started, over all servers */
	size_t server;                  /* index of the server asked now */
	bool had_error;                 /* a server failed rather than stayed silent */
	uint16_t id;                    /* id of the query on the wire */
	uint8_t msg[2 + DNS_QUERY_MAX]; /* TCP length prefix, then the query */
	size_t msg_len;                 /* query length, prefix not counted */
	size_t io_done;                 /* TCP: bytes written, then bytes read */
	uint8_t len_buf[2];             /* TCP: the answer's length prefix */
	uint8_t *tcp_buf;               /* TCP: the answer, once its length is known */
	size_t tcp_need;                /* TCP: its length */
	int fd;                         /* -1 when closed */
	struct watcher w;
	struct timer timer;
	/* Outcome, valid in SUBQUERY_DONE. */
	enum resolver_status status;
	bool has_ttl; /* ttl below is known (negative: from an SOA) */
	uint32_t ttl;
	size_t naddrs;
	union sockaddr_any addrs[DNS_MAX_ADDRS]; /* all of the qtype's family */
};

/* Waiters: a lookup's, or the resolver's ready list. */
TAILQ_HEAD(query_list, resolver_query);

/* A lookup in flight for one name, shared by every waiter for that name. */
LIST_HEAD(lookup_list, lookup);

struct lookup {
	struct resolver *r;
	LIST_ENTRY(lookup) inflight; /* on r->lookups until stopped */
	struct query_list waiters;
	bool stopped; /* no more I/O; freed at release */
	struct release rel;
	struct subquery sub[2];          /* A, AAAA */
	struct resolver_result res;      /* what the waiters are given */
	char name[DNS_HOSTNAME_MAX + 1]; /* lowercase, no final dot */
};

enum query_where {
	QUERY_READY,      /* on r->ready, answer in ->res */
	QUERY_WAITING,    /* on lk->waiters */
	QUERY_DELIVERING, /* off every list, its callback is running */
};

struct resolver_query {
	struct resolver *r;
	struct lookup *lk; /* QUERY_WAITING only */
	enum query_where where;
	TAILQ_ENTRY(resolver_query) link; /* r->ready or lk->waiters */
	uint64_t seq;                     /* QUERY_READY: order of arrival */
	resolver_cb cb;
	void *arg;
	struct resolver_result res; /* QUERY_READY: the answer */
};

struct resolver {
	struct loop *loop;
	union sockaddr_any nameservers[RESOLVER_MAX_NAMESERVERS];
	size_t nnameservers;
	unsigned timeout_ms; /* per try */
	unsigned attempts;   /* rounds over all servers */
	int prefer_family;
	struct egress egress; /* queries' interface and mark (not to loopback) */

	char *hosts_path;
	struct hosts_entry *hosts; /* sorted by name, then line */
	size_t nhosts;
	bool hosts_seen; /* hosts_stat below is valid */
	struct stat hosts_stat;
	uint64_t hosts_checked_ms;

	unsigned cache_size;    /* entries; 0: no cache */
	unsigned cache_max_ttl; /* seconds */
	unsigned cache_count;
	struct cache_chain *buckets;
	size_t nbuckets;      /* a power of two */
	struct cache_lru lru; /* every entry; eviction takes the last */

	struct lookup_list lookups; /* in flight, for coalescing */
	unsigned nlookups;          /* how many there are */
	unsigned max_lookups;       /* refuse new ones at this count; 0: no limit */
	struct log_ratelimit limit_log;
	struct query_list ready; /* answered without a query */
	uint64_t ready_seq;
	struct timer ready_timer; /* 0 ms: delivers r->ready */

	struct resolver_stats stats;
	uint32_t hash_seed; /* cache hash start, random */
	uint8_t rnd[64];    /* getrandom() pool for query ids */
	size_t rnd_left;
	uint8_t scratch[RESOLVER_SCRATCH]; /* one UDP datagram */
};

static void subquery_next_try(struct subquery *q);
static void subquery_on_io(struct loop *loop, unsigned events, void *arg);

/* The settings for a query to ns: none to a nameserver on this host (a
 * local resolver is reached through lo, never through an interface). */
static const struct egress *
resolver_egress_for(const struct resolver *r, const union sockaddr_any *ns)
{
	return addr_is_loopback(ns) ? NULL : &r->egress;
}
static void lookup_complete(struct lookup *lk);

const struct resolver_stats *
resolver_get_stats(const struct resolver *r)
{
	return &r->stats;
}

const char *
resolver_status_str(enum resolver_status st)
{
	switch (st) {
	case RESOLVER_OK:
		return "ok";
	case RESOLVER_NXDOMAIN:
		return "nxdomain";
	case RESOLVER_NODATA:
		return "nodata";
	case RESOLVER_TIMEOUT:
		return "timeout";
	case RESOLVER_SERVFAIL:
		return "servfail";
	case RESOLVER_BADNAME:
		return "bad name";
	case RESOLVER_NOMEM:
		return "out of memory";
	case RESOLVER_LIMIT:
		return "too many lookups";
	}
	return "unknown";
}

static const char *
subquery_type_str(const struct subquery *q)
{
	return q->qtype == DNS_TYPE_A ? "A" : "AAAA";
}

/* --- small helpers ------------------------------------------------------- */

static void
resolver_lower(char *out, const char *in, size_t cap)
{
	size_t n = strlen(in);

	/* One final dot means the same name (it was already validated). */
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[i] = c;
	}
	out[n] = '\0';
}

static uint32_t
resolver_hash(const struct resolver *r, const char *s)
{
	/* FNV-1a from a per-process random start: clients choose the names,
	 * and should not be able to predict which ones share a chain. */
	uint32_t h = 2166136261u ^ r->hash_seed;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 16777619u;
	}
	return h;
}

static int
resolver_fill_random(struct resolver *r)
{
	size_t got = 0;

	/* getrandom() only blocks before the kernel pool is first seeded, at
	 * boot; resolver_new fills the pool once so that happens at startup. */
	while (got < sizeof(r->rnd)) {
		ssize_t n = getrandom(r->rnd + got, sizeof(r->rnd) - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	r->rnd_left = sizeof(r->rnd);
	return 0;
}

static uint16_t
resolver_random16(struct resolver *r)
{
	if (r->rnd_left < 2 && resolver_fill_random(r) < 0)
		fatal("getrandom");
	r->rnd_left -= 2;
	return (uint16_t)(r->rnd[r->rnd_left] << 8 | r->rnd[r->rnd_left + 1]);
}

/* Appends list's addresses of one family to res, up to RESOLVER_MAX_ADDRS. */
static void
result_add_family(struct resolver_result *res, const union sockaddr_any *list, size_t n,
	sa_family_t family)
{
	for (size_t i = 0; i < n && res->naddrs < RESOLVER_MAX_ADDRS; i++)
		if (list[i].sa.sa_family == family)
			res->addrs[res->naddrs++] = list[i];
}

static sa_family_t
resolver_other_family(const struct resolver *r)
{
	return r->prefer_family == AF_INET6 ? AF_INET : AF_INET6;
}

/* Takes q off list and calls it back with res; q is freed afterwards, so
 * the callback's handle (and res, when it is q's own) end with the call. */
static void
query_deliver(struct query_list *list, struct resolver_query *q, const struct resolver_result *res)
{
	TAILQ_REMOVE(list, q, link);
	q->where = QUERY_DELIVERING;
	q->cb(res, q->arg);
	free(q);
}

/* Frees every query on list without calling back. */
static void
query_list_free(struct query_list *list)
{
	struct resolver_query *q;

	while ((q = TAILQ_FIRST(list)) != NULL) {
		TAILQ_REMOVE(list, q, link);
		free(q);
	}
}

/* --- configuration files ------------------------------------------------- */

static bool
resolver_parse_nameserver(const char *s, union sockaddr_any *out)
{
	char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	char *pct;

	if (strlen(s) >= sizeof(buf))
		return false;
	/* NOLINTNEXTLINE(clang-analyzer-security.insecureAPI.strcpy): fits, checked above. */
	strcpy(buf, s);
	pct = strchr(buf, '%');
	if (pct)
		*pct++ = '\0';
	if (addr_parse(buf, RESOLVER_DNS_PORT, out) < 0)
		return false;
	/* fe80::1%eth0: the scope is an interface name (or number). */
	if (pct) {
		if (out->sa.sa_family != AF_INET6)
			return false;
		uint64_t scope = if_nametoindex(pct);

		if (scope == 0 && strnum_parse_u64(pct, 0, UINT32_MAX, &scope) != STRNUM_OK)
			return false;
		out->sin6.sin6_scope_id = (uint32_t)scope;
	}
	return true;
}

/*
 * resolv.conf(5) "NAME:N" option: when arg is that option, returns true
 * and stores N clamped into 1..max in *out (as glibc clamps; a number too
 * big for 64 bits is max). An N that is not digits only ("+1", "2s") is
 * ignored with a warning and leaves *out alone; still true, the option was
 * recognised. False when arg is another option.
 */
static bool
resolv_conf_option(const char *path, const char *arg, const char *name, unsigned max, unsigned *out)
{
	size_t n = strlen(name);
	uint64_t v;

	if (strncmp(arg, name, n) != 0)
		return false;
	switch (strnum_parse_u64(arg + n, 0, UINT64_MAX, &v)) {
	case STRNUM_OK:
		break;
	case STRNUM_RANGE:
		v = max;
		break;
	case STRNUM_EMPTY:
	case STRNUM_NOT_DECIMAL:
		log_warnx("resolver: %s: bad option \"%s\" ignored", path, arg);
		return true;
	}
	*out = v < 1 ? 1 : v > max ? max : (unsigned)v;
	return true;
}

/* resolv.conf(5): "nameserver ADDR" lines (when want_ns) and the timeout
 * and attempts options. Everything else (search, ndots, rotate) is ignored:
 * a proxy is given fully qualified names. */
static void
resolver_read_resolv_conf(struct resolver *r, const char *path, bool want_ns)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;

	if (!f) {
		log_debug("resolver: %s: %s", path, strerror(errno));
		return;
	}
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL;
		char *kw = strtok_r(line, " \t\r\n", &save);
		char *arg;

		if (!kw || kw[0] == '#' || kw[0] == ';')
			continue;
		if (strcmp(kw, "nameserver") == 0) {
			arg = strtok_r(NULL, " \t\r\n", &save);
			if (!want_ns || !arg)
				continue;
			if (r->nnameservers == RESOLVER_MAX_NAMESERVERS) {
				log_debug("resolver: %s: nameserver %s ignored (max %d)", path, arg,
					RESOLVER_MAX_NAMESERVERS);
				continue;
			}
			if (resolver_parse_nameserver(arg, &r->nameservers[r->nnameservers]))
				r->nnameservers++;
			else
				log_warnx("resolver: %s: bad nameserver \"%s\"", path, arg);
		} else if (strcmp(kw, "options") == 0) {
			while ((arg = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
				unsigned secs = 0;

				/* secs stays 0 when the number was refused. */
				if (resolv_conf_option(path, arg,
					    "timeout:", RESOLVER_MAX_TIMEOUT_S, &secs)) {
					if (secs > 0)
						r->timeout_ms = secs * 1000u;
				} else {
					resolv_conf_option(path, arg,
						"attempts:", RESOLVER_MAX_ATTEMPTS, &r->attempts);
				}
			}
		}
	}
	free(line);
	fclose(f);
}

static void
hosts_clear(struct resolver *r)
{
	for (size_t i = 0; i < r->nhosts; i++)
		free(r->hosts[i].name);
	free(r->hosts);
	r->hosts = NULL;
	r->nhosts = 0;
}

static int
hosts_cmp(const void *a, const void *b)
{
	const struct hosts_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c != 0)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

static int
hosts_add(struct hosts_entry **v, size_t *n, size_t *cap, const char *name, size_t line,
	const union sockaddr_any *addr)
{
	char key[DNS_HOSTNAME_MAX + 1];

	if (dns_check_name(name) != DNS_OK)
		return 0;
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct hosts_entry *nv = realloc(*v, ncap * sizeof(*nv));

		if (!nv)
			return -1;
		*v = nv;
		*cap = ncap;
	}
	resolver_lower(key, name, sizeof(key));
	if (!((*v)[*n].name = strdup(key)))
		return -1;
	(*v)[*n].line = line;
	(*v)[*n].addr = *addr;
	(*n)++;
	return 0;
}

/* hosts(5): "ADDRESS NAME [ALIASES...]", '#' comments. Entries the resolver
 * cannot use (scoped IPv6, invalid names) are skipped. */
static void
hosts_load(struct resolver *r)
{
	FILE *f = fopen(r->hosts_path, "re");
	struct hosts_entry *v = NULL;
	size_t n = 0, cap = 0, lineno = 0;
	char *line = NULL;
	size_t lcap = 0;

	hosts_clear(r);
	if (!f) {
		log_debug("resolver: %s: %s", r->hosts_path, strerror(errno));
		return;
	}
	while (getline(&line, &lcap, f) > 0) {
		char *save = NULL, *hash, *tok;
		union sockaddr_any addr;

		lineno++;
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		if (!(tok = strtok_r(line, " \t\r\n", &save)))
			continue;
		if (addr_parse(tok, 0, &addr) < 0)
			continue;
		while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
			if (hosts_add(&v, &n, &cap, tok, lineno, &addr) < 0) {
				log_warnx("resolver: %s: out of memory", r->hosts_path);
				goto out;
			}
		}
	}
out:
	free(line);
	fclose(f);
	if (n > 0)
		qsort(v, n, sizeof(*v), hosts_cmp);
	r->hosts = v;
	r->nhosts = n;
	log_debug("resolver: %zu hosts entries from %s", n, r->hosts_path);
}

/* Reloads the hosts file when it changed since the last look. */
static void
hosts_refresh(struct resolver *r)
{
	struct stat st;
	bool exists;

	if (r->hosts_seen && loop_now(r->loop) - r->hosts_checked_ms < RESOLVER_HOSTS_CHECK_MS)
		return;
	r->hosts_checked_ms = loop_now(r->loop);
	exists = stat(r->hosts_path, &st) == 0;
	if (!exists)
		memset(&st, 0, sizeof(st));
	if (r->hosts_seen && st.st_dev == r->hosts_stat.st_dev &&
		st.st_ino == r->hosts_stat.st_ino && st.st_size == r->hosts_stat.st_size &&
		st.st_mtim.tv_sec == r->hosts_stat.st_mtim.tv_sec &&
		st.st_mtim.tv_nsec == r->hosts_stat.st_mtim.tv_nsec)
		return;
	r->hosts_stat = st;
	r->hosts_seen = true;
	if (exists)
		hosts_load(r);
	else
		hosts_clear(r);
}

/* Fills res from the hosts file; false when the name is not there. */
static bool
hosts_lookup(struct resolver *r, const char *key, struct resolver_result *res)
{
	size_t lo = 0, hi;
	sa_family_t fam[2] = { (sa_family_t)r->prefer_family, resolver_other_family(r) };

	/* The reload may replace or empty the table: size it afterwards. */
	hosts_refresh(r);
	hi = r->nhosts;
	/* First entry whose name is >= key. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(r->hosts[mid].name, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == r->nhosts || strcmp(r->hosts[lo].name, key) != 0)
		return false;
	res->status = RESOLVER_OK;
	res->naddrs = 0;
	for (int f = 0; f < 2; f++)
		for (size_t i = lo; i < r->nhosts && strcmp(r->hosts[i].name, key) == 0; i++)
			result_add_family(res, &r->hosts[i].addr, 1, fam[f]);
	return true;
}

/* RFC 6761 §6.3: localhost and names under it are the loopback addresses,
 * never asked of a server, when the hosts file does not say otherwise. */
static bool
localhost_lookup(struct resolver *r, const char *key, struct resolver_result *res)
{
	static const char suffix[] = ".localhost";
	size_t n = strlen(key), s = sizeof(suffix) - 1;
	static const uint8_t lo4[4] = { 127, 0, 0, 1 }, lo6[16] = { [15] = 1 };
	union sockaddr_any lo[2];

	if (strcmp(key, "localhost") != 0 && !(n > s && strcmp(key + n - s, suffix) == 0))
		return false;
	addr_from_ip(&lo[0], AF_INET, lo4, 0);
	addr_from_ip(&lo[1], AF_INET6, lo6, 0);
	res->status = RESOLVER_OK;
	res->naddrs = 0;
	result_add_family(res, lo, 2, (sa_family_t)r->prefer_family);
	result_add_family(res, lo, 2, resolver_other_family(r));
	return true;
}

static bool
numeric_lookup(const char *name, struct resolver_result *res)
{
	union sockaddr_any a;

	if (addr_parse(name, 0, &a) < 0)
		return false;
	res->status = RESOLVER_OK;
	res->naddrs = 1;
	res->addrs[0] = a;
	return true;
}

/* --- cache --------------------------------------------------------------- */

static void
cache_unlink(struct resolver *r, struct cache_entry *e)
{
	LIST_REMOVE(e, chain);
	TAILQ_REMOVE(&r->lru, e, lru);
	r->cache_count--;
	free(e);
}

static struct cache_chain *
cache_bucket(const struct resolver *r, uint32_t hash)
{
	return &r->buckets[hash & (r->nbuckets - 1)];
}

static struct cache_entry *
cache_find(const struct resolver *r, const char *key, uint32_t hash)
{
	struct cache_entry *e;

	if (!r->buckets)
		return NULL;
	LIST_FOREACH(e, cache_bucket(r, hash), chain)
	if (e->hash == hash && strcmp(e->name, key) == 0)
		return e;
	return NULL;
}

static bool
cache_get(struct resolver *r, const char *key, struct resolver_result *res)
{
	uint32_t hash = resolver_hash(r, key);
	struct cache_entry *e = cache_find(r, key, hash);

	if (!e)
		return false;
	if (loop_now(r->loop) >= e->expires_ms) {
		cache_unlink(r, e);
		return false;
	}
	/* Most recently used moves to the front; eviction takes the last. */
	TAILQ_REMOVE(&r->lru, e, lru);
	TAILQ_INSERT_HEAD(&r->lru, e, lru);
	res->status = e->status;
	res->naddrs = e->naddrs;
	memcpy(res->addrs, e->addrs, e->naddrs * sizeof(e->addrs[0]));
	return true;
}

/* Keeps naddrs (at most RESOLVER_MAX_ADDRS) addresses for key; the entry
 * is sized for them, so a typical one- or two-address answer stays small. */
static void
cache_put(struct resolver *r, const char *key, enum resolver_status status,
	const union sockaddr_any *addrs, size_t naddrs, uint32_t ttl)
{
	uint32_t hash = resolver_hash(r, key);
	struct cache_entry *e;

	if (r->cache_size == 0 || ttl == 0)
		return;
	if ((e = cache_find(r, key, hash)) != NULL)
		cache_unlink(r, e);
	if (r->cache_count >= r->cache_size)
		cache_unlink(r, TAILQ_LAST(&r->lru, cache_lru));
	if (!(e = calloc(1, sizeof(*e) + naddrs * sizeof(e->addrs[0])))) {
		log_warnx("resolver: cache: out of memory");
		return;
	}
	e->hash = hash;
	e->expires_ms = loop_now(r->loop) + (uint64_t)ttl * 1000u;
	e->status = status;
	e->naddrs = naddrs;
	memcpy(e->addrs, addrs, naddrs * sizeof(e->addrs[0]));
	/* key is a lookup's name, the same size as e->name.
	 * NOLINTNEXTLINE(clang-analyzer-security.insecureAPI.strcpy) */
	strcpy(e->name, key);
	LIST_INSERT_HEAD(cache_bucket(r, hash), e, chain);
	TAILQ_INSERT_HEAD(&r->lru, e, lru);
	r->cache_count++;
}

/* --- delivery ------------------------------------------------------------ */

static void
resolver_on_ready(struct loop *loop, void *arg)
{
	struct resolver *r = arg;
	uint64_t limit = r->ready_seq;
	struct resolver_query *q;

	/* Answers queued by the callbacks below wait for the next run, like
	 * every other answer: they must not run inside their resolver_start.
	 * query_deliver took q off the list (TAILQ_REMOVE updates the head
	 * through q's back pointer, which the analyzer does not follow).
	 * NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
	while ((q = TAILQ_FIRST(&r->ready)) != NULL && q->seq <= limit)
		query_deliver(&r->ready, q, &q->res);
	if (!TAILQ_EMPTY(&r->ready) && !timer_active(&r->ready_timer))
		timer_start(r->loop, &r->ready_timer, 0);
}

/* Queues q (with q->res filled in) for delivery on a later iteration. */
static void
resolver_answer_later(struct resolver *r, struct resolver_query *q)
{
	q->where = QUERY_READY;
	q->lk = NULL;
	q->seq = ++r->ready_seq;
	TAILQ_INSERT_TAIL(&r->ready, q, link);
	if (!timer_active(&r->ready_timer))
		timer_start(r->loop, &r->ready_timer, 0);
}

/* --- one query: UDP, then TCP after TC ----------------------------------- */

static void
subquery_close(struct subquery *q)
{
	struct loop *loop = q->lk->r->loop;

	timer_stop(loop, &q->timer);
	if (q->fd >= 0) {
		loop_unwatch(loop, &q->w);
		close(q->fd);
		q->fd = -1;
	}
	free(q->tcp_buf);
	q->tcp_buf = NULL;
	q->io_done = 0;
}

static void
subquery_done(struct subquery *q, enum resolver_status status)
{
	struct lookup *lk = q->lk;

	subquery_close(q);
	q->state = SUBQUERY_DONE;
	q->status = status;
	log_debug("resolver: %s %s: %s after %u tries", lk->name, subquery_type_str(q),
		resolver_status_str(status), q->tries);
	/* NXDOMAIN is about the name, not the type: no need to wait for the
	 * other query. */
	if (status == RESOLVER_NXDOMAIN ||
		(lk->sub[0].state == SUBQUERY_DONE && lk->sub[1].state == SUBQUERY_DONE))
		lookup_complete(lk);
}

/* "resolver: NAME TYPE: what SERVER: why" at debug, for q's current server. */
static void
subquery_log_server(const struct subquery *q, const char *what, const char *why)
{
	char buf[ADDR_STRLEN];

	if (log_enabled(LOG_LVL_DEBUG))
		log_debug("resolver: %s %s: %s %s: %s", q->lk->name, subquery_type_str(q), what,
			addr_format(&q->lk->r->nameservers[q->server], buf, sizeof(buf)), why);
}

/* The asked server failed (not merely stayed silent): on to the next try. */
static void
subquery_server_failed(struct subquery *q, const char *why)
{
	subquery_log_server(q, "server", why);
	q->had_error = true;
	subquery_next_try(q);
}

/* After a failed send or recv on q->fd: false for EINTR (the caller tries
 * again), true otherwise: EAGAIN waits for the next event, any other error
 * fails the server. ECONNREFUSED on the connected UDP socket means an
 * ICMP port unreachable came back: nobody serves DNS there. */
static bool
subquery_io_failed(struct subquery *q)
{
	if (errno == EINTR)
		return false;
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		subquery_server_failed(q, strerror(errno));
	return true;
}

static void
subquery_answer(struct subquery *q, const struct dns_response *resp)
{
	switch (resp->answer) {
	case DNS_ANS_ADDRS:
		q->naddrs = resp->naddrs;
		memcpy(q->addrs, resp->addrs, resp->naddrs * sizeof(resp->addrs[0]));
		q->has_ttl = true;
		q->ttl = resp->ttl;
		subquery_done(q, RESOLVER_OK);
		return;
	case DNS_ANS_NODATA:
	case DNS_ANS_NXDOMAIN:
		/* RFC 2308 §5: without an SOA a negative answer has no TTL
		 * and is not cached. */
		q->has_ttl = resp->has_soa;
		q->ttl = resp->neg_ttl;
		subquery_done(q,
			resp->answer == DNS_ANS_NXDOMAIN ? RESOLVER_NXDOMAIN : RESOLVER_NODATA);
		return;
	case DNS_ANS_SERVFAIL:
		subquery_server_failed(q, "SERVFAIL");
		return;
	case DNS_ANS_REFUSED:
		subquery_server_failed(q, "error rcode");
		return;
	case DNS_ANS_TRUNCATED:
		/* Only reached over TCP, where TC makes no sense. */
		subquery_server_failed(q, "truncated answer over TCP");
		return;
	}
}

/* A fresh id and the query in q->msg, behind its two-byte TCP length
 * (RFC 1035 §4.2.2; UDP sends from q->msg + 2). */
static bool
subquery_build(struct subquery *q)
{
	q->id = resolver_random16(q->lk->r);
	if (dns_build_query(q->msg + 2, sizeof(q->msg) - 2, &q->msg_len, q->id, q->lk->name,
		    q->qtype) != DNS_OK)
		return false;
	q->msg[0] = (uint8_t)(q->msg_len >> 8);
	q->msg[1] = (uint8_t)q->msg_len;
	return true;
}

static void
subquery_start_tcp(struct subquery *q)
{
	struct resolver *r = q->lk->r;
	int fd;

	subquery_close(q);
	/* RFC 7766 §5: same server, same question; a fresh id as well. */
	if (!subquery_build(q)) {
		subquery_server_failed(q, "cannot build query");
		return;
	}
	if ((fd = net_connect_start(&r->nameservers[q->server], NULL,
		     resolver_egress_for(r, &r->nameservers[q->server]))) < 0) {
		subquery_server_failed(q, strerror(errno));
		return;
	}
	q->fd = fd;
	watcher_init(&q->w, fd, subquery_on_io, q);
	if (loop_watch(r->loop, &q->w, LOOP_WRITE) < 0) {
		subquery_server_failed(q, strerror(errno));
		return;
	}
	q->state = SUBQUERY_TCP_CONNECT;
	r->stats.queries++;
	q->io_done = 0;
	timer_start(r->loop, &q->timer, r->timeout_ms);
}

static void
subquery_udp_read(struct subquery *q)
{
	struct resolver *r = q->lk->r;
	struct dns_response resp;

	for (;;) {
		ssize_t n = recv(q->fd, r->scratch, sizeof(r->scratch), 0);
		enum dns_status st;

		if (n < 0) {
			if (subquery_io_failed(q))
				return;
			continue;
		}
		st = dns_parse_response(r->scratch, (size_t)n, q->id, q->lk->name, q->qtype, &resp);
		if (st != DNS_OK) {
			/* Spoofed, stale or broken: keep waiting for the
			 * real answer until the timer says otherwise. */
			log_debug("resolver: %s %s: ignoring datagram: %s", q->lk->name,
				subquery_type_str(q), dns_status_str(st));
			continue;
		}
		if (resp.answer == DNS_ANS_TRUNCATED) {
			log_debug("resolver: %s %s: truncated, retrying over TCP", q->lk->name,
				subquery_type_str(q));
			subquery_start_tcp(q);
			return;
		}
		subquery_answer(q, &resp);
		return;
	}
}

static void
subquery_tcp_write(struct subquery *q)
{
	size_t total = q->msg_len + 2;

	while (q->io_done < total) {
		ssize_t n = send(q->fd, q->msg + q->io_done, total - q->io_done, MSG_NOSIGNAL);

		if (n < 0) {
			if (subquery_io_failed(q))
				return;
			continue;
		}
		q->io_done += (size_t)n;
	}
	q->state = SUBQUERY_TCP_READ;
	q->io_done = 0;
	if (loop_watch(q->lk->r->loop, &q->w, LOOP_READ) < 0)
		subquery_server_failed(q, strerror(errno));
}

/* Reads the two-byte length, then the answer it announces. Returns true
 * once q->tcp_buf holds all of it; false to wait or after a failure. */
static bool
subquery_tcp_fill(struct subquery *q)
{
	for (;;) {
		bool in_len = q->io_done < 2;
		uint8_t *dst = in_len ? q->len_buf + q->io_done : q->tcp_buf + (q->io_done - 2);
		size_t want = in_len ? 2 - q->io_done : q->tcp_need - (q->io_done - 2);
		ssize_t n = recv(q->fd, dst, want, 0);

		if (n < 0) {
			if (subquery_io_failed(q))
				return false;
			continue;
		}
		if (n == 0) {
			subquery_server_failed(q, "connection closed before the answer");
			return false;
		}
		q->io_done += (size_t)n;
		if (q->io_done == 2) {
			q->tcp_need = (size_t)q->len_buf[0] << 8 | q->len_buf[1];
			if (q->tcp_need < DNS_HEADER_LEN) {
				subquery_server_failed(q, "answer shorter than a header");
				return false;
			}
			if (!(q->tcp_buf = malloc(q->tcp_need))) {
				subquery_server_failed(q, "out of memory");
				return false;
			}
		}
		if (q->io_done > 2 && q->io_done - 2 == q->tcp_need)
			return true;
	}
}

static void
subquery_tcp_read(struct subquery *q)
{
	struct dns_response resp;
	enum dns_status st;

	if (!subquery_tcp_fill(q))
		return;
	/* One query per connection: anything but our answer is a failure
	 * of this server, not a packet to ignore. */
	st = dns_parse_response(q->tcp_buf, q->tcp_need, q->id, q->lk->name, q->qtype, &resp);
	if (st != DNS_OK) {
		subquery_server_failed(q, dns_status_str(st));
		return;
	}
	subquery_answer(q, &resp);
}

static void
subquery_on_io(struct loop *loop, unsigned events, void *arg)
{
	struct subquery *q = arg;
	int err;

	if (q->lk->stopped)
		return;
	switch (q->state) {
	case SUBQUERY_UDP:
		subquery_udp_read(q);
		break;
	case SUBQUERY_TCP_CONNECT:
		if ((err = net_connect_result(q->fd)) != 0) {
			subquery_server_failed(q, strerror(err));
			break;
		}
		q->state = SUBQUERY_TCP_WRITE;
		subquery_tcp_write(q);
		break;
	case SUBQUERY_TCP_WRITE:
		subquery_tcp_write(q);
		break;
	case SUBQUERY_TCP_READ:
		subquery_tcp_read(q);
		break;
	case SUBQUERY_IDLE:
	case SUBQUERY_DONE:
		break;
	}
}

/* Opens a fresh connected UDP socket (a new random source port, chosen by
 * the kernel) to the current server and sends a query with a fresh id.
 * Returns 0, or -1 with errno. */
static int
subquery_send_udp(struct subquery *q)
{
	struct resolver *r = q->lk->r;
	const union sockaddr_any *ns = &r->nameservers[q->server];
	int fd, saved;
	ssize_t n;

	if (!subquery_build(q)) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(ns->sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (resolver_egress_for(r, ns) &&
		net_apply_egress(fd, ns->sa.sa_family, false, resolver_egress_for(r, ns)) < 0)
		goto fail;
	/* Connected: the kernel drops datagrams from any other address or
	 * port, so only the server asked can answer. */
	if (connect(fd, &ns->sa, addr_len(ns)) < 0)
		goto fail;
	do {
		n = send(fd, q->msg + 2, q->msg_len, 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		goto fail;
	watcher_init(&q->w, fd, subquery_on_io, q);
	if (loop_watch(r->loop, &q->w, LOOP_READ) < 0)
		goto fail;
	q->fd = fd;
	q->state = SUBQUERY_UDP;
	r->stats.queries++;
	timer_start(r->loop, &q->timer, r->timeout_ms);
	return 0;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/* Next try: servers in turn, attempts rounds (resolv.conf semantics). */
static void
subquery_next_try(struct subquery *q)
{
	struct resolver *r = q->lk->r;

	subquery_close(q);
	while (q->tries < r->attempts * r->nnameservers) {
		q->server = q->tries % r->nnameservers;
		q->tries++;
		if (subquery_send_udp(q) == 0) {
			if (log_enabled(LOG_LVL_DEBUG)) {
				char buf[ADDR_STRLEN];

				log_debug("resolver: %s %s: id %u to %s (try %u)", q->lk->name,
					subquery_type_str(q), q->id,
					addr_format(&r->nameservers[q->server], buf, sizeof(buf)),
					q->tries);
			}
			return;
		}
		subquery_log_server(q, "cannot ask", strerror(errno));
		q->had_error = true;
	}
	q->state = SUBQUERY_IDLE;
	if (!q->had_error)
		r->stats.timeouts++;
	subquery_done(q, q->had_error ? RESOLVER_SERVFAIL : RESOLVER_TIMEOUT);
}

static void
subquery_on_timer(struct loop *loop, void *arg)
{
	struct subquery *q = arg;

	if (q->lk->stopped || q->state == SUBQUERY_DONE)
		return;
	if (q->state != SUBQUERY_IDLE)
		log_debug("resolver: %s %s: no answer in %u ms", q->lk->name, subquery_type_str(q),
			q->lk->r->timeout_ms);
	subquery_next_try(q);
}

/* --- lookups ------------------------------------------------------------- */

static void
lookup_release(void *arg)
{
	free(arg);
}

/*
 * The deferred-release shape every such object follows: unregister the
 * watchers and close the fds (with the timers), mark it stopped, queue the
 * release on the loop. Watchers of this lookup may still have events later
 * in this batch; the loop skips unregistered ones, and the handlers return
 * at once on a stopped lookup. Also leaves the in-flight list, so no new
 * waiter joins it. Safe to call twice.
 */
static void
lookup_stop(struct lookup *lk)
{
	if (lk->stopped)
		return;
	for (int i = 0; i < 2; i++)
		subquery_close(&lk->sub[i]);
	LIST_REMOVE(lk, inflight);
	lk->r->nlookups--;
	lk->stopped = true;
	loop_release(lk->r->loop, &lk->rel, lookup_release, lk);
}

/* The lookup's status from its two queries': an address from either wins;
 * then NXDOMAIN (about the name, whichever type said it); NODATA only when
 * both said it; a server failure over plain silence. */
static enum resolver_status
lookup_status(const enum resolver_status st[2])
{
	if (st[0] == RESOLVER_OK || st[1] == RESOLVER_OK)
		return RESOLVER_OK;
	if (st[0] == RESOLVER_NXDOMAIN || st[1] == RESOLVER_NXDOMAIN)
		return RESOLVER_NXDOMAIN;
	if (st[0] == RESOLVER_NODATA && st[1] == RESOLVER_NODATA)
		return RESOLVER_NODATA;
	if (st[0] == RESOLVER_SERVFAIL || st[1] == RESOLVER_SERVFAIL)
		return RESOLVER_SERVFAIL;
	return RESOLVER_TIMEOUT;
}

/* lk->res's addresses: the preferred family's answer first. */
static void
lookup_collect_addrs(struct lookup *lk)
{
	size_t first = lk->r->prefer_family == AF_INET6 ? 1 : 0;

	lk->res.naddrs = 0;
	for (size_t k = 0; k < 2; k++) {
		const struct subquery *q = &lk->sub[k == 0 ? first : 1 - first];

		if (q->state == SUBQUERY_DONE && q->status == RESOLVER_OK)
			result_add_family(&lk->res, q->addrs, q->naddrs,
				q->qtype == DNS_TYPE_A ? AF_INET : AF_INET6);
	}
}

/*
 * How long lk->res may stay in the cache: the least TTL of the parts that
 * make up the answer, capped (negative answers harder). Returns false when
 * it must not be cached: a failure, or an address list whose other family
 * is unknown, or a negative answer without an SOA (RFC 2308 §5).
 */
static bool
lookup_cache_ttl(const struct lookup *lk, const enum resolver_status st[2], uint32_t *out)
{
	uint32_t ttl = UINT32_MAX, cap = lk->r->cache_max_ttl;
	bool cacheable = lk->res.status != RESOLVER_NXDOMAIN;

	for (int i = 0; i < 2; i++) {
		const struct subquery *q = &lk->sub[i];
		bool part;

		switch (lk->res.status) {
		case RESOLVER_OK:
			/* A family without data (and without an SOA) adds nothing. */
			part = st[i] == RESOLVER_OK || (st[i] == RESOLVER_NODATA && q->has_ttl);
			if (!part && st[i] != RESOLVER_NODATA)
				cacheable = false;
			break;
		case RESOLVER_NXDOMAIN:
			/* Either type's NXDOMAIN with an SOA is enough. */
			part = st[i] == RESOLVER_NXDOMAIN && q->has_ttl;
			cacheable = cacheable || part;
			break;
		case RESOLVER_NODATA:
			part = q->has_ttl;
			cacheable = cacheable && part;
			break;
		default:
			return false;
		}
		if (part && q->ttl < ttl)
			ttl = q->ttl;
	}
	if (lk->res.status != RESOLVER_OK && cap > RESOLVER_MAX_NEG_TTL)
		cap = RESOLVER_MAX_NEG_TTL;
	*out = ttl < cap ? ttl : cap;
	return cacheable;
}

/* Combines both queries into lk->res and caches it when it is an answer
 * (positive or negative) rather than a failure. */
static void
lookup_result(struct lookup *lk)
{
	enum resolver_status st[2];
	uint32_t ttl;

	for (int i = 0; i < 2; i++)
		st[i] = lk->sub[i].state == SUBQUERY_DONE ? lk->sub[i].status : RESOLVER_TIMEOUT;
	lk->res.status = lookup_status(st);
	lk->res.naddrs = 0;
	if (lk->res.status == RESOLVER_OK)
		lookup_collect_addrs(lk);
	if (lookup_cache_ttl(lk, st, &ttl))
		cache_put(lk->r, lk->name, lk->res.status, lk->res.addrs, lk->res.naddrs, ttl);
}

static void
lookup_complete(struct lookup *lk)
{
	struct resolver_query *q;

	lookup_result(lk);
	log_debug("resolver: %s: %s, %zu addresses", lk->name, resolver_status_str(lk->res.status),
		lk->res.naddrs);
	/* Off the in-flight list first, so a callback that looks up the same
	 * name again finds the cache (or starts afresh), not this lookup. */
	lookup_stop(lk);
	while ((q = TAILQ_FIRST(&lk->waiters)) != NULL)
		query_deliver(&lk->waiters, q, &lk->res);
}

/* The lookup in flight for key, or NULL. */
static struct lookup *
lookup_find(struct resolver *r, const char *key)
{
	struct lookup *lk;

	LIST_FOREACH(lk, &r->lookups, inflight)
	if (strcmp(lk->name, key) == 0)
		return lk;
	return NULL;
}

static struct lookup *
lookup_new(struct resolver *r, const char *key)
{
	struct lookup *lk = calloc(1, sizeof(*lk));
	static const uint16_t types[2] = { DNS_TYPE_A, DNS_TYPE_AAAA };

	if (!lk)
		return NULL;
	lk->r = r;
	TAILQ_INIT(&lk->waiters);
	/* key fits: resolver_start bounded it to sizeof(lk->name).
	 * NOLINTNEXTLINE(clang-analyzer-security.insecureAPI.strcpy) */
	strcpy(lk->name, key);
	for (int i = 0; i < 2; i++) {
		struct subquery *q = &lk->sub[i];

		q->lk = lk;
		q->qtype = types[i];
		q->fd = -1;
		q->state = SUBQUERY_IDLE;
		watcher_init(&q->w, -1, subquery_on_io, q);
		timer_init(&q->timer, subquery_on_timer, q);
		/* The first send happens from the timer, so that even an
		 * immediate failure reaches the callback on a later
		 * iteration, never inside resolver_start. */
		timer_start(r->loop, &q->timer, 0);
	}
	LIST_INSERT_HEAD(&r->lookups, lk, inflight);
	r->nlookups++;
	return lk;
}

/* --- public API ---------------------------------------------------------- */

/* Empties the cache and sizes its hash table for r->cache_size entries.
 * Returns -1 when out of memory, with the cache disabled (size 0). */
static int
cache_reset(struct resolver *r)
{
	struct cache_entry *e;

	while ((e = TAILQ_FIRST(&r->lru)) != NULL)
		cache_unlink(r, e);
	free(r->buckets);
	r->buckets = NULL;
	r->nbuckets = 0;
	if (r->cache_size == 0)
		return 0;
	r->nbuckets = 16;
	while (r->nbuckets < r->cache_size && r->nbuckets < (1u << 20))
		r->nbuckets *= 2;
	if (!(r->buckets = calloc(r->nbuckets, sizeof(*r->buckets)))) {
		r->nbuckets = 0;
		r->cache_size = 0;
		return -1;
	}
	return 0;
}

/* Nameservers from opt, else from resolv.conf, else 127.0.0.1; the try
 * timeout and attempts from opt, else resolv.conf's options, else the
 * defaults. */
static void
resolver_set_nameservers(struct resolver *r, const struct resolver_options *opt)
{
	static const uint8_t localhost[4] = { 127, 0, 0, 1 };

	r->nnameservers = 0;
	r->timeout_ms = RESOLVER_DEFAULT_TIMEOUT_MS;
	r->attempts = RESOLVER_DEFAULT_ATTEMPTS;
	for (size_t i = 0; opt && opt->nameservers && i < opt->nnameservers; i++) {
		union sockaddr_any *ns = &r->nameservers[r->nnameservers];

		if (r->nnameservers == RESOLVER_MAX_NAMESERVERS) {
			log_warnx("resolver: only the first %d nameservers are used",
				RESOLVER_MAX_NAMESERVERS);
			break;
		}
		*ns = opt->nameservers[i];
		if (addr_port(ns) == 0)
			addr_set_port(ns, RESOLVER_DNS_PORT);
		r->nnameservers++;
	}
	/* resolv.conf always supplies the options; its nameservers only
	 * when none were configured. */
	resolver_read_resolv_conf(r,
		opt && opt->resolv_conf_path ? opt->resolv_conf_path : "/etc/resolv.conf",
		r->nnameservers == 0);
	if (r->nnameservers == 0) {
		/* resolv.conf(5): no nameserver line means the local one. */
		addr_from_ip(&r->nameservers[0], AF_INET, localhost, RESOLVER_DNS_PORT);
		r->nnameservers = 1;
	}
	/* The configuration's own values win over the host's (timeout dns,
	 * dns-attempts): a daemon whose nameservers are configured should not
	 * take its retry policy from a file written for another resolver. */
	if (opt && opt->timeout_ms > 0)
		r->timeout_ms = opt->timeout_ms;
	if (opt && opt->attempts > 0)
		r->attempts = opt->attempts;
}

/* Only what decides the route of a query: the interface and the mark. */
static void
resolver_set_egress(struct resolver *r, const struct egress *e)
{
	egress_init(&r->egress);
	if (!e)
		return;
	memcpy(r->egress.ifname, e->ifname, sizeof(r->egress.ifname));
	r->egress.has_mark = e->has_mark;
	r->egress.mark = e->mark;
}

/* Servers, resolv.conf options, preference, cache and hosts file from opt
 * (NULL: all defaults). Returns -1 when out of memory: the cache is then
 * disabled, or (when the cache could be sized) the previous hosts file
 * stays in use; everything before that step is applied. */
static int
resolver_apply(struct resolver *r, const struct resolver_options *opt)
{
	char *hosts_path;

	resolver_set_nameservers(r, opt);
	r->max_lookups = opt ? opt->max_lookups : 0;
	r->prefer_family = opt && opt->prefer_family == AF_INET6 ? AF_INET6 : AF_INET;
	resolver_set_egress(r, opt ? opt->egress : NULL);

	/* Answers from the old servers or under the old limits go. */
	r->cache_size = opt ? opt->cache_size : 0;
	r->cache_max_ttl = opt ? opt->cache_max_ttl : 0;
	if (cache_reset(r) < 0)
		return -1;

	if (!(hosts_path = strdup(opt && opt->hosts_path ? opt->hosts_path : "/etc/hosts")))
		return -1;
	free(r->hosts_path);
	r->hosts_path = hosts_path;
	r->hosts_seen = false;
	hosts_refresh(r);

	if (log_enabled(LOG_LVL_DEBUG)) {
		char buf[ADDR_STRLEN];

		for (size_t i = 0; i < r->nnameservers; i++)
			log_debug("resolver: nameserver %s",
				addr_format(&r->nameservers[i], buf, sizeof(buf)));
		log_debug("resolver: timeout %u ms, attempts %u, cache %u entries", r->timeout_ms,
			r->attempts, r->cache_size);
	}
	return 0;
}

struct resolver *
resolver_new(struct loop *loop, const struct resolver_options *opt)
{
	struct resolver *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->loop = loop;
	TAILQ_INIT(&r->lru);
	LIST_INIT(&r->lookups);
	TAILQ_INIT(&r->ready);
	timer_init(&r->ready_timer, resolver_on_ready, r);
	if (resolver_fill_random(r) < 0)
		goto fail;
	r->hash_seed = (uint32_t)resolver_random16(r) << 16 | resolver_random16(r);
	if (resolver_apply(r, opt) < 0)
		goto fail;
	return r;
fail:
	free(r->buckets);
	free(r->hosts_path);
	hosts_clear(r);
	free(r);
	return NULL;
}

void
resolver_reconfigure(struct resolver *r, const struct resolver_options *opt)
{
	if (resolver_apply(r, opt) < 0)
		log_warnx("resolver: out of memory while reconfiguring; cache disabled or "
			  "hosts file not switched");
}

void
resolver_set_timeout(struct resolver *r, unsigned timeout_ms, unsigned attempts)
{
	if (timeout_ms > 0)
		r->timeout_ms = timeout_ms;
	if (attempts > 0)
		r->attempts = attempts;
}

void
resolver_free(struct resolver *r)
{
	struct lookup *lk;

	if (!r)
		return;
	while ((lk = LIST_FIRST(&r->lookups)) != NULL) {
		query_list_free(&lk->waiters);
		lookup_stop(lk);
	}
	query_list_free(&r->ready);
	timer_stop(r->loop, &r->ready_timer);
	r->cache_size = 0;
	(void)cache_reset(r);
	hosts_clear(r);
	free(r->hosts_path);
	free(r);
}

/* Whether a new lookup would pass max_lookups: it is then refused, counted,
 * and logged at most once every 10 s. A nameserver that never answers must
 * not let datagrams to ever new names (or a flood of sessions) pile up
 * sockets until the daemon runs out of descriptors. */
static bool
resolver_at_limit(struct resolver *r)
{
	if (!r->max_lookups || r->nlookups < r->max_lookups)
		return false;
	r->stats.refused++;
	if (log_ratelimit_ok(&r->limit_log, loop_now(r->loop), 10000, 1))
		log_warnx("resolver: %u lookups in flight (max-lookups): new ones refused; are "
			  "the nameservers answering?",
			r->nlookups);
	return true;
}

struct resolver_query *
resolver_start(struct resolver *r, const char *name, resolver_cb cb, void *arg)
{
	struct resolver_query *q = calloc(1, sizeof(*q));
	char key[DNS_HOSTNAME_MAX + 1];
	struct lookup *lk;
	enum dns_status st;

	if (!q)
		return NULL;
	r->stats.lookups++;
	q->r = r;
	q->cb = cb;
	q->arg = arg;

	if (numeric_lookup(name, &q->res))
		goto answer;
	if ((st = dns_check_name(name)) != DNS_OK) {
		/* The name came from a client: not echoed into the log. */
		log_debug("resolver: rejected a %zu-byte name: %s", strlen(name),
			dns_status_str(st));
		q->res.status = RESOLVER_BADNAME;
		goto answer;
	}
	resolver_lower(key, name, sizeof(key));
	if (hosts_lookup(r, key, &q->res) || localhost_lookup(r, key, &q->res))
		goto answer;
	if (cache_get(r, key, &q->res)) {
		r->stats.cache_hits++;
		log_debug("resolver: %s: cached %s", key, resolver_status_str(q->res.status));
		goto answer;
	}
	if (!(lk = lookup_find(r, key))) {
		if (resolver_at_limit(r)) {
			q->res.status = RESOLVER_LIMIT;
			goto answer;
		}
		if (!(lk = lookup_new(r, key))) {
			q->res.status = RESOLVER_NOMEM;
			goto answer;
		}
	}
	q->where = QUERY_WAITING;
	q->lk = lk;
	TAILQ_INSERT_TAIL(&lk->waiters, q, link);
	return q;
answer:
	resolver_answer_later(r, q);
	return q;
}

void
resolver_cancel(struct resolver_query *q)
{
	struct lookup *lk;

	if (!q)
		return;
	switch (q->where) {
	case QUERY_DELIVERING:
		/* Called from its own callback (e.g. the owner closing): the
		 * handle is freed when the callback returns. */
		return;
	case QUERY_READY:
		TAILQ_REMOVE(&q->r->ready, q, link);
		free(q);
		return;
	case QUERY_WAITING:
		lk = q->lk;
		TAILQ_REMOVE(&lk->waiters, q, link);
		free(q);
		/* The last waiter gone: nobody wants the answer. Other
		 * waiters keep the lookup going. */
		if (TAILQ_EMPTY(&lk->waiters))
			lookup_stop(lk);
		return;
	}
}
