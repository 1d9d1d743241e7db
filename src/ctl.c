/*
 * ctl: `socks5d ctl`. The request is control's grammar (control_format_request
 * writes it, as the daemon parses it); the answer's first line says ok or
 * error, the rest is copied to standard output as it comes. With workers
 * and no -w, listings gather every worker's answer (session ids are
 * distinct across workers), kill asks each worker until one has the
 * session, and reload goes to worker 0, which passes it to the supervisor.
 */
#include "ctl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "strnum.h"

#define CTL_TIMEOUT_S 10

struct ctl_opts {
	const char *config;   /* -f */
	bool explicit_config; /* -f given */
	const char *socket;   /* -s */
	int worker;           /* -w, -1: all */
	struct control_request req;
};

static void
ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: socks5d ctl [-f file] [-s socket] [-w worker] command [--json]\n"
		"commands: sessions, users, clients, kill ID, quota-reset [--client] NAME, "
		"reload\n");
}

/* The command's words. Returns 0, or -1 after a message. */
static int
ctl_command(struct ctl_opts *o, char **words, int n)
{
	static const enum control_cmd cmds[] = { CONTROL_SESSIONS, CONTROL_USERS, CONTROL_CLIENTS,
		CONTROL_KILL, CONTROL_QUOTA_RESET, CONTROL_RELOAD };
	struct control_request *r = &o->req;
	size_t i;

	if (n == 0)
		return -1;
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(words[0], control_cmd_name(cmds[i])) == 0)
			break;
	if (i == sizeof(cmds) / sizeof(cmds[0])) {
		fprintf(stderr, "socks5d ctl: unknown command '%s'\n", words[0]);
		return -1;
	}
	r->cmd = cmds[i];
	if (r->cmd == CONTROL_KILL)
		return n == 2 && strnum_parse_u64(words[1], 1, UINT64_MAX, &r->id) == STRNUM_OK
			? 0
			: -1;
	if (r->cmd == CONTROL_QUOTA_RESET) {
		if (n != 2 || strlen(words[1]) == 0 || strlen(words[1]) > CONTROL_NAME_MAX)
			return -1;
		r->name_len = strlen(words[1]);
		memcpy(r->name, words[1], r->name_len + 1);
		return 0;
	}
	return n == 1 && !r->client ? 0 : -1;
}

/* Options anywhere; the rest is the command. Returns 0, or -1. */
static int
ctl_args(int argc, char **argv, struct ctl_opts *o)
{
	char *words[4];
	int n = 0;
	uint64_t w;

	memset(o, 0, sizeof(*o));
	o->config = CONFIG_DEFAULT_PATH;
	o->worker = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--json") == 0) {
			o->req.json = true;
		} else if (strcmp(a, "--client") == 0) {
			o->req.client = true;
		} else if ((strcmp(a, "-f") == 0 || strcmp(a, "-s") == 0 || strcmp(a, "-w") == 0) &&
			i + 1 < argc) {
			const char *v = argv[++i];
			if (a[1] == 'f') {
				o->config = v;
				o->explicit_config = true;
			} else if (a[1] == 's') {
				o->socket = v;
			} else if (strnum_parse_u64(v, 0, CONFIG_MAX_WORKERS - 1, &w) ==
				STRNUM_OK) {
				o->worker = (int)w;
			} else {
				return -1;
			}
		} else if ((a[0] == '-' && a[1] != '\0') || n == 4) {
			return -1; /* an unknown option, or too many words */
		} else {
			words[n++] = argv[i];
		}
	}
	return ctl_command(o, words, n);
}

/* Sends the request to path; copies the records to stdout. Returns 0 (ok),
 * 1 (the daemon's error, printed unless quiet), -1 (no answer, printed). */
