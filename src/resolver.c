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

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* An address without a port: what hosts entries, answers and the cache keep. */
struct raddr {
	sa_family_t family;  /* AF_INET or AF_INET6 */
	uint8_t ip[16];      /* network byte order; 4 bytes for AF_INET */
};

struct hosts_entry {
	char *name;          /* lowercase, no final dot */
	size_t line;         /* file order: ties keep it */
	struct raddr addr;
};

struct cache_entry {
	struct cache_entry *hnext;      /* hash chain */
	struct cache_entry *lru_prev;   /* towards the most recently used */
	struct cache_entry *lru_next;   /* towards the least recently used */
	uint32_t hash;
	uint64_t expires_ms;            /* loop_now() deadline */
	enum resolver_status status;
	size_t naddrs;
	struct raddr addrs[RESOLVER_MAX_ADDRS]; /* already in preference order */
	char name[DNS_HOSTNAME_MAX + 1];
};

/*
 * One query (A or AAAA) of a lookup. The state says which watcher and timer
 * are armed; every state but DONE has the timer armed.
 */
enum rq_state {
	RQ_IDLE,        /* timer (0 ms) to send the first try; no fd */
	RQ_UDP,         /* datagram sent; READ on fd, timer = try timeout */
	RQ_TCP_CONNECT, /* TC answer seen, connecting; WRITE on fd */
	RQ_TCP_WRITE,   /* writing length + query; WRITE on fd */
	RQ_TCP_READ,    /* reading length + answer; READ on fd */
	RQ_DONE,        /* outcome below is final; no fd, no timer */
};

struct rq {
	struct lookup *lk;
	uint16_t qtype;          /* DNS_TYPE_A or DNS_TYPE_AAAA */
	enum rq_state state;
	unsigned tries;          /* tries started, over all servers */
	size_t server;           /* index of the server asked now */
	bool had_error;          /* a server failed rather than stayed silent */
	uint16_t id;             /* id of the query on the wire */
	uint8_t msg[2 + DNS_QUERY_MAX]; /* TCP length prefix, then the query */
	size_t msg_len;          /* query length, prefix not counted */
	size_t io_done;          /* TCP: bytes written, then bytes read */
	uint8_t len_buf[2];      /* TCP: the answer's length prefix */
	uint8_t *tcp_buf;        /* TCP: the answer, once its length is known */
	size_t tcp_need;         /* TCP: its length */
	int fd;                  /* -1 when closed */
	struct watcher w;
	struct timer timer;
	/* Outcome, valid in RQ_DONE. */
	enum resolver_status status;
	bool has_ttl;            /* ttl below is known (negative: from an SOA) */
	uint32_t ttl;
	size_t naddrs;
	struct raddr addrs[DNS_MAX_ADDRS];
};

/* A list of waiters: a lookup's, or the resolver's ready list. */
struct qlist {
	struct resolver_query *head, *tail;
};

/* A lookup in flight for one name, shared by every waiter for that name. */
struct lookup {
	struct resolver *r;
	struct lookup *prev, *next;     /* r->lookups, while in flight */
	struct qlist waiters;
	bool finished;                  /* no more I/O; freed at release */
	struct release rel;
	struct rq rq[2];                /* A, AAAA */
	struct resolver_result res;     /* what the waiters are given */
	char name[DNS_HOSTNAME_MAX + 1];/* lowercase, no final dot */
};

enum query_where {
	Q_READY,       /* on r->ready, answer in ->res */
	Q_WAITING,     /* on lk->waiters */
	Q_DELIVERING,  /* off every list, its callback is running */
};

struct resolver_query {
	struct resolver *r;
	struct lookup *lk;              /* Q_WAITING only */
	enum query_where where;
	struct resolver_query *prev, *next;
	uint64_t seq;                   /* Q_READY: order of arrival */
	resolver_cb cb;
	void *arg;
	struct resolver_result res;     /* Q_READY: the answer */
};

struct resolver {
	struct loop *loop;
	union sockaddr_any ns[RESOLVER_MAX_NAMESERVERS];
	size_t nns;
	unsigned timeout_ms;            /* per try */
	unsigned attempts;              /* rounds over all servers */
	int prefer_family;

	char *hosts_path;
	struct hosts_entry *hosts;      /* sorted by name, then line */
	size_t nhosts;
	bool hosts_seen;                /* hosts_stat below is valid */
	struct stat hosts_stat;
	uint64_t hosts_checked_ms;

