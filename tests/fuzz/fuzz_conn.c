/*
 * Fuzz target: a whole client connection. The input's bytes arrive on the
 * client side of a socketpair handed to the real connection state machine
 * (conn) inside the real event loop, split into chunks, then the client
 * half-closes and everything is torn down. What the fuzzer can make the
 * daemon do outside is kept on loopback: request rules allow only
 * 127.0.0.0/8 and ::1, and the only nameserver is a closed loopback port.
 *
 * Input: byte 0 bit 0 = the listener expects a PROXY header; byte 1 = chunk
 * size (0 means all at once); the rest is what the client sends.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "connlimit.h"
#include "log.h"
#include "loop.h"
#include "pwcheck.h"
#include "resolver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_config[] = "listen 127.0.0.1:1080\n"
				  "auth password none\n"
				  "user alice wonderland\n"
				  "nameserver 127.0.0.1:9\n"
				  "proxy-protocol-from 127.0.0.1\n"
				  "rule allow to 127.0.0.0/8,::1\n"
				  "timeout connect 1\n"
				  "timeout bind 1\n"
				  "timeout udp 1\n"
				  "auth-fail-limit 0\n";

static struct conn_env env;
static struct loop *loop;

static void
fuzz_init(void)
{
	struct resolver_options ro;
	struct connlimit_config lc;
	char err[512];

	log_init(LOG_LVL_ERROR);
	loop = loop_new();
	if (!loop || config_parse_string(fuzz_config, "fuzz.conf", &env.cfg, err, sizeof(err)) < 0)
		abort();
	memset(&ro, 0, sizeof(ro));
	ro.nameservers = env.cfg->nameservers;
	ro.nnameservers = env.cfg->nnameservers;
	ro.prefer_family = AF_INET;
	ro.cache_size = 100;
	ro.cache_max_ttl = 60;
	struct config *cfg = env.cfg;
	struct resolver *resolver = resolver_new(loop, &ro);
	struct connlimit *limits;

	memset(&lc, 0, sizeof(lc));
	limits = connlimit_new(&lc);
	if (!resolver || !limits)
		abort();
	conn_env_init(&env, loop, cfg, resolver, limits);
	{
		/* The password helpers, as the daemon runs them (forked once). */
		struct pwcheck_options po = { .helper = { "fuzz.conf", true, 1 },
			.ipv6_prefix = 64 };
		env.pwcheck = pwcheck_start(loop, cfg->users, &po);
		if (!env.pwcheck)
			abort();
	}
}

static void
pump(int n)
{
	for (int i = 0; i < n; i++)
		(void)loop_run_once(loop, 0);
}

/* Reads and discards what the daemon sent, so it never blocks on us. */
static void
drain(int fd)
{
	char sink[4096];
	while (read(fd, sink, sizeof(sink)) > 0)
		;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	union sockaddr_any peer, local;
	size_t chunk, off;
	int sv[2];

	if (!loop)
		fuzz_init();
	if (size < 2)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	(void)addr_parse("127.0.0.1", 40000, &peer);
	(void)addr_parse("127.0.0.1", 1080, &local);
	conn_accept(&env, sv[0], &peer, &local, data[0] & 1);
	chunk = data[1] ? data[1] : size;
	data += 2;
	size -= 2;
	for (off = 0; off < size;) {
		size_t n = size - off < chunk ? size - off : chunk;
		ssize_t w = write(sv[1], data + off, n);
		if (w > 0)
			off += (size_t)w;
		else if (w < 0 && errno != EAGAIN)
			break;
		pump(2);
		drain(sv[1]);
		if (LIST_EMPTY(&env.conns))
			break; /* the daemon closed the connection */
	}
	(void)shutdown(sv[1], SHUT_WR);
	pump(3);
	drain(sv[1]);
	conn_stop_all(&env);
	pump(1);
	close(sv[1]);
	return 0;
}
