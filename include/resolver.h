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

struct loop;
struct resolver;
struct resolver_query;

#define RESOLVER_MAX_ADDRS 16

enum resolver_status {
	RESOLVER_OK = 0,        /* naddrs >= 1 */
	RESOLVER_NXDOMAIN,      /* the name does not exist */
	RESOLVER_NODATA,        /* exists, but no A/AAAA */
	RESOLVER_TIMEOUT,       /* every server timed out */
	RESOLVER_SERVFAIL,      /* servers answered with an error */
	RESOLVER_BADNAME,       /* not a valid hostname (length, labels) */
	RESOLVER_NOMEM,
};

struct resolver_result {
	enum resolver_status status;
	size_t naddrs;
	union sockaddr_any addrs[RESOLVER_MAX_ADDRS]; /* port 0; preferred family first */
};

struct resolver_options {
	const union sockaddr_any *nameservers; /* NULL/0: read /etc/resolv.conf */
	size_t nnameservers;
	int prefer_family;                     /* AF_INET or AF_INET6 */
	unsigned cache_size;                   /* entries, 0 disables the cache */
	unsigned cache_max_ttl;                /* seconds */
	const char *hosts_path;                /* NULL: /etc/hosts */
	const char *resolv_conf_path;          /* NULL: /etc/resolv.conf */
};

struct resolver_stats {
	uint64_t lookups;      /* resolver_start calls */
	uint64_t queries;      /* DNS queries sent (UDP and TCP) */
	uint64_t cache_hits;   /* answered from the cache */
	uint64_t timeouts;     /* queries that got no answer from any server */
};

typedef void (*resolver_cb)(const struct resolver_result *res, void *arg);

struct resolver *resolver_new(struct loop *loop, const struct resolver_options *opt);
/* Cancels all pending queries without calling back, frees everything. */
void resolver_free(struct resolver *r);
/* Applies new options (reload): later lookups use the new nameservers and
 * preferences; lookups in flight finish with the old ones; the cache is
 * flushed when the nameservers change. */
void resolver_reconfigure(struct resolver *r, const struct resolver_options *opt);
/* Starts a lookup; cb runs exactly once on a later loop iteration unless the
 * query is cancelled first. Returns NULL only on allocation failure. */
struct resolver_query *resolver_start(struct resolver *r, const char *name,
	resolver_cb cb, void *arg);
/* The callback will not run; the handle is invalid afterwards. */
void resolver_cancel(struct resolver_query *q);
const char *resolver_status_str(enum resolver_status st);
const struct resolver_stats *resolver_get_stats(const struct resolver *r);

/*
 * Additions (resolver.c):
 * - The callback's res is only valid during the call. The handle becomes
 *   invalid when the callback returns; resolver_cancel on it from inside its
 *   own callback is a no-op. A callback may start and cancel other lookups
 *   but must not call resolver_free.
 * - resolver_free may run with lookups in flight (their sockets close at
 *   once, their memory goes at the loop's release step, or in loop_free).
 */

/* Overrides the per-try timeout and the number of rounds over the
 * nameservers (resolv.conf "options timeout:N attempts:N", default 5 s and
 * 2); 0 keeps the current value. Applies to tries started afterwards. */
void resolver_set_timeout(struct resolver *r, unsigned timeout_ms, unsigned attempts);

/* Applies new options (SIGHUP): servers (re-reading resolv.conf), preferred
 * family, hosts file and cache limits, and empties the cache. Lookups in
 * flight go on and ask the new servers from their next try. Replaces what
 * resolver_set_timeout set. Out of memory leaves the cache disabled. */
void resolver_reconfigure(struct resolver *r, const struct resolver_options *opt);

#endif
