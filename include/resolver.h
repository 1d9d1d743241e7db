/*
 * resolver: asynchronous name lookups inside the event loop. Numeric
 * addresses and /etc/hosts are answered without a query; otherwise A and
 * AAAA queries go in parallel over connected UDP sockets (TCP when the answer
 * is truncated) to the configured nameservers, with a TTL-honouring cache and
 * coalescing of concurrent lookups of the same name. Callbacks never run
 * from inside resolver_start.
 */
#ifndef SOCKS5D_RESOLVER_H
#define SOCKS5D_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "egress.h"

struct loop;
struct resolver;
struct resolver_query;

#define RESOLVER_MAX_ADDRS 16

enum resolver_status {
	RESOLVER_OK = 0,   /* naddrs >= 1 */
	RESOLVER_NXDOMAIN, /* the name does not exist */
	RESOLVER_NODATA,   /* exists, but no A/AAAA */
	RESOLVER_TIMEOUT,  /* every server timed out */
	RESOLVER_SERVFAIL, /* servers answered with an error */
	RESOLVER_BADNAME,  /* not a valid hostname (length, labels) */
	RESOLVER_NOMEM,
	RESOLVER_LIMIT, /* max_lookups lookups already in flight: refused at once */
};

struct resolver_result {
	enum resolver_status status;
	size_t naddrs;
	union sockaddr_any addrs[RESOLVER_MAX_ADDRS]; /* port 0; preferred family first */
};

struct resolver_options {
	const union sockaddr_any *nameservers; /* NULL/0: read /etc/resolv.conf */
	size_t nnameservers;
	int prefer_family;            /* AF_INET or AF_INET6 */
	unsigned cache_size;          /* entries, 0 disables the cache */
	unsigned cache_max_ttl;       /* seconds */
	const char *hosts_path;       /* NULL: /etc/hosts */
	const char *resolv_conf_path; /* NULL: /etc/resolv.conf */
	unsigned timeout_ms;          /* per try; 0: resolv.conf's timeout:, else 5 s */
	unsigned attempts;            /* rounds; 0: resolv.conf's attempts:, else 2 */
	/* Lookups that may wait on nameservers at once (each holds two
	 * sockets and two timers), whoever started them; 0: no limit. A name
	 * already in flight, cached, numeric or in the hosts file never
	 * counts and is never refused. */
	unsigned max_lookups;
	/* Where queries leave: the interface and the mark of e (the rest is
	 * not used), except to a nameserver on loopback. NULL: as routed. */
	const struct egress *egress;
};

struct resolver_stats {
	uint64_t lookups;    /* resolver_start calls */
	uint64_t queries;    /* DNS queries sent (UDP and TCP) */
	uint64_t cache_hits; /* answered from the cache */
	uint64_t timeouts;   /* queries that got no answer from any server */
	uint64_t refused;    /* lookups answered RESOLVER_LIMIT */
};

/* res is only valid during the call. */
typedef void (*resolver_cb)(const struct resolver_result *res, void *arg);

/*
 * A resolver on loop, configured from opt as resolver_reconfigure does
 * (opt NULL: every default, servers from /etc/resolv.conf). Reads
 * resolv.conf and the hosts file now; blocks only if the kernel's random
 * pool is not yet seeded (early boot). Returns NULL when out of memory or
 * when getrandom fails.
 */
struct resolver *resolver_new(struct loop *loop, const struct resolver_options *opt);
/*
 * Frees r, its cache and every pending lookup without calling back (their
 * handles become invalid). May run with lookups in flight: their sockets
 * close at once, their memory goes at the loop's next release step (or in
 * loop_free). Must not be called from a resolver callback. NULL is a no-op.
 */
void resolver_free(struct resolver *r);
/*
 * Applies new options (SIGHUP): nameservers (re-reading resolv.conf, whose
 * timeout: and attempts: options apply over the defaults, and opt's
 * timeout_ms and attempts, when not 0, over those), preferred
 * family, hosts file and cache limits, and always empties the cache.
 * Replaces whatever resolver_set_timeout set. Lookups in flight go on and
 * ask the new servers, with the new timeout, from their next try. Out of
 * memory is logged and leaves a working resolver: the cache disabled, or
 * the previous hosts file still in use.
 */
void resolver_reconfigure(struct resolver *r, const struct resolver_options *opt);
/*
 * Overrides the per-try timeout and the number of rounds over the
 * nameservers (resolv.conf "options timeout:N attempts:N", default 5 s and
 * 2); 0 keeps the current value. Applies to tries started afterwards,
 * until the next resolver_reconfigure.
 */
void resolver_set_timeout(struct resolver *r, unsigned timeout_ms, unsigned attempts);
/*
 * Starts a lookup of name (a numeric address, or a hostname; a final dot
 * is allowed). cb runs exactly once, on a later loop iteration and never
 * from inside this call, unless the query is cancelled first; a name that
 * cannot be looked up is answered RESOLVER_BADNAME the same way, and one
 * that would need a new lookup while max_lookups are in flight
 * RESOLVER_LIMIT. The
 * handle stays valid until cb returns or resolver_cancel. A callback may
 * start and cancel other lookups, but must not call resolver_free.
 * Returns NULL only on allocation failure (cb will not run).
 */
struct resolver_query *resolver_start(struct resolver *r, const char *name, resolver_cb cb,
	void *arg);
/*
 * The callback will not run and q is invalid afterwards. Called on a
 * handle from inside its own callback, it does nothing (the handle ends
 * when the callback returns). NULL is a no-op. A lookup that no caller
 * waits for any more stops its queries.
 */
void resolver_cancel(struct resolver_query *q);
/* "ok", "nxdomain", ..., for logs; never NULL. */
const char *resolver_status_str(enum resolver_status st);
/* Counters since resolver_new (not reset by resolver_reconfigure). */
const struct resolver_stats *resolver_get_stats(const struct resolver *r);

#endif