static int
ctl_ask(const char *path, const char *line, bool quiet)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = CTL_TIMEOUT_S };
	char buf[4096], status[600];
	size_t slen = 0;
	bool in_status = true, ok = false;
	ssize_t n;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "socks5d ctl: %s: path too long\n", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
		connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
		send(fd, line, strlen(line), MSG_NOSIGNAL) != (ssize_t)strlen(line)) {
		fprintf(stderr, "socks5d ctl: %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		size_t i = 0;
		while (in_status && i < (size_t)n) {
			if (buf[i] == '\n') {
				in_status = false;
				status[slen] = '\0';
				ok = strcmp(status, "ok") == 0;
			} else if (slen + 1 < sizeof(status)) {
				status[slen++] = buf[i];
			}
			i++;
		}
		if (!in_status && ok && i < (size_t)n)
			fwrite(buf + i, 1, (size_t)n - i, stdout);
	}
	close(fd);
	if (n < 0 || in_status) {
		fprintf(stderr, "socks5d ctl: %s: %s\n", path,
			n < 0 ? strerror(errno) : "no answer");
		return -1;
	}
	if (!ok && !quiet)
		fprintf(stderr, "socks5d ctl: %s\n",
			strncmp(status, "error: ", 7) == 0 ? status + 7 : status);
	return ok ? 0 : 1;
}

/* The sockets to ask: -s, or the configuration's control (per worker). */
static int
ctl_sockets(const struct ctl_opts *o, char paths[][CONFIG_CONTROL_MAX + 16], int *n)
{
	struct config *cfg;
	char err[1024];

	*n = 0;
	if (o->socket) {
		snprintf(paths[(*n)++], CONFIG_CONTROL_MAX + 16, "%s", o->socket);
		return 0;
	}
	if (!(cfg = config_load(o->config, o->explicit_config, err, sizeof(err)))) {
		fprintf(stderr, "socks5d ctl: %s\n", err);
		return -1;
	}
	if (!cfg->control[0]) {
		fprintf(stderr, "socks5d ctl: %s has no 'control' line (or use -s SOCKET)\n",
			o->explicit_config || access(o->config, F_OK) == 0 ? o->config
									   : "the configuration");
		config_unref(cfg);
		return -1;
	}
	for (unsigned w = 0; w < (cfg->workers > 1 ? cfg->workers : 1); w++)
		if (o->worker < 0 || (unsigned)o->worker == w)
			snprintf(paths[(*n)++], CONFIG_CONTROL_MAX + 16,
				cfg->workers > 1 ? "%s.%u" : "%s", cfg->control, w);
	config_unref(cfg);
	if (*n == 0) {
		fprintf(stderr, "socks5d ctl: there is no worker %d\n", o->worker);
		return -1;
	}
	return 0;
}

int
ctl_main(int argc, char **argv)
{
	static char paths[CONFIG_MAX_WORKERS][CONFIG_CONTROL_MAX + 16];
	char line[CONTROL_REQUEST_MAX + 1];
	struct ctl_opts o;
	int n, rc = 1;

	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		ctl_usage(stdout);
		return 0;
	}
	if (ctl_args(argc, argv, &o) < 0 ||
		control_format_request(&o.req, line, sizeof(line)) < 0) {
		ctl_usage(stderr);
		return 2;
	}
	if (ctl_sockets(&o, paths, &n) < 0)
		return 1;
	/* A reload or quota reset goes to one worker; a kill to each until
	 * one has the session; listings to all. */
	if (o.req.cmd == CONTROL_RELOAD || o.req.cmd == CONTROL_QUOTA_RESET)
		n = 1;
	for (int i = 0; i < n; i++) {
		bool quiet = o.req.cmd == CONTROL_KILL && i + 1 < n;
		int r = ctl_ask(paths[i], line, quiet);
		if (r < 0)
			return 1;
		rc = r;
		if (o.req.cmd == CONTROL_KILL && r == 0)
			break;
		if (o.req.cmd != CONTROL_KILL && r != 0)
			return 1;
	}
	return fflush(stdout) == 0 ? rc : 1;
}
