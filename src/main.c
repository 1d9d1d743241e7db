/*
 * main: command line, configuration, signals, systemd integration and the
 * run of the one event loop. The only caller of exit(). Always in the
 * foreground, as systemd expects.
 *
 * Reload (SIGHUP) builds a complete new configuration and swaps it in only
 * when it is valid: new sessions use it, running sessions keep the one they
 * started with (they hold a reference), listeners are opened and closed by
 * difference so unchanged ones keep their backlog.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "account.h"
#include "acl.h"
#include "admin.h"
#include "auth.h"
#include "bufpool.h"
#include "config.h"
#include "conn.h"
#include "connlimit.h"
#include "control.h"
#include "ctl.h"
#include "egress.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "net.h"
#include "notify.h"
#include "passwd.h"
#include "pipepool.h"
#include "pwcheck.h"
#include "relay.h"
#include "resolver.h"
#include "siphash.h"
#include "strnum.h"
#include "supervisor.h"
#include "userswatch.h"

/* From the VERSION file, through the Makefile. */
#ifndef SOCKS5D_VERSION
#define SOCKS5D_VERSION "unknown"
#endif

#define MAX_LISTENERS (CONFIG_MAX_LISTEN + 64)
#define USERS_UNUSED_WARNING                                                    \
	"users are defined but 'auth' does not include password: no client is " \
	"asked for one (add 'auth password')"
#define STATUS_INTERVAL_MS 10000

struct daemon {
	struct loop *loop;
	struct conn_env env;
	const char *path;   /* configuration file */
	bool explicit_path; /* -f given */
	bool debug;         /* -d: debug level whatever the file says */
	struct listener *listeners[MAX_LISTENERS];
	bool inherited[MAX_LISTENERS]; /* socket-activated: kept across reloads */
	size_t nlisteners;
	struct timer drain_timer;
	struct timer status_timer;
	bool stopping;
	int worker; /* worker index, -1 without workers */
	struct metrics_server *metrics;
	struct metrics_sources metrics_sources; /* what metrics_render reads */
	union sockaddr_any metrics_addr;        /* what it listens on (port + worker) */
	struct userswatch *userswatch;          /* users-file ... watch, or NULL */
	struct control_server *control;         /* socks5d ctl's socket, or NULL */
	struct admin *admin;                    /* its commands */
};

static void
auth_policy_from(const struct config *cfg, struct connlimit_auth_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->max_failures = cfg->auth_fail_limit;
	p->window_ms = (uint64_t)cfg->auth_fail_window * 1000u;
	p->lockout_ms = (uint64_t)cfg->auth_lockout * 1000u;
}

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: socks5d [-dhtTV] [-f file]\n"
		"       socks5d passwd [-D] [-m yescrypt|sha512] [-f users-file] name\n"
		"       socks5d ctl [-f file] [-s socket] [-w worker] command [--json]\n"
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
		listener_stop(d->listeners[i]);
	d->nlisteners = 0;
}

static void
log_counters(const struct daemon *d, const char *when)
{
	const struct stats *s = &d->env.stats;
	log_info("%s: sessions active=%" PRIu64 " total=%" PRIu64 " auth_failures=%" PRIu64
		 " bytes_up=%" PRIu64 " bytes_down=%" PRIu64,
		when, s->active, s->accepted, s->auth_failures, s->bytes_up, s->bytes_down);
}

static void
send_status(const struct daemon *d)
{
	const struct stats *s = &d->env.stats;
	(void)notify_send("STATUS=%s%" PRIu64 " active sessions, %" PRIu64 " total, %" PRIu64
			  " bytes up, %" PRIu64 " bytes down",
		d->stopping ? "stopping: " : "", s->active, s->accepted, s->bytes_up,
		s->bytes_down);
}

/* The scrape: running sessions' bytes first, so counters move while
 * sessions run. */
static void
render_metrics(FILE *out, void *arg)
{
	struct daemon *d = arg;

	conn_live_totals(&d->env);
	d->metrics_sources.metrics_users = d->env.cfg->metrics_users;
	metrics_render(out, &d->metrics_sources);
}

static void
on_status_timer(struct loop *loop, void *arg)
{
	send_status(arg);
	timer_start(loop, &((struct daemon *)arg)->status_timer, STATUS_INTERVAL_MS);
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
	conn_stop_all(&d->env);
	loop_stop(loop);
}