	unsigned cache_size;            /* entries; 0: no cache */
	unsigned cache_max_ttl;         /* seconds */
	unsigned cache_count;
	struct cache_entry **buckets;
	size_t nbuckets;                /* a power of two */
	struct cache_entry *lru_head, *lru_tail;

	struct lookup *lookups;         /* in flight, for coalescing */
	struct qlist ready;             /* answered without a query */
	uint64_t ready_seq;
	struct timer ready_timer;       /* 0 ms: delivers r->ready */

	struct resolver_stats stats;
	uint32_t hash_seed;             /* cache hash start, random */
	uint8_t rnd[64];                /* getrandom() pool for query ids */
	size_t rnd_left;
	uint8_t scratch[RESOLVER_SCRATCH]; /* one UDP datagram */
};

static void rq_next_try(struct rq *q);
static void rq_on_io(struct loop *loop, unsigned events, void *arg);
static void lookup_finish(struct lookup *lk);

const struct resolver_stats *
resolver_get_stats(const struct resolver *r)
{
	return &r->stats;
}

const char *
resolver_status_str(enum resolver_status st)
{
	switch (st) {
	case RESOLVER_OK: return "ok";
	case RESOLVER_NXDOMAIN: return "nxdomain";
	case RESOLVER_NODATA: return "nodata";
	case RESOLVER_TIMEOUT: return "timeout";
	case RESOLVER_SERVFAIL: return "servfail";
	case RESOLVER_BADNAME: return "bad name";
	case RESOLVER_NOMEM: return "out of memory";
	}
	return "unknown";
}

static const char *
rq_type_str(const struct rq *q)
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

static void
raddr_to_sockaddr(const struct raddr *a, union sockaddr_any *out)
{
	memset(out, 0, sizeof(*out));
	if (a->family == AF_INET) {
		out->sin.sin_family = AF_INET;
		memcpy(&out->sin.sin_addr, a->ip, 4);
	} else {
		out->sin6.sin6_family = AF_INET6;
		memcpy(&out->sin6.sin6_addr, a->ip, 16);
	}
}

/* Appends list's addresses of one family to res, up to RESOLVER_MAX_ADDRS. */
static void
result_add_family(struct resolver_result *res, const struct raddr *list,
    size_t n, sa_family_t family)
{
	for (size_t i = 0; i < n && res->naddrs < RESOLVER_MAX_ADDRS; i++)
		if (list[i].family == family)
			raddr_to_sockaddr(&list[i], &res->addrs[res->naddrs++]);
}

static sa_family_t
resolver_other_family(const struct resolver *r)
{
	return r->prefer_family == AF_INET6 ? AF_INET : AF_INET6;
}

static void
qlist_append(struct qlist *l, struct resolver_query *q)
{
	q->next = NULL;
	q->prev = l->tail;
	if (l->tail)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
}

static void
qlist_remove(struct qlist *l, struct resolver_query *q)
{
	if (l->head == q)
		l->head = q->next;
	else
		q->prev->next = q->next;
	if (l->tail == q)
		l->tail = q->prev;
	else
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
}

/* --- configuration files ------------------------------------------------- */

