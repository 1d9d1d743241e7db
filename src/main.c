/*
 * main: command line, configuration loading, signals, and the run of the
 * one event loop. The only caller of exit(). Always in the foreground, as
 * systemd expects.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "relay.h"
#include "resolver.h"

#ifndef SOCKS5D_VERSION
#define SOCKS5D_VERSION "0.1.0"
#endif

/* How long open sessions may run on after SIGTERM before they are closed. */
#define DRAIN_TIMEOUT_MS 5000

struct daemon {
	struct loop *loop;
	struct conn_env env;
	struct listener *listeners[CONFIG_MAX_LISTEN];
	size_t nlisteners;
	struct timer drain_timer;
	bool stopping;
};

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: socks5d [-dhtTV] [-f file]\n"
		"  -f file  configuration file (default " CONFIG_DEFAULT_PATH ";\n"
		"           without -f and without that file: listen " CONFIG_DEFAULT_LISTEN
		", no authentication)\n"
		"  -t       check the configuration and exit\n"
		"  -T       check the configuration, print it and exit\n"
		"  -d       debug logging\n"
		"  -V       print the version and exit\n"
		"  -h       this help\n");
}

static void
close_listeners(struct daemon *d)
{
	for (size_t i = 0; i < d->nlisteners; i++)
		listener_close(d->listeners[i]);
	d->nlisteners = 0;
}

static void
log_counters(const struct daemon *d, const char *when)
{
	const struct conn_stats *s = &d->env.stats;
	log_info("%s: sessions active=%" PRIu64 " total=%" PRIu64 " auth_failures=%" PRIu64
		 " bytes_up=%" PRIu64 " bytes_down=%" PRIu64, when, s->active, s->accepted,
		s->auth_failures, s->bytes_up, s->bytes_down);
}

static void
on_empty(void *arg)
{
	struct daemon *d = arg;

	if (d->stopping)
		loop_stop(d->loop);
}

static void
on_drain_timeout(struct loop *loop, void *arg)
{
	struct daemon *d = arg;

	log_info("shutdown: closing %" PRIu64 " sessions still open", d->env.stats.active);
	conn_close_all(&d->env);
	loop_stop(loop);
}

static void
on_stop_signal(struct loop *loop, int signo, void *arg)
{
	struct daemon *d = arg;

	if (d->stopping) {
		/* A second signal: do not wait for the drain. */
		conn_close_all(&d->env);
		loop_stop(loop);
		return;
	}
	d->stopping = true;
	log_info("%s: no longer accepting; %" PRIu64 " sessions to finish (at most %d s)",
		strsignal(signo), d->env.stats.active, DRAIN_TIMEOUT_MS / 1000);
	close_listeners(d);
	if (d->env.stats.active == 0) {
		loop_stop(loop);
		return;
	}
	timer_start(loop, &d->drain_timer, DRAIN_TIMEOUT_MS);
}

static void
on_hup(struct loop *loop, int signo, void *arg)
{
	(void)loop;
	(void)signo;
	(void)arg;
	log_warnx("SIGHUP: live reload is not supported yet; restart to apply changes");
}

static void
on_usr1(struct loop *loop, int signo, void *arg)
{
	(void)loop;
	(void)signo;
	log_counters(arg, "counters");
}

/* Sessions need two descriptors each: use all the hard limit allows. */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static struct config *
load_config(const char *path, bool explicit_path)
{
	struct config *cfg = NULL;
	char err[1024];

	if (!explicit_path && access(path, F_OK) < 0 && errno == ENOENT)
		return config_new_default();
	if (config_load_file(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "socks5d: %s\n", err);
		return NULL;
	}
	return cfg;
}

int
main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	bool explicit_path = false, check = false, dump = false, debug = false;
	struct daemon d;
	struct resolver_options ropt;
	struct config *cfg;
	int ch;

	while ((ch = getopt(argc, argv, "f:tTdVh")) != -1) {
		switch (ch) {
		case 'f':
			path = optarg;
			explicit_path = true;
			break;
		case 't':
			check = true;
			break;
		case 'T':
			check = dump = true;
			break;
		case 'd':
			debug = true;
			break;
		case 'V':
			printf("socks5d %s\n", SOCKS5D_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}

	cfg = load_config(path, explicit_path);
	if (!cfg)
		return 1;
	if (check) {
		if (dump)
			config_dump(cfg, stdout);
		else
			fprintf(stderr, "socks5d: configuration %s is valid\n",
				explicit_path || access(path, F_OK) == 0 ? path : "(built-in default)");
		config_unref(cfg);
		return 0;
	}

	log_init(debug ? LOG_LVL_DEBUG : cfg->log_level);
	if (cfg->nplaintext_users)
		log_warnx("%zu user(s) have plain-text passwords in the configuration; "
			  "prefer crypt(3) hashes (e.g. mkpasswd -m yescrypt)", cfg->nplaintext_users);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	memset(&d, 0, sizeof(d));
	d.loop = loop_new();
	if (!d.loop)
		fatal("epoll");
	d.env.loop = d.loop;
	d.env.cfg = cfg;
	d.env.on_empty = on_empty;
	d.env.on_empty_arg = &d;
	timer_init(&d.drain_timer, on_drain_timeout, &d);

	memset(&ropt, 0, sizeof(ropt));
	ropt.nameservers = cfg->nameservers;
	ropt.nnameservers = cfg->nnameservers;
	ropt.prefer_family = cfg->resolve_prefer;
	ropt.cache_size = cfg->dns_cache_size;
	ropt.cache_max_ttl = cfg->dns_cache_max_ttl;
	d.env.resolver = resolver_new(d.loop, &ropt);
	if (!d.env.resolver)
		fatalx("cannot start the resolver");

	for (size_t i = 0; i < cfg->nlisten; i++) {
		char a[NET_ADDRSTRLEN];
		struct listener *l = listener_open(&d.env, &cfg->listen[i].addr);
		net_addr_format(&cfg->listen[i].addr, a, sizeof(a));
		if (!l)
			fatal("listen %s", a);
		d.listeners[d.nlisteners++] = l;
		log_info("listening on %s", a);
	}
	if (loop_signal(d.loop, SIGTERM, on_stop_signal, &d) < 0 ||
	    loop_signal(d.loop, SIGINT, on_stop_signal, &d) < 0 ||
	    loop_signal(d.loop, SIGHUP, on_hup, &d) < 0 ||
	    loop_signal(d.loop, SIGUSR1, on_usr1, &d) < 0)
		fatal("signalfd");
	log_info("socks5d %s started: %zu listener(s), %zu user(s)", SOCKS5D_VERSION,
		d.nlisteners, auth_table_count(cfg->users));

	if (loop_run(d.loop) < 0)
		fatalx("event loop failed");

	close_listeners(&d);
	conn_close_all(&d.env);
	timer_stop(d.loop, &d.drain_timer);
	log_counters(&d, "stopped");
	resolver_free(d.env.resolver);
	loop_free(d.loop); /* also frees what the closes above released */
	relay_pool_drain();
	config_unref(cfg);
	return 0;
}