static void
on_stop_signal(struct loop *loop, int signo, void *arg)
{
	struct daemon *d = arg;
	unsigned secs = d->env.cfg->shutdown_timeout;

	if (d->stopping) {
		/* A second signal: do not wait for the drain. */
		conn_stop_all(&d->env);
		loop_stop(loop);
		return;
	}
	d->stopping = true;
	(void)notify_send("STOPPING=1");
	log_info("%s: no longer accepting; %" PRIu64 " sessions may finish within %u s",
		strsignal(signo), d->env.stats.active, secs);
	close_listeners(d);
	if (d->env.stats.active == 0 || secs == 0) {
		conn_stop_all(&d->env);
		loop_stop(loop);
		return;
	}
	timer_start(loop, &d->drain_timer, (uint64_t)secs * 1000u);
}

static void
on_usr1(struct loop *loop, int signo, void *arg)
{
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

static void
resolver_options_from(const struct config *cfg, struct resolver_options *ropt)
{
	memset(ropt, 0, sizeof(*ropt));
	ropt->nameservers = cfg->nameservers;
	ropt->nnameservers = cfg->nnameservers;
	ropt->prefer_family = cfg->resolve_prefer;
	ropt->cache_size = cfg->dns_cache_size;
	ropt->cache_max_ttl = cfg->dns_cache_max_ttl;
	ropt->timeout_ms = cfg->timeout_dns * 1000u;
	ropt->attempts = cfg->dns_attempts;
	ropt->max_lookups = cfg->max_lookups;
	/* The global interface and mark govern DNS too (not a rule's or a
	 * user's: one resolver serves every session). */
	ropt->egress = &cfg->egress;
}

static void
apply_logging(const struct daemon *d, const struct config *cfg)
{
	log_set_level(d->debug ? LOG_LVL_DEBUG : cfg->log_level);
	log_use_syslog(cfg->log_syslog);
	if (cfg->nplaintext_users)
		log_warnx("%zu user(s) have plain-text passwords in the configuration; "
			  "prefer crypt(3) hashes (e.g. mkpasswd -m yescrypt)",
			cfg->nplaintext_users);
	if (config_users_unused(cfg))
		log_warnx("%s", USERS_UNUSED_WARNING);
}

/* Opens the listen lines of cfg, reusing listeners of the same address
 * (and PROXY setting) from the current set; closes the configured ones that
 * are gone, before opening new ones so an address can change its setting.
 * Inherited (socket-activated) listeners are always kept. */
static int
sync_listeners(struct daemon *d, const struct config *cfg, bool fail_hard)
{
	struct listener *next[MAX_LISTENERS];
	bool next_inherited[MAX_LISTENERS], used[MAX_LISTENERS] = { false };
	bool have[CONFIG_MAX_LISTEN] = { false };
	size_t n = 0;

	for (size_t i = 0; i < d->nlisteners; i++) {
		if (d->inherited[i]) {
			listener_configure(d->listeners[i], 0, &cfg->egress);
			used[i] = true;
			next_inherited[n] = true;
			next[n++] = d->listeners[i];
		}
	}
	for (size_t j = 0; j < cfg->nlisten; j++) {
		for (size_t i = 0; i < d->nlisteners; i++) {
			if (!addr_equal(listener_addr(d->listeners[i]), &cfg->listen[j].addr) ||
				listener_proxy_protocol(d->listeners[i]) !=
					cfg->listen[j].proxy_protocol)
				continue;
			have[j] = true;
			listener_configure(d->listeners[i], (int)cfg->listen[j].backlog,
				&cfg->egress);
			if (!used[i]) {
				used[i] = true;
				next_inherited[n] = false;
				next[n++] = d->listeners[i];
			}
			break;
		}
	}
	for (size_t i = 0; i < d->nlisteners; i++) {
		if (!used[i]) {
			char a[ADDR_STRLEN];
			log_info("no longer listening on %s",
				addr_format(listener_addr(d->listeners[i]), a, sizeof(a)));
			listener_stop(d->listeners[i]);
		}
	}
	for (size_t j = 0; j < cfg->nlisten; j++) {
		const union sockaddr_any *want = &cfg->listen[j].addr;
		char a[ADDR_STRLEN];
		struct listener *l;

		if (have[j])
			continue;
		addr_format(want, a, sizeof(a));
		l = listener_open(&d->env, want, cfg->listen[j].proxy_protocol,
			(int)cfg->listen[j].backlog, &cfg->egress);
		if (!l) {
			if (fail_hard)
				fatal("listen %s", a);
			log_warn("listen %s", a);
			continue;
		}
		log_info("listening on %s%s", a,
			cfg->listen[j].proxy_protocol ? " (PROXY protocol)" : "");
		next_inherited[n] = false;
		next[n++] = l;
	}
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers. */
	memcpy(d->listeners, next, n * sizeof(next[0]));
	memcpy(d->inherited, next_inherited, n * sizeof(next_inherited[0]));
	d->nlisteners = n;
	return 0;
}

/* --- metrics ---------------------------------------------------------------- */

static void
sync_metrics(struct daemon *d, const struct config *cfg)
{
	union sockaddr_any want;

	if (cfg->has_metrics) {
		want = cfg->metrics;
		if (d->worker > 0)
			addr_set_port(&want, (uint16_t)(addr_port(&want) + d->worker));
	}
	if (d->metrics && cfg->has_metrics && addr_equal(&want, &d->metrics_addr))
		return;
	if (d->metrics) {
		metrics_stop(d->metrics);
		d->metrics = NULL;
	}
	if (!cfg->has_metrics)
		return;
	char a[ADDR_STRLEN];
	addr_format(&want, a, sizeof(a));
	d->metrics = metrics_start(d->loop, &want, render_metrics, d);
	if (!d->metrics) {
		log_warn("metrics %s", a);
		return;
	}
	d->metrics_addr = want;
	log_info("metrics on http://%s/metrics", a);
}

static int check_inherited_open_proxy(const struct daemon *d, const struct config *cfg, char *err,
	size_t errlen);

/* --- the control socket --------------------------------------------------------- */

static int reload_config(struct daemon *d, char *err, size_t errlen);

/* socks5d ctl reload: here, or with workers in the supervisor (which checks
 * the file and passes the reload on to every worker). */
static int
ctl_reload(void *arg, char *err, size_t errlen)
{
	struct daemon *d = arg;

	if (d->worker < 0)
		return reload_config(d, err, errlen);
	if (kill(getppid(), SIGHUP) < 0) {
		snprintf(err, errlen, "passing the reload to the supervisor: %s", strerror(errno));
		return -1;
	}
	return 1;
}

/* The socket belongs to the run-as user (while we are root to give it). */
static void
control_owner(const struct config *cfg, uid_t *uid, gid_t *gid)
{
	struct passwd *pw;

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (geteuid() != 0 || !cfg->run_as_user[0] || !(pw = getpwnam(cfg->run_as_user)))
		return;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
}

/* control PATH (PATH.N for worker N): opened, moved or closed as the
 * configuration says. */
static void
sync_control(struct daemon *d, const struct config *cfg)
{
	char path[CONFIG_CONTROL_MAX + 16] = "";
	uid_t uid;
	gid_t gid;

	if (cfg->control[0])
		snprintf(path, sizeof(path), d->worker >= 0 ? "%s.%d" : "%s", cfg->control,
			d->worker);
	if (d->control && strcmp(control_path(d->control), path) == 0) {
		control_set_timeout(d->control, cfg->timeout_handshake * 1000u);
		return;
	}
	control_stop(d->control);
	d->control = NULL;
	admin_free(d->admin);
	d->admin = NULL;
	if (!path[0])
		return;
	if (!(d->admin = admin_new(d->loop, &d->env, ctl_reload, d)))
		return;
	control_owner(cfg, &uid, &gid);
	d->control = control_start(d->loop, path, uid, gid, cfg->timeout_handshake * 1000u,
		admin_handle, d->admin);
	if (!d->control) {
		log_warn("control %s", path);
		admin_free(d->admin);
		d->admin = NULL;
		return;
	}
	log_info("control socket %s", path);
}

/* -t: every login of a user whose hash takes long costs a helper that
 * long (and an unknown name costs the most expensive hash in the table). */
#define SLOW_HASH_MS 250

static void
warn_slow_hash(const char *where, const char *name, unsigned ms, void *arg)
{
	char u[LOG_ESCAPED_SIZE(255)];

	fprintf(stderr,
		"socks5d: %s: warning: user %s: one check of this password hash takes %u ms "
		"(over %d ms); each login and each wrong guess costs that much CPU\n",
		where[0] ? where : "(users)", log_escape(name, strlen(name), u, sizeof(u)), ms,
		SLOW_HASH_MS);
}

static void
warn_slow_hashes(struct config *cfg)
{
	auth_table_prepare(cfg->users);
	auth_table_each_slow(cfg->users, SLOW_HASH_MS, warn_slow_hash, NULL);
}

static void
pwcheck_options_from(const struct daemon *d, const struct config *cfg, struct pwcheck_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->helper.path = d->path;
	opt->helper.explicit_path = d->explicit_path;
	opt->helper.hashers = cfg->auth_workers;
	opt->ipv6_prefix = cfg->ipv6_prefix;
}

/* The password helpers (pwhelper) hold the hashes; this process keeps only
 * the user names. Started with the first configuration that has users; a
 * reload makes them read the file again and start fresh hashers. */
static void
sync_password_helpers(struct daemon *d, struct config *cfg)
{
	struct pwcheck_options opt;

	pwcheck_options_from(d, cfg, &opt);
	if (d->env.pwcheck) {
		pwcheck_reload(d->env.pwcheck, &opt);
	} else if (auth_table_count(cfg->users) > 0) {
		d->env.pwcheck = pwcheck_start(d->loop, cfg->users, &opt);
		if (!d->env.pwcheck)
			log_warn("auth: starting the password helpers (every login will fail)");
	}
	auth_table_forget_secrets(cfg->users);
}

/* The built-in protection covers the host's own addresses at the daemon's
 * ports: read them at start and at each reload (interfaces come and go). */
static void
refresh_host_addrs(struct daemon *d)
{
	union sockaddr_any addrs[POLICY_MAX_HOST_ADDRS];
	size_t n = net_host_addrs(addrs, POLICY_MAX_HOST_ADDRS);

	policy_set_host_addrs(&d->env.policy, addrs, n);
}

static void reload(void *arg);
static void sync_control(struct daemon *d, const struct config *cfg);

/* users-file ... watch: a changed users file reloads as SIGHUP does. With
 * workers the supervisor watches and passes a SIGHUP on, so that workers it
 * restarts later start with the new users too. */
static void
sync_userswatch(struct daemon *d, const struct config *cfg)
{
	userswatch_sync(&d->userswatch, d->loop, cfg->users_file,
		cfg->users_file_watch && d->worker < 0, reload, d);
}

static void
on_hup(struct loop *loop, int signo, void *arg)
{
	reload(arg);
}

/* --- outbound settings on this host ------------------------------------- */

/* `external PREFIX hash-user`'s key: from /etc/machine-id (machine-id(5):
 * an application hashes it rather than using it), so that a user keeps the
 * address across restarts and in every worker; without it, a random key. */
static uint8_t hash_user_key[SIPHASH_KEY_LEN];

static int
hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

static bool
read_machine_id(uint8_t id[SIPHASH_KEY_LEN])
{
	char hex[2 * SIPHASH_KEY_LEN + 1];
	int fd = open("/etc/machine-id", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, hex, sizeof(hex) - 1);

	if (fd >= 0)
		close(fd);
	if (n < (ssize_t)sizeof(hex) - 1)
		return false;
	for (size_t i = 0; i < SIPHASH_KEY_LEN; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		id[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool
uses_hash_user(const struct egress *e)
{
	return e->src[EGRESS_V4].mode == EGRESS_SRC_HASH_USER ||
		e->src[EGRESS_V6].mode == EGRESS_SRC_HASH_USER;
}

static void
note_hash_user(const struct egress *e, int line, void *arg)
{
	*(bool *)arg = *(bool *)arg || uses_hash_user(e);
}

static void
derive_hash_user_key(const struct config *cfg)
{
	static const char app[] = "socks5d external hash-user";
	uint8_t id[SIPHASH_KEY_LEN];
	bool used = false;

	if (!read_machine_id(id)) {
		if (getrandom(hash_user_key, sizeof(hash_user_key), 0) !=
			(ssize_t)sizeof(hash_user_key))
			fatal("getrandom");
		config_each_egress(cfg, note_hash_user, &used);
		if (used)
			fprintf(stderr,
				"socks5d: warning: /etc/machine-id cannot be read: the "
				"addresses of 'hash-user' change at each start\n");
		return;
	}
	for (size_t half = 0; half < 2; half++) {
		uint8_t msg[sizeof(app)];
		uint64_t h;

		memcpy(msg, app, sizeof(app));
		msg[sizeof(app) - 1] = (uint8_t)half;
		h = siphash24(id, msg, sizeof(msg));
		memcpy(hash_user_key + 8 * half, &h, sizeof(h));
	}
}

struct host_check {
	const struct config *cfg;
	bool to_stderr; /* -t: warnings on stderr; else the log */
	char *err;      /* the first refused setting */
	size_t errlen;
	int failed;
};

static void host_warn(const struct host_check *h, const char *fmt, ...) LOG_PRINTF(2, 3);

static void
host_warn(const struct host_check *h, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (h->to_stderr)
		fprintf(stderr, "socks5d: warning: %s\n", msg);
	else
		log_warnx("%s", msg);
}

/* Tries e's interface, then its mark, on a throwaway socket. A missing
 * interface is a warning (it may appear later, a VPN's say: sessions
 * through it fail until then); a refused one or a refused mark an error. */
static void
probe_egress(const struct egress *e, int line, void *arg)
{
	struct host_check *h = arg;
	struct egress t;
	int fd;

	for (int pass = 0; pass < 2 && !h->failed; pass++) {
		int rc, err;

		egress_init(&t);
		if (pass == 0) {
			memcpy(t.ifname, e->ifname, sizeof(t.ifname));
		} else {
			t.has_mark = e->has_mark;
			t.mark = e->mark;
		}
		if ((!t.ifname[0] && !t.has_mark) ||
			(fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
			continue;
		rc = net_apply_egress(fd, AF_INET, false, &t);
		err = errno;
		close(fd);
		if (rc == 0)
			continue;
		if (err == ENODEV) {
			host_warn(h,
				"%s:%d: external-interface: no interface '%s' on this host now "
				"(sessions through it fail until there is)",
				h->cfg->name, line, t.ifname);
			continue;
		}
		snprintf(h->err, h->errlen, "%s:%d: %s: %s%s", h->cfg->name, line,
			pass ? "socket-mark" : "external-interface", strerror(err),
			err != EPERM        ? ""
				: pass == 1 ? " (SO_MARK needs CAP_NET_ADMIN)"
					    : " (SO_BINDTODEVICE needs CAP_NET_RAW)");
		h->failed = 1;
	}
}

/* What the configuration asks of this host: interfaces that exist, a mark
 * the daemon may set, backlogs the kernel does not cut. Warnings are
 * written (stderr or the log); a setting that cannot work is -1 with the
 * message in err. */
static int
check_host(const struct config *cfg, bool to_stderr, char *err, size_t errlen)
{
	struct host_check h = { cfg, to_stderr, err, errlen, 0 };
	unsigned somaxconn = 0;
	FILE *f = fopen("/proc/sys/net/core/somaxconn", "re");
	char line[32];

	if (f) {
		if (fgets(line, sizeof(line), f) == NULL ||
			strnum_parse_uint(strtok(line, "\n"), 1, UINT_MAX, &somaxconn) != STRNUM_OK)
			somaxconn = 0;
		fclose(f);
	}
	for (size_t i = 0; somaxconn && i < cfg->nlisten; i++)
		if (cfg->listen[i].line && cfg->listen[i].backlog > somaxconn)
			host_warn(&h,
				"%s:%d: listen: backlog %u is above net.core.somaxconn (%u): the "
				"kernel uses %u",
				cfg->name, cfg->listen[i].line, cfg->listen[i].backlog, somaxconn,
				somaxconn);
	config_each_egress(cfg, probe_egress, &h);
	return h.failed ? -1 : 0;
}

/* SIGHUP, a changed users file under watch, and `socks5d ctl reload`.
 * Returns 0, or -1 with the reason in err (the running configuration
 * stays). */
static int
reload_config(struct daemon *d, char *err, size_t errlen)
{
	struct resolver_options ropt;
	struct config *cfg;

	if (d->stopping) {
		snprintf(err, errlen, "stopping");
		return -1;
	}
	(void)notify_reloading();
	cfg = config_load(d->path, d->explicit_path, err, errlen);
	/* The same check as at start: an inherited listener that the file
	 * does not list must not become an open proxy by a reload. */
	if (cfg &&
		(check_inherited_open_proxy(d, cfg, err, errlen) < 0 ||
			check_host(cfg, false, err, errlen) < 0)) {
		config_unref(cfg);
		cfg = NULL;
	}
	if (!cfg) {
		log_errorx("reload failed, keeping the running configuration: %s", err);
		(void)notify_send("READY=1\nSTATUS=reload failed: %s", err);
		return -1;
	}
	apply_logging(d, cfg);
	refresh_host_addrs(d);
	sync_password_helpers(d, cfg);
	sync_listeners(d, cfg, false);
	sync_metrics(d, cfg);
	sync_control(d, cfg);
	sync_userswatch(d, cfg);
	if (cfg->relay_buffer != bufpool_bufsize())
		bufpool_configure(cfg->relay_buffer, 64);
	relay_set_splice(cfg->relay_splice);
	{
		struct connlimit_auth_policy ap;
		auth_policy_from(cfg, &ap);
		connlimit_set_auth_policy(d->env.policy.limits, &ap);
	}
	resolver_options_from(cfg, &ropt);
	resolver_reconfigure(d->env.resolver, &ropt);
	account_configure(d->env.acct, cfg);
	config_unref(d->env.cfg);
	d->env.cfg = cfg;
	log_info("reloaded %s: %zu listener(s), %zu user(s)", d->path, d->nlisteners,
		auth_table_count(cfg->users));
	(void)notify_send("READY=1");
	send_status(d);
	return 0;
}

static void
reload(void *arg)
{
	char err[1024];

	(void)reload_config(arg, err, sizeof(err));
}

static void
adopt_inherited(struct daemon *d, int nfds)
{
	for (int fd = 3; fd < 3 + nfds && d->nlisteners < MAX_LISTENERS; fd++) {
		char a[ADDR_STRLEN];
		struct listener *l = listener_adopt(&d->env, fd, &d->env.cfg->egress);
		if (!l)
			fatal("socket activation: fd %d", fd);
		log_info("listening on %s (socket activation)",
			addr_format(listener_addr(l), a, sizeof(a)));
		d->inherited[d->nlisteners] = true;
		d->listeners[d->nlisteners++] = l;
	}
}

/* Limits, quotas (counters read from state-dir) and per-user totals. */
static struct account *
account_new_from(struct loop *loop, const struct config *cfg)
{
	uint8_t key[SIPHASH_KEY_LEN];
	struct account *a;

	if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
		fatal("getrandom");
	a = account_new(loop, cfg, key);
	explicit_bzero(key, sizeof(key));
	return a;
}

/* Quotas: state-dir exists and belongs to the user the daemon will run as
 * (systemd makes it with StateDirectory=; elsewhere it is made here). */
static void
prepare_state_dir(const struct config *cfg)
{
	struct passwd *pw;

	if (!limitset_have_quota(cfg->limits))
		return;
	if (mkdir(cfg->state_dir, 0750) < 0) {
		if (errno != EEXIST)
			log_warn("state-dir %s (quota counters will not be kept)", cfg->state_dir);
		return;
	}
	if (geteuid() == 0 && cfg->run_as_user[0] && (pw = getpwnam(cfg->run_as_user)) &&
		chown(cfg->state_dir, pw->pw_uid, pw->pw_gid) < 0)
		log_warn("state-dir %s: chown", cfg->state_dir);
}

static struct connlimit *
limits_new_from(const struct config *cfg)
{
	struct connlimit_config lc;

	memset(&lc, 0, sizeof(lc));
	/* A secret hash key: clients choose the addresses and names that are
	 * hashed, so they must not be able to predict the buckets. */
	if (getrandom(lc.hash_key, sizeof(lc.hash_key), 0) != (ssize_t)sizeof(lc.hash_key))
		fatal("getrandom");
	auth_policy_from(cfg, &lc.auth);
	lc.ipv6_prefix = cfg->ipv6_prefix;
	return connlimit_new(&lc);
}

/* run-as: after the listeners are bound and the users read. setgroups,
 * setgid, setuid in that order, then verified: a half-dropped process must
 * not go on serving. */
static void
drop_privileges(const struct config *cfg)
{
	struct passwd *pw;
	gid_t gid;
	uid_t uid;

	if (!cfg->run_as_user[0]) {
		if (geteuid() == 0)
			log_warnx("running as root; consider 'run-as' (or a systemd User=)");
		return;
	}
	/* Before the loop runs: a lookup through NSS may block, here only. */
	pw = getpwnam(cfg->run_as_user);
	if (!pw)
		fatalx("run-as: no user '%s'", cfg->run_as_user);
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	if (cfg->run_as_group[0]) {
		struct group *gr = getgrnam(cfg->run_as_group);
		if (!gr)
			fatalx("run-as: no group '%s'", cfg->run_as_group);
		gid = gr->gr_gid;
	}
	if (setgroups(1, &gid) < 0)
		fatal("run-as: setgroups");
	if (setgid(gid) < 0)
		fatal("run-as: setgid %u", (unsigned)gid);
	if (setuid(uid) < 0)
		fatal("run-as: setuid %u", (unsigned)uid);
	if (getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid ||
		(uid != 0 && setuid(0) == 0))
		fatalx("run-as: privileges were not dropped");
	log_info("running as %s (uid %u, gid %u)", cfg->run_as_user, (unsigned)uid, (unsigned)gid);
}

/* The open-proxy check of the config, for socket-activated listeners that
 * the config file does not know about. Returns 0, or -1 with the reason in
 * err. */
static int
check_inherited_open_proxy(const struct daemon *d, const struct config *cfg, char *err,
	size_t errlen)
{
	if (!config_accepts_no_auth(cfg) || acl_client_rule_count(cfg->acl) > 0)
		return 0;
	for (size_t i = 0; i < d->nlisteners; i++) {
		char a[ADDR_STRLEN];
		if (!d->inherited[i] || addr_is_loopback(listener_addr(d->listeners[i])))
			continue;
		snprintf(err, errlen,
			"socket activation: %s is reachable from other hosts, clients need no "
			"password and no 'client' rule limits who may connect: that is an open "
			"proxy. Add 'client allow NETWORK' lines, or 'auth password' with users",
			addr_format(listener_addr(d->listeners[i]), a, sizeof(a)));
		return -1;
	}
	return 0;
}

/* The loop, the resolver, the pools and the sessions' environment. */
static void
setup_worker(struct daemon *d, struct config *cfg)
{
	struct resolver_options ropt;
	struct resolver *resolver;
	struct connlimit *limits;

	d->loop = loop_new();
	if (!d->loop)
		fatal("epoll");
	timer_init(&d->drain_timer, on_drain_timeout, d);
	timer_init(&d->status_timer, on_status_timer, d);
	resolver_options_from(cfg, &ropt);
	resolver = resolver_new(d->loop, &ropt);
	if (!resolver)
		fatalx("cannot start the resolver");
	bufpool_configure(cfg->relay_buffer, 64);
	relay_set_splice(cfg->relay_splice);
	pipepool_configure(RELAY_PIPE_SIZE, RELAY_MAX_PIPES, RELAY_CACHED_PIPES);
	limits = limits_new_from(cfg);
	if (!limits)
		fatalx("out of memory");
	conn_env_init(&d->env, d->loop, cfg, resolver, limits);
	if (d->worker >= 0) {
		/* Session ids distinct across workers (socks5d ctl kill). */
		d->env.id_step = cfg->workers;
		d->env.id_base = (uint64_t)d->worker;
	}
	prepare_state_dir(cfg);
	conn_env_set_account(&d->env, account_new_from(d->loop, cfg));
	if (!d->env.acct)
		fatalx("out of memory");
	memcpy(d->env.hash_user_key, hash_user_key, sizeof(hash_user_key));
	/* Each worker its own key for the random sources' draws. */
	if (getrandom(d->env.random_key, sizeof(d->env.random_key), 0) !=
		(ssize_t)sizeof(d->env.random_key))
		fatal("getrandom");
	refresh_host_addrs(d);
	d->env.on_empty = on_empty;
	d->env.on_empty_arg = d;
	d->metrics_sources.stats = &d->env.stats;
	d->metrics_sources.resolver = resolver;
	d->metrics_sources.pwcheck = &d->env.pwcheck;
	d->metrics_sources.parents = &d->env.parents;
	d->metrics_sources.worker = d->worker;
	d->metrics_sources.acct = d->env.acct;
}

/* One event loop: the whole daemon when workers is 1, or one worker under
 * the supervisor. ready_fd >= 0 (a worker) gets one byte once the
 * listeners are bound, instead of READY=1 to systemd. */
static int
run_worker(struct daemon *d, struct config *cfg, int nfds, int ready_fd)
{
	char err[1024];

	setup_worker(d, cfg);
	/* Signals and the metrics endpoint before the SOCKS listeners: once a
	 * SOCKS port accepts, the daemon is completely set up (health checks
	 * and the tests' descriptor baselines rely on that). */
	if (loop_signal(d->loop, SIGTERM, on_stop_signal, d) < 0 ||
		loop_signal(d->loop, SIGINT, on_stop_signal, d) < 0 ||
		loop_signal(d->loop, SIGHUP, on_hup, d) < 0 ||
		loop_signal(d->loop, SIGUSR1, on_usr1, d) < 0)
		fatal("signalfd");
	sync_metrics(d, cfg);
	sync_control(d, cfg);
	sync_userswatch(d, cfg);
	adopt_inherited(d, nfds);
	/* With socket activation the inherited sockets are the listeners; the
	 * listen lines of a default (file-less) config are not added to them. */
	if (!(nfds > 0 && cfg->listen[0].line == 0))
		sync_listeners(d, cfg, true);
	if (d->nlisteners == 0)
		fatalx("no listening socket");
	if (check_inherited_open_proxy(d, cfg, err, sizeof(err)) < 0)
		fatalx("%s", err);
	drop_privileges(cfg);
	/* As the user that will make the sockets. */
	if (check_host(cfg, false, err, sizeof(err)) < 0)
		fatalx("%s", err);
	sync_password_helpers(d, cfg);
	log_info("socks5d %s started: %zu listener(s), %zu user(s)", SOCKS5D_VERSION, d->nlisteners,
		auth_table_count(cfg->users));
	if (ready_fd >= 0) {
		ssize_t w;
		do {
			w = write(ready_fd, "R", 1);
		} while (w < 0 && errno == EINTR);
		close(ready_fd);
	}
	(void)notify_send("READY=1");
	send_status(d);
	timer_start(d->loop, &d->status_timer, STATUS_INTERVAL_MS);
	notify_watchdog_start(d->loop);

	if (loop_run(d->loop) < 0)
		fatalx("event loop failed");

	close_listeners(d);
	if (d->metrics)
		metrics_stop(d->metrics);
	control_stop(d->control);
	admin_free(d->admin);
	userswatch_stop(d->userswatch);
	conn_stop_all(&d->env);
	pwcheck_stop(d->env.pwcheck);
	d->env.pwcheck = NULL;
	timer_stop(d->loop, &d->drain_timer);
	timer_stop(d->loop, &d->status_timer);
	notify_watchdog_stop(d->loop);
	log_counters(d, "stopped");
	account_free(d->env.acct); /* saves the quota counters */
	d->env.acct = NULL;
	resolver_free(d->env.resolver);
	loop_free(d->loop); /* also frees what the closes above released */
	connlimit_free(d->env.policy.limits);
	conn_env_free(&d->env);
	bufpool_drain();
	pipepool_trim();
	config_unref(d->env.cfg);
	return 0;
}

/* Called in a forked worker process by the supervisor. */
static int
run_worker_entry(struct config *cfg, const struct supervisor_options *so, unsigned index,
	int ready_fd)
{
	struct daemon d;
	char tag[32];

	memset(&d, 0, sizeof(d));
	d.worker = (int)index;
	d.path = so->path;
	d.explicit_path = so->explicit_path;
	d.debug = so->debug;
	snprintf(tag, sizeof(tag), "worker %u", index);
	log_set_tag(tag);
	notify_disable();
	listener_set_reuseport(true);
	return run_worker(&d, cfg, so->inherited_fds, ready_fd);
}

/* -t and -T: the configuration parsed; warnings, the dump, exit 0. */
static int
check_only(const struct daemon *d, struct config *cfg, bool dump)
{
	char err[1024];

	warn_slow_hashes(cfg);
	if (config_users_unused(cfg))
		fprintf(stderr, "socks5d: warning: %s\n", USERS_UNUSED_WARNING);
	/* Another user may run the daemon: what it may not do here is only a
	 * warning. */
	if (check_host(cfg, true, err, sizeof(err)) < 0)
		fprintf(stderr, "socks5d: warning: %s\n", err);
	if (dump)
		config_dump(cfg, stdout);
	else
		fprintf(stderr, "socks5d: configuration %s is valid\n",
			d->explicit_path || access(d->path, F_OK) == 0 ? d->path
								       : "(built-in default)");
	config_unref(cfg);
	return 0;
}

int
main(int argc, char **argv)
{
	struct daemon d;
	struct config *cfg;
	bool check = false, dump = false;
	char err[1024];
	int ch, nfds;

	if (argc > 1 && strcmp(argv[1], "passwd") == 0)
		return passwd_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "ctl") == 0)
		return ctl_main(argc - 1, argv + 1);
	memset(&d, 0, sizeof(d));
	d.worker = -1;
	d.path = CONFIG_DEFAULT_PATH;
	while ((ch = getopt(argc, argv, "f:tTdVh")) != -1) {
		switch (ch) {
		case 'f':
			d.path = optarg;
			d.explicit_path = true;
			break;
		case 't':
			check = true;
			break;
		case 'T':
			check = dump = true;
			break;
		case 'd':
			d.debug = true;
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

	cfg = config_load(d.path, d.explicit_path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "socks5d: %s\n", err);
		return 1;
	}
	derive_hash_user_key(cfg);
	if (check)
		return check_only(&d, cfg, dump);

	log_init(d.debug ? LOG_LVL_DEBUG : cfg->log_level);
	apply_logging(&d, cfg);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	(void)notify_init();
	nfds = notify_listen_fds();
	if (cfg->workers > 1) {
		struct supervisor_options so = {
			.path = d.path,
			.explicit_path = d.explicit_path,
			.debug = d.debug,
			.inherited_fds = nfds,
			.run_worker = run_worker_entry,
		};
		return supervisor_run(cfg, &so);
	}
	return run_worker(&d, cfg, nfds, -1);
}