static bool
resolver_parse_ns(const char *s, union sockaddr_any *out)
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

		if (scope == 0 &&
		    strnum_parse_u64(pct, 0, UINT32_MAX, &scope) != STRNUM_OK)
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
resolv_conf_option(const char *path, const char *arg, const char *name, unsigned max,
    unsigned *out)
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
			if (r->nns == RESOLVER_MAX_NAMESERVERS) {
				log_debug("resolver: %s: nameserver %s ignored (max %d)",
				    path, arg, RESOLVER_MAX_NAMESERVERS);
				continue;
			}
			if (resolver_parse_ns(arg, &r->ns[r->nns]))
				r->nns++;
			else
				log_warnx("resolver: %s: bad nameserver \"%s\"", path, arg);
		} else if (strcmp(kw, "options") == 0) {
			while ((arg = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
				unsigned secs = 0;

				/* secs stays 0 when the number was refused. */
				if (resolv_conf_option(path, arg, "timeout:",
				    RESOLVER_MAX_TIMEOUT_S, &secs)) {
					if (secs > 0)
						r->timeout_ms = secs * 1000u;
				} else {
					resolv_conf_option(path, arg, "attempts:",
					    RESOLVER_MAX_ATTEMPTS, &r->attempts);
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
hosts_add(struct hosts_entry **v, size_t *n, size_t *cap, const char *name,
    size_t line, const struct raddr *addr)
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
		struct raddr addr;

		lineno++;
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		if (!(tok = strtok_r(line, " \t\r\n", &save)))
			continue;
		memset(&addr, 0, sizeof(addr));
		if (inet_pton(AF_INET, tok, addr.ip) == 1)
			addr.family = AF_INET;
		else if (inet_pton(AF_INET6, tok, addr.ip) == 1)
			addr.family = AF_INET6;
		else
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
	struct raddr lo[2];

	if (strcmp(key, "localhost") != 0 && !(n > s && strcmp(key + n - s, suffix) == 0))
		return false;
	memset(lo, 0, sizeof(lo));
	lo[0].family = AF_INET;
	lo[0].ip[0] = 127;
	lo[0].ip[3] = 1;
	lo[1].family = AF_INET6;
	lo[1].ip[15] = 1;
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
	struct cache_entry **pp = &r->buckets[e->hash & (r->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		r->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		r->lru_tail = e->lru_prev;
	r->cache_count--;
	free(e);
}

static void
cache_lru_front(struct resolver *r, struct cache_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = r->lru_head;
	if (r->lru_head)
		r->lru_head->lru_prev = e;
	else
		r->lru_tail = e;
	r->lru_head = e;
}

static struct cache_entry *
cache_find(struct resolver *r, const char *key, uint32_t hash)
{
	struct cache_entry *e;

	if (!r->buckets)
		return NULL;
	for (e = r->buckets[hash & (r->nbuckets - 1)]; e; e = e->hnext)
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
	/* Most recently used moves to the front; eviction takes the tail. */
	if (e != r->lru_head) {
		e->lru_prev->lru_next = e->lru_next;
		if (e->lru_next)
			e->lru_next->lru_prev = e->lru_prev;
		else
			r->lru_tail = e->lru_prev;
		cache_lru_front(r, e);
	}
	res->status = e->status;
	res->naddrs = 0;
	for (size_t i = 0; i < e->naddrs; i++)
		raddr_to_sockaddr(&e->addrs[i], &res->addrs[res->naddrs++]);
	return true;
}

static void
cache_put(struct resolver *r, const char *key, enum resolver_status status,
    const struct raddr *addrs, size_t naddrs, uint32_t ttl)
{
	uint32_t hash = resolver_hash(r, key);
	struct cache_entry *e;

	if (r->cache_size == 0 || ttl == 0)
		return;
	if ((e = cache_find(r, key, hash)) != NULL)
		cache_unlink(r, e);
	if (r->cache_count >= r->cache_size)
		cache_unlink(r, r->lru_tail);
	if (!(e = calloc(1, sizeof(*e)))) {
		log_warnx("resolver: cache: out of memory");
		return;
	}
	e->hash = hash;
	e->expires_ms = loop_now(r->loop) + (uint64_t)ttl * 1000u;
	e->status = status;
	e->naddrs = naddrs;
	memcpy(e->addrs, addrs, naddrs * sizeof(*addrs));
	/* key is a lookup's name, the same size as e->name.
	 * NOLINTNEXTLINE(clang-analyzer-security.insecureAPI.strcpy) */
	strcpy(e->name, key);
	e->hnext = r->buckets[hash & (r->nbuckets - 1)];
	r->buckets[hash & (r->nbuckets - 1)] = e;
	cache_lru_front(r, e);
	r->cache_count++;
}

/* --- delivery ------------------------------------------------------------ */

static void
resolver_on_ready(struct loop *loop, void *arg)
{
	struct resolver *r = arg;
	uint64_t limit = r->ready_seq;
	struct resolver_query *q;

	(void)loop;
	/* Answers queued by the callbacks below wait for the next run, like
	 * every other answer: they must not run inside their resolver_start. */
	while ((q = r->ready.head) != NULL && q->seq <= limit) {
		qlist_remove(&r->ready, q);
		q->where = Q_DELIVERING;
		q->cb(&q->res, q->arg);
		free(q);
	}
	if (r->ready.head && !timer_active(&r->ready_timer))
		timer_start(r->loop, &r->ready_timer, 0);
}

/* Queues q (with q->res filled in) for delivery on a later iteration. */
static void
resolver_answer_later(struct resolver *r, struct resolver_query *q)
{
	q->where = Q_READY;
	q->lk = NULL;
	q->seq = ++r->ready_seq;
	qlist_append(&r->ready, q);
	if (!timer_active(&r->ready_timer))
		timer_start(r->loop, &r->ready_timer, 0);
}

/* --- one query: UDP, then TCP after TC ----------------------------------- */

static void
rq_close(struct rq *q)
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
rq_finish(struct rq *q, enum resolver_status status)
{
	struct lookup *lk = q->lk;

	rq_close(q);
	q->state = RQ_DONE;
	q->status = status;
	log_debug("resolver: %s %s: %s after %u tries", lk->name, rq_type_str(q),
	    resolver_status_str(status), q->tries);
	/* NXDOMAIN is about the name, not the type: no need to wait for the
	 * other query. */
	if (status == RESOLVER_NXDOMAIN ||
	    (lk->rq[0].state == RQ_DONE && lk->rq[1].state == RQ_DONE))
		lookup_finish(lk);
}

/* The asked server failed (not merely stayed silent): on to the next try. */
static void
rq_server_failed(struct rq *q, const char *why)
{
	char buf[ADDR_STRLEN];

	if (log_enabled(LOG_LVL_DEBUG))
		log_debug("resolver: %s %s: server %s: %s", q->lk->name, rq_type_str(q),
		    addr_format(&q->lk->r->ns[q->server], buf, sizeof(buf)), why);
	q->had_error = true;
	rq_next_try(q);
}

static void
rq_answer(struct rq *q, const struct dns_response *resp)
{
	switch (resp->answer) {
	case DNS_ANS_ADDRS:
		q->naddrs = 0;
		for (size_t i = 0; i < resp->naddrs; i++) {
			struct raddr *a = &q->addrs[q->naddrs++];

			memset(a, 0, sizeof(*a));
			a->family = resp->addrs[i].type == DNS_TYPE_A ? AF_INET : AF_INET6;
			memcpy(a->ip, resp->addrs[i].addr, 16);
		}
		q->has_ttl = true;
		q->ttl = resp->ttl;
		rq_finish(q, RESOLVER_OK);
		return;
	case DNS_ANS_NODATA:
	case DNS_ANS_NXDOMAIN:
		/* RFC 2308 §5: without an SOA a negative answer has no TTL
		 * and is not cached. */
		q->has_ttl = resp->has_soa;
		q->ttl = resp->neg_ttl;
		rq_finish(q, resp->answer == DNS_ANS_NXDOMAIN ? RESOLVER_NXDOMAIN :
		    RESOLVER_NODATA);
		return;
	case DNS_ANS_SERVFAIL:
		rq_server_failed(q, "SERVFAIL");
		return;
	case DNS_ANS_REFUSED:
		rq_server_failed(q, "error rcode");
		return;
	case DNS_ANS_TRUNCATED:
		/* Only reached over TCP, where TC makes no sense. */
		rq_server_failed(q, "truncated answer over TCP");
		return;
	}
}

static void
rq_start_tcp(struct rq *q)
{
	struct resolver *r = q->lk->r;
	int fd;

	rq_close(q);
	/* RFC 1035 §4.2.2 / RFC 7766 §5: same server, same question, a
	 * two-byte length before the message. A fresh id as well. */
	q->id = resolver_random16(r);
	if (dns_build_query(q->msg + 2, sizeof(q->msg) - 2, &q->msg_len, q->id,
	    q->lk->name, q->qtype) != DNS_OK) {
		rq_server_failed(q, "cannot build query");
		return;
	}
	q->msg[0] = (uint8_t)(q->msg_len >> 8);
	q->msg[1] = (uint8_t)q->msg_len;
	if ((fd = net_connect_start(&r->ns[q->server], NULL)) < 0) {
		rq_server_failed(q, strerror(errno));
		return;
	}
	q->fd = fd;
	watcher_init(&q->w, fd, rq_on_io, q);
	if (loop_watch(r->loop, &q->w, LOOP_WRITE) < 0) {
		rq_server_failed(q, strerror(errno));
		return;
	}
	q->state = RQ_TCP_CONNECT;
	q->lk->r->stats.queries++;
	q->io_done = 0;
	timer_start(r->loop, &q->timer, r->timeout_ms);
}

static void
rq_udp_read(struct rq *q)
{
	struct resolver *r = q->lk->r;
	struct dns_response resp;

	for (;;) {
		ssize_t n = recv(q->fd, r->scratch, sizeof(r->scratch), 0);
		enum dns_status st;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* ECONNREFUSED: an ICMP port unreachable came back
			 * on the connected socket; nobody serves DNS there. */
			rq_server_failed(q, strerror(errno));
			return;
		}
		st = dns_parse_response(r->scratch, (size_t)n, q->id, q->lk->name,
		    q->qtype, &resp);
		if (st != DNS_OK) {
			/* Spoofed, stale or broken: keep waiting for the
			 * real answer until the timer says otherwise. */
			log_debug("resolver: %s %s: ignoring datagram: %s", q->lk->name,
			    rq_type_str(q), dns_status_str(st));
			continue;
		}
		if (resp.answer == DNS_ANS_TRUNCATED) {
			log_debug("resolver: %s %s: truncated, retrying over TCP",
			    q->lk->name, rq_type_str(q));
			rq_start_tcp(q);
			return;
		}
		rq_answer(q, &resp);
		return;
	}
}

static void
rq_tcp_write(struct rq *q)
{
	size_t total = q->msg_len + 2;

	while (q->io_done < total) {
		ssize_t n = send(q->fd, q->msg + q->io_done, total - q->io_done,
		    MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			rq_server_failed(q, strerror(errno));
			return;
		}
		q->io_done += (size_t)n;
	}
	q->state = RQ_TCP_READ;
	q->io_done = 0;
	if (loop_watch(q->lk->r->loop, &q->w, LOOP_READ) < 0)
		rq_server_failed(q, strerror(errno));
}

static void
rq_tcp_read(struct rq *q)
{
	struct dns_response resp;
	enum dns_status st;

	for (;;) {
		uint8_t *dst;
		size_t want;
		ssize_t n;

		if (q->io_done < 2) {
			dst = q->len_buf + q->io_done;
			want = 2 - q->io_done;
		} else {
			dst = q->tcp_buf + (q->io_done - 2);
			want = q->tcp_need - (q->io_done - 2);
		}
		n = recv(q->fd, dst, want, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			rq_server_failed(q, strerror(errno));
			return;
		}
		if (n == 0) {
			rq_server_failed(q, "connection closed before the answer");
			return;
		}
		q->io_done += (size_t)n;
		if (q->io_done == 2) {
			q->tcp_need = (size_t)q->len_buf[0] << 8 | q->len_buf[1];
			if (q->tcp_need < DNS_HEADER_LEN) {
				rq_server_failed(q, "answer shorter than a header");
				return;
			}
			if (!(q->tcp_buf = malloc(q->tcp_need))) {
				rq_server_failed(q, "out of memory");
				return;
			}
		}
		if (q->io_done > 2 && q->io_done - 2 == q->tcp_need)
			break;
	}
	/* One query per connection: anything but our answer is a failure
	 * of this server, not a packet to ignore. */
	st = dns_parse_response(q->tcp_buf, q->tcp_need, q->id, q->lk->name, q->qtype,
	    &resp);
	if (st != DNS_OK) {
		rq_server_failed(q, dns_status_str(st));
		return;
	}
	rq_answer(q, &resp);
}

static void
rq_on_io(struct loop *loop, unsigned events, void *arg)
{
	struct rq *q = arg;
	int err;

	(void)loop;
	(void)events;
	if (q->lk->finished)
		return;
	switch (q->state) {
	case RQ_UDP:
		rq_udp_read(q);
		break;
	case RQ_TCP_CONNECT:
		if ((err = net_connect_result(q->fd)) != 0) {
			rq_server_failed(q, strerror(err));
			break;
		}
		q->state = RQ_TCP_WRITE;
		rq_tcp_write(q);
		break;
	case RQ_TCP_WRITE:
		rq_tcp_write(q);
		break;
	case RQ_TCP_READ:
		rq_tcp_read(q);
		break;
	case RQ_IDLE:
	case RQ_DONE:
		break;
	}
}

/* Opens a fresh connected UDP socket (a new random source port, chosen by
 * the kernel) to the current server and sends a query with a fresh id. */
static int
rq_send_udp(struct rq *q)
{
	struct resolver *r = q->lk->r;
	const union sockaddr_any *ns = &r->ns[q->server];
	int fd, saved;
	ssize_t n;

	q->id = resolver_random16(r);
	if (dns_build_query(q->msg + 2, sizeof(q->msg) - 2, &q->msg_len, q->id,
	    q->lk->name, q->qtype) != DNS_OK) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(ns->sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* Connected: the kernel drops datagrams from any other address or
	 * port, so only the server asked can answer. */
	if (connect(fd, &ns->sa, addr_len(ns)) < 0)
		goto fail;
	do {
		n = send(fd, q->msg + 2, q->msg_len, 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		goto fail;
	watcher_init(&q->w, fd, rq_on_io, q);
	if (loop_watch(r->loop, &q->w, LOOP_READ) < 0)
		goto fail;
	q->fd = fd;
	q->state = RQ_UDP;
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
rq_next_try(struct rq *q)
{
	struct resolver *r = q->lk->r;

	rq_close(q);
	while (q->tries < r->attempts * r->nns) {
		char buf[ADDR_STRLEN];

		q->server = q->tries % r->nns;
		q->tries++;
		if (rq_send_udp(q) == 0) {
			if (log_enabled(LOG_LVL_DEBUG))
				log_debug("resolver: %s %s: id %u to %s (try %u)",
				    q->lk->name, rq_type_str(q), q->id,
				    addr_format(&r->ns[q->server], buf, sizeof(buf)),
				    q->tries);
			return;
		}
		if (log_enabled(LOG_LVL_DEBUG))
			log_debug("resolver: %s %s: cannot ask %s: %s", q->lk->name,
			    rq_type_str(q),
			    addr_format(&r->ns[q->server], buf, sizeof(buf)),
			    strerror(errno));
		q->had_error = true;
	}
	q->state = RQ_IDLE;
	if (!q->had_error)
		r->stats.timeouts++;
	rq_finish(q, q->had_error ? RESOLVER_SERVFAIL : RESOLVER_TIMEOUT);
}

static void
rq_on_timer(struct loop *loop, void *arg)
{
	struct rq *q = arg;

	(void)loop;
	if (q->lk->finished || q->state == RQ_DONE)
		return;
	if (q->state != RQ_IDLE)
		log_debug("resolver: %s %s: no answer in %u ms", q->lk->name,
		    rq_type_str(q), q->lk->r->timeout_ms);
	rq_next_try(q);
}

/* --- lookups ------------------------------------------------------------- */

static void
lookup_release(void *arg)
{
	free(arg);
}

/* Stops all I/O, leaves the in-flight list, frees after the batch. */
static void
lookup_retire(struct lookup *lk)
{
	struct resolver *r = lk->r;

	for (int i = 0; i < 2; i++)
		rq_close(&lk->rq[i]);
	if (lk->prev)
		lk->prev->next = lk->next;
	else
		r->lookups = lk->next;
	if (lk->next)
		lk->next->prev = lk->prev;
	lk->prev = lk->next = NULL;
	lk->finished = true;
	/* Watchers of this lookup may still have events later in this
	 * batch; the loop skips unregistered ones but reads them first. */
	loop_release(r->loop, &lk->rel, lookup_release, lk);
}

/* Combines both queries into lk->res and caches it when it is an answer
 * (positive or negative) rather than a failure. */
static void
lookup_result(struct lookup *lk)
{
	struct resolver *r = lk->r;
	struct rq *a = &lk->rq[0], *aaaa = &lk->rq[1];
	struct resolver_result *res = &lk->res;
	struct raddr cached[RESOLVER_MAX_ADDRS];
	uint32_t ttl = UINT32_MAX, cap;
	bool cacheable = true;
	enum resolver_status st[2];

	for (int i = 0; i < 2; i++)
		st[i] = lk->rq[i].state == RQ_DONE ? lk->rq[i].status : RESOLVER_TIMEOUT;
	if (st[0] == RESOLVER_OK || st[1] == RESOLVER_OK)
		res->status = RESOLVER_OK;
	else if (st[0] == RESOLVER_NXDOMAIN || st[1] == RESOLVER_NXDOMAIN)
		res->status = RESOLVER_NXDOMAIN;
	else if (st[0] == RESOLVER_NODATA && st[1] == RESOLVER_NODATA)
		res->status = RESOLVER_NODATA;
	else if (st[0] == RESOLVER_SERVFAIL || st[1] == RESOLVER_SERVFAIL)
		res->status = RESOLVER_SERVFAIL;
	else
		res->status = RESOLVER_TIMEOUT;

	res->naddrs = 0;
	if (res->status == RESOLVER_OK) {
		const struct rq *first = r->prefer_family == AF_INET6 ? aaaa : a;
		const struct rq *second = first == a ? aaaa : a;

		if (first->state == RQ_DONE && first->status == RESOLVER_OK)
			result_add_family(res, first->addrs, first->naddrs, first == a ? AF_INET : AF_INET6);
		if (second->state == RQ_DONE && second->status == RESOLVER_OK)
			result_add_family(res, second->addrs, second->naddrs, second == a ? AF_INET : AF_INET6);
	}

	/* TTL: the least of the parts that make up the answer. An address
	 * list is cached only when the other family's part is known too. */
	switch (res->status) {
	case RESOLVER_OK:
		for (int i = 0; i < 2; i++) {
			const struct rq *q = &lk->rq[i];

			if (st[i] == RESOLVER_OK || (st[i] == RESOLVER_NODATA && q->has_ttl)) {
				if (q->ttl < ttl)
					ttl = q->ttl;
			} else if (st[i] != RESOLVER_NODATA) {
				cacheable = false;
			}
		}
		cap = r->cache_max_ttl;
		break;
	case RESOLVER_NXDOMAIN:
		cacheable = false;
		for (int i = 0; i < 2; i++) {
			const struct rq *q = &lk->rq[i];

			if (st[i] == RESOLVER_NXDOMAIN && q->has_ttl) {
				cacheable = true;
				if (q->ttl < ttl)
					ttl = q->ttl;
			}
		}
		cap = r->cache_max_ttl < RESOLVER_MAX_NEG_TTL ? r->cache_max_ttl : RESOLVER_MAX_NEG_TTL;
		break;
	case RESOLVER_NODATA:
		for (int i = 0; i < 2; i++) {
			if (!lk->rq[i].has_ttl)
				cacheable = false;
			else if (lk->rq[i].ttl < ttl)
				ttl = lk->rq[i].ttl;
		}
		cap = r->cache_max_ttl < RESOLVER_MAX_NEG_TTL ? r->cache_max_ttl : RESOLVER_MAX_NEG_TTL;
		break;
	default:
		cacheable = false;
		cap = 0;
		break;
	}
	if (!cacheable)
		return;
	if (ttl > cap)
		ttl = cap;
	for (size_t i = 0; i < res->naddrs; i++) {
		const union sockaddr_any *sa = &res->addrs[i];

		memset(&cached[i], 0, sizeof(cached[i]));
		cached[i].family = sa->sa.sa_family;
		if (sa->sa.sa_family == AF_INET)
			memcpy(cached[i].ip, &sa->sin.sin_addr, 4);
		else
			memcpy(cached[i].ip, &sa->sin6.sin6_addr, 16);
	}
	cache_put(r, lk->name, res->status, cached, res->naddrs, ttl);
}

static void
lookup_finish(struct lookup *lk)
{
	struct resolver_query *q;

	lookup_result(lk);
	log_debug("resolver: %s: %s, %zu addresses", lk->name,
	    resolver_status_str(lk->res.status), lk->res.naddrs);
	/* Off the in-flight list first, so a callback that looks up the same
	 * name again finds the cache (or starts afresh), not this lookup. */
	lookup_retire(lk);
	while ((q = lk->waiters.head) != NULL) {
		qlist_remove(&lk->waiters, q);
		q->where = Q_DELIVERING;
		q->cb(&lk->res, q->arg);
		free(q);
	}
}

static struct lookup *
lookup_new(struct resolver *r, const char *key)
{
	struct lookup *lk = calloc(1, sizeof(*lk));
	static const uint16_t types[2] = { DNS_TYPE_A, DNS_TYPE_AAAA };

	if (!lk)
		return NULL;
	lk->r = r;
	/* key fits: resolver_start bounded it to sizeof(lk->name).
	 * NOLINTNEXTLINE(clang-analyzer-security.insecureAPI.strcpy) */
	strcpy(lk->name, key);
	for (int i = 0; i < 2; i++) {
		struct rq *q = &lk->rq[i];

		q->lk = lk;
		q->qtype = types[i];
		q->fd = -1;
		q->state = RQ_IDLE;
		watcher_init(&q->w, -1, rq_on_io, q);
		timer_init(&q->timer, rq_on_timer, q);
		/* The first send happens from the timer, so that even an
		 * immediate failure reaches the callback on a later
		 * iteration, never inside resolver_start. */
		timer_start(r->loop, &q->timer, 0);
	}
	lk->next = r->lookups;
	if (r->lookups)
		r->lookups->prev = lk;
	r->lookups = lk;
	return lk;
}

/* --- public API ---------------------------------------------------------- */

/* Empties the cache and sizes its hash table for r->cache_size entries. */
static int
cache_reset(struct resolver *r)
{
	while (r->lru_head)
		cache_unlink(r, r->lru_head);
	free(r->buckets);
	r->buckets = NULL;
	r->nbuckets = 0;
	if (r->cache_size == 0)
		return 0;
	r->nbuckets = 16;
	while (r->nbuckets < r->cache_size && r->nbuckets < (1u << 20))
		r->nbuckets *= 2;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers. */
	if (!(r->buckets = calloc(r->nbuckets, sizeof(*r->buckets)))) {
		r->nbuckets = 0;
		r->cache_size = 0;
		return -1;
	}
	return 0;
}

/* Servers, resolv.conf options, preference, hosts file and cache from opt
 * (NULL: all defaults). Returns -1 when out of memory. */
static int
resolver_apply(struct resolver *r, const struct resolver_options *opt)
{
	const char *resolv_conf;
	char *hosts_path;

	r->nns = 0;
	r->timeout_ms = RESOLVER_DEFAULT_TIMEOUT_MS;
	r->attempts = RESOLVER_DEFAULT_ATTEMPTS;
	r->prefer_family = opt && opt->prefer_family == AF_INET6 ? AF_INET6 : AF_INET;
	if (opt && opt->nameservers) {
		for (size_t i = 0; i < opt->nnameservers; i++) {
			if (r->nns == RESOLVER_MAX_NAMESERVERS) {
				log_warnx("resolver: only the first %d nameservers are used",
				    RESOLVER_MAX_NAMESERVERS);
				break;
			}
			r->ns[r->nns] = opt->nameservers[i];
			if (addr_port(&r->ns[r->nns]) == 0)
				addr_set_port(&r->ns[r->nns], RESOLVER_DNS_PORT);
			r->nns++;
		}
	}
	/* resolv.conf always supplies the options; its nameservers only
	 * when none were configured. */
	resolv_conf = opt && opt->resolv_conf_path ? opt->resolv_conf_path : "/etc/resolv.conf";
	resolver_read_resolv_conf(r, resolv_conf, r->nns == 0);
	if (r->nns == 0) {
		/* resolv.conf(5): no nameserver line means the local one. */
		(void)addr_parse("127.0.0.1", RESOLVER_DNS_PORT, &r->ns[0]);
		r->nns = 1;
	}

	if (!(hosts_path = strdup(opt && opt->hosts_path ? opt->hosts_path : "/etc/hosts")))
		return -1;
	free(r->hosts_path);
	r->hosts_path = hosts_path;
	r->hosts_seen = false;
	hosts_refresh(r);

	/* Answers from the old servers or under the old limits go. */
	r->cache_size = opt ? opt->cache_size : 0;
	r->cache_max_ttl = opt ? opt->cache_max_ttl : 0;
	if (cache_reset(r) < 0)
		return -1;

	if (log_enabled(LOG_LVL_DEBUG)) {
		char buf[ADDR_STRLEN];

		for (size_t i = 0; i < r->nns; i++)
			log_debug("resolver: nameserver %s",
			    addr_format(&r->ns[i], buf, sizeof(buf)));
		log_debug("resolver: timeout %u ms, attempts %u, cache %u entries",
		    r->timeout_ms, r->attempts, r->cache_size);
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
		log_warnx("resolver: out of memory while reconfiguring; cache disabled");
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
	struct resolver_query *q;

	if (!r)
		return;
	while (r->lookups) {
		struct lookup *lk = r->lookups;

		while ((q = lk->waiters.head) != NULL) {
			qlist_remove(&lk->waiters, q);
			free(q);
		}
		lookup_retire(lk);
	}
	while ((q = r->ready.head) != NULL) {
		qlist_remove(&r->ready, q);
		free(q);
	}
	timer_stop(r->loop, &r->ready_timer);
	r->cache_size = 0;
	(void)cache_reset(r);
	hosts_clear(r);
	free(r->hosts_path);
	free(r);
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
	for (lk = r->lookups; lk; lk = lk->next)
		if (strcmp(lk->name, key) == 0)
			break;
	if (!lk && !(lk = lookup_new(r, key))) {
		q->res.status = RESOLVER_NOMEM;
		goto answer;
	}
	q->where = Q_WAITING;
	q->lk = lk;
	qlist_append(&lk->waiters, q);
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
	case Q_DELIVERING:
		/* Called from its own callback (e.g. the owner closing): the
		 * handle is freed when the callback returns. */
		return;
	case Q_READY:
		qlist_remove(&q->r->ready, q);
		free(q);
		return;
	case Q_WAITING:
		lk = q->lk;
		qlist_remove(&lk->waiters, q);
		free(q);
		/* The last waiter gone: nobody wants the answer. Other
		 * waiters keep the lookup going. */
		if (!lk->waiters.head && !lk->finished)
			lookup_retire(lk);
		return;
	}
}
