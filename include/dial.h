/*
 * dial: the outbound TCP connection of a CONNECT. Tries a list of addresses
 * in order until one connects, within one deadline: each attempt gets an
 * equal share of what is left of it, so one black-holed address cannot use
 * it all when another would answer. An allow hook vets each address first
 * (rules apply to the address really connected to). The dial is embedded
 * in its owner and borrows the owner's watcher, which holds the connected
 * fd at the end, so the relay can take it over without a new registration.
 */
#ifndef SOCKS5D_DIAL_H
#define SOCKS5D_DIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "loop.h"

enum dial_result {
	DIAL_PENDING,   /* attempts run: done will be called */
	DIAL_CONNECTED, /* the watcher's fd is connected (the owner's now) */
	DIAL_FAILED,    /* no address connected: err says why the last one failed */
	DIAL_DENIED,    /* the allow hook refused every address, none was tried */
};

/* Called once with the result (never DIAL_PENDING), never from inside
 * dial_start; bnd is the connected socket's local address (CONNECTED). */
typedef void (
	*dial_done_cb)(enum dial_result result, int err, const union sockaddr_any *bnd, void *arg);

struct dial_options {
	const union sockaddr_any *external4; /* IPv4 source, or NULL */
	const union sockaddr_any *external6; /* IPv6 source, or NULL */
	/* May the connection go to `to`? NULL allows every address. */
	bool (*allow)(const union sockaddr_any *to, void *arg);
	void *allow_arg;
};

struct dial {
	struct loop *loop;
	struct watcher *w;               /* the owner's; holds the attempt's fd */
	struct timer timer;              /* the attempt's share of the budget */
	const union sockaddr_any *addrs; /* the owner's, in order (ports ignored) */
	size_t naddrs;
	size_t next; /* index of the next address to try */
	uint16_t port;
	uint64_t deadline_ms; /* loop time the whole dial must end by */
	int last_err;         /* errno of the last failed attempt */
	bool denied;          /* an address was refused by the hook */
	bool stopped;         /* dial_stop ran, or done was called */
	struct dial_options opt;
	dial_done_cb done;
	void *arg;
};

/* Starts connecting to addrs[0..naddrs) at port before deadline_ms (loop
 * time); addrs and *opt's addresses must outlive the dial. Returns
 * DIAL_PENDING, or DIAL_FAILED/DIAL_DENIED when no attempt could even start
 * (d->last_err says why; done is not called). */
enum dial_result dial_start(struct dial *d, struct loop *loop, struct watcher *w,
	const union sockaddr_any *addrs, size_t naddrs, uint16_t port, uint64_t deadline_ms,
	const struct dial_options *opt, dial_done_cb done, void *arg)
	__attribute__((warn_unused_result));
/* Closes the attempt in progress and stops the timer; done will not be
 * called. Idempotent; does nothing to a connected fd already handed over. */
void dial_stop(struct dial *d);

#endif
