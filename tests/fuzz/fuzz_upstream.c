/*
 * Fuzz target: what a parent proxy sends back, through the client side of
 * SOCKS5, SOCKS4 and HTTP CONNECT (upstream_hs_feed), and the input as a
 * parent URL (upstream_parse).
 *
 * Input: byte 0 picks the parent (SOCKS5 with or without a password,
 * SOCKS4, HTTP) and the command, byte 1 the chunk size; the rest is the
 * parent's byte stream, fed in chunks.
 *
 * Invariants checked: a feed never takes more than it was given, and takes
 * something unless it waits for more; the machine only moves forward; once
 * it is done or failed it stays so; what it queues to send fits its buffer;
 * the same stream fed whole gives the same outcome and takes the same
 * bytes (a failure may take what it was shown); a parsed URL's label parses back to the same parent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                              \
	do {                                                                                  \
		if (!(x)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                              \
		}                                                                             \
	} while (0)

static const char *const parents[] = {
	"socks5://p:1080",
	"socks5://user:pass@p:1080",
	"socks4://id@p:1080",
	"http://user:pass@p:3128",
};

struct outcome {
	enum upstream_feed last;
	size_t taken;
	enum upstream_phase phase;
	uint8_t rep;
	bool parent_failed;
};

/* Feeds the stream in chunks of chunk bytes (0: whole), as a caller that
 * peeks would: what a feed does not take is offered again. */
static struct outcome
run(const struct upstream *u, uint8_t cmd, const uint8_t *p, size_t len, size_t chunk)
{
	struct socks_addr dst = { .atyp = SOCKS_ATYP_DOMAIN, .port = 443, .name_len = 3 };
	struct upstream_hs *h = malloc(sizeof(*h));
	struct outcome o = { UPSTREAM_FEED_MORE, 0, UPSTREAM_PH_METHOD, 0, false };
	size_t off = 0;

	CHECK(h != NULL);
	memcpy(dst.name, "a.b", 4);
	if (upstream_hs_start(h, u, cmd, &dst) < 0) {
		o.phase = h->phase;
		free(h);
		return o;
	}
	while (off < len && h->phase != UPSTREAM_PH_DONE) {
		size_t n = chunk && chunk < len - off ? chunk : len - off, taken = 0;
		enum upstream_phase before = h->phase;

		CHECK(h->out_len <= sizeof(h->out));
		upstream_hs_sent(h, h->out_len);
		o.last = upstream_hs_feed(h, p + off, n, &taken);
		CHECK(taken <= n);
		CHECK(o.last != UPSTREAM_FEED_MORE || taken == n);
		CHECK(taken > 0);
		CHECK(h->phase >= before);
		CHECK((o.last == UPSTREAM_FEED_DONE || o.last == UPSTREAM_FEED_FAILED) ==
			(h->phase == UPSTREAM_PH_DONE));
		off += taken;
	}
	o.taken = off;
	o.phase = h->phase;
	o.rep = h->res.rep;
	o.parent_failed = h->res.parent_failed;
	if (h->phase == UPSTREAM_PH_DONE)
		CHECK(o.parent_failed ? o.rep == SOCKS_REP_GENERAL_FAILURE
				      : o.rep <= SOCKS_REP_ATYP_NOT_SUPPORTED);
	free(h);
	return o;
}

static void
check_url(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), err[200];
	struct upstream u, again;

	CHECK(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	if (upstream_parse(s, &u, err, sizeof(err)) == 0) {
		CHECK(upstream_parse(u.label, &again, err, sizeof(err)) == 0);
		CHECK(again.proto == u.proto && again.port == u.port);
		CHECK(strcmp(again.host, u.host) == 0);
		CHECK(u.ulen == strlen(u.user) || memchr(u.user, 0, u.ulen) == NULL);
	}
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t cmds[] = { SOCKS_CMD_CONNECT, SOCKS_CMD_BIND,
		SOCKS_CMD_UDP_ASSOCIATE };
	struct upstream u;
	struct outcome a, b;
	char err[200];

	check_url(data, size);
	if (size < 2)
		return 0;
	CHECK(upstream_parse(parents[data[0] & 3], &u, err, sizeof(err)) == 0);
	a = run(&u, cmds[(data[0] >> 2) % 3], data + 2, size - 2, (size_t)(data[1] % 16));
	b = run(&u, cmds[(data[0] >> 2) % 3], data + 2, size - 2, 0);
	CHECK(a.phase == b.phase && a.rep == b.rep && a.parent_failed == b.parent_failed);
	/* A failure judged early takes what it was shown: only answers agree. */
	if (a.last != UPSTREAM_FEED_FAILED)
		CHECK(a.taken == b.taken);
	return 0;
}
