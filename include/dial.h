/*
 * dial: the outbound TCP connection of a CONNECT over a list of addresses,
 * within one deadline. With Happy Eyeballs (RFC 8305, delay_ms > 0) the
 * families are interleaved (first_family first), an attempt
 * starts, the next one starts delay_ms later if nothing has connected (or at
 * once when one fails), attempts already running go on, the first to
 * connect wins and the others are closed; every address still gets its
 * attempt before the deadline. Without (delay_ms 0) one address is tried at
 * a time, in order, each with an equal share of what is left of the
 * deadline, so one black-holed address cannot use it all. A route hook
 * vets each address first (rules apply to the address really connected to)
 * and says how that attempt leaves: its source address and socket
 * settings. The dial is embedded in its owner and borrows the owner's
 * watcher, given to an attempt whenever it is free; attempts beyond it get
 * watchers of the dial's own, allocated when the first such attempt starts
 * and released through the loop (events queued for an attempt the dial
 * closed may still name them later in the batch, after the owner freed the
 * dial). At the end the owner's watcher holds the connected fd
 * (registered, or not yet registered when another attempt won: the
 * relay's first loop_watch registers it), so the relay takes it over as it
 * is.
 */
#ifndef SOCKS5D_DIAL_H
#define SOCKS5D_DIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "egress.h"
#include "loop.h"

/* Attempts in flight at once; a new one beyond closes the oldest. */
#define DIAL_MAX_INFLIGHT 4
/* Addresses a dial looks at (the resolver's RESOLVER_MAX_ADDRS). */
#define DIAL_MAX_ADDRS 16
/* RFC 8305 §5: the recommended Connection Attempt Delay. */
#define DIAL_DEFAULT_DELAY_MS 250

enum dial_result {
	DIAL_PENDING,   /* attempts run: done will be called */
	DIAL_CONNECTED, /* the watcher's fd is connected (the owner's now) */
	DIAL_FAILED,    /* no address connected: err says why the last one failed */
	DIAL_DENIED,    /* the route hook refused every address, none was tried */
};

/* Called once with the result (never DIAL_PENDING), never from inside
 * dial_start; bnd is the connected socket's local address (CONNECTED). */
typedef void (
	*dial_done_cb)(enum dial_result result, int err, const union sockaddr_any *bnd, void *arg);

/* How one attempt leaves. */
struct dial_route {
	union sockaddr_any from; /* source address; AF_UNSPEC: the kernel's choice */
	struct egress egress;    /* socket settings (unset fields: left alone) */
};

/* May the connection go to `to` (port set)? If so, fill *route (it comes
 * initialised: no source, no settings) and return true. */
typedef bool (*dial_route_cb)(const union sockaddr_any *to, struct dial_route *route, void *arg);

struct dial_options {
	dial_route_cb route; /* NULL: every address, no source, no settings */
	void *route_arg;
	unsigned delay_ms; /* Happy Eyeballs' Connection Attempt Delay; 0: one at a time */
	/* Happy Eyeballs: the family tried first when the list has it;
	 * AF_UNSPEC (or none of it): the first address's family. */
	int first_family;
};

struct dial;
struct dial_spares;

/* One connection attempt (internal to dial, embedded for its memory). */
struct dial_attempt {
	struct dial *d;
	struct watcher *w;       /* the owner's, or one of spares; NULL: none yet */
	struct dial_route route; /* how it leaves */
	uint64_t started_ms;
	size_t index; /* addrs[index] */
	bool busy;    /* an fd in w, connecting */
};

struct dial {
	struct loop *loop;
	struct watcher *w;               /* the owner's; holds the connected fd at the end */
	struct timer timer;              /* next attempt (delay or share), or the deadline */
	const union sockaddr_any *addrs; /* the owner's (ports ignored) */
	size_t naddrs;                   /* at most DIAL_MAX_ADDRS of them */
	uint8_t order[DIAL_MAX_ADDRS];   /* indexes of addrs in the order tried */
	size_t next;                     /* position in order of the next address */
	uint16_t port;
	uint64_t deadline_ms; /* loop time the whole dial must end by */
	int last_err;         /* errno of the last failed attempt */
	bool denied;          /* an address was refused by the hook */
	bool stopped;         /* dial_stop ran, or done was called */
	struct dial_options opt;
	struct dial_attempt att[DIAL_MAX_INFLIGHT];
	struct dial_spares *spares; /* watchers of att[1..]; NULL until needed */
	size_t connected;           /* DIAL_CONNECTED: index in addrs of the winner */
	struct dial_route route;    /* DIAL_CONNECTED: how the winner leaves */
	dial_done_cb done;
	void *arg;
};

/* Starts connecting to addrs[0..naddrs) at port before deadline_ms (loop
 * time) with the owner's watcher w (not registered now); addrs must
 * outlive the dial. Returns DIAL_PENDING, or DIAL_FAILED/DIAL_DENIED when
 * no attempt could even start (d->last_err says why; done is not called). */
enum dial_result dial_start(struct dial *d, struct loop *loop, struct watcher *w,
	const union sockaddr_any *addrs, size_t naddrs, uint16_t port, uint64_t deadline_ms,
	const struct dial_options *opt, dial_done_cb done, void *arg)
	__attribute__((warn_unused_result));
/* Closes the attempts in progress and stops the timer; done will not be
 * called. Idempotent; does nothing to a connected fd already handed over. */
void dial_stop(struct dial *d);

#endif
