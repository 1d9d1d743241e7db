/*
 * metrics: a minimal HTTP/1.1 origin server (RFC 9110, RFC 9112) for
 * Prometheus scrapes, inside the event loop. One request per connection:
 * read the request head into a fixed buffer, answer, close. The exposition
 * text comes from the caller's render callback; the server half of this
 * file knows HTTP and sockets, not what is being counted. The daemon's
 * callback, metrics_render, is the last section: it only formats counters
 * that other modules keep.
 *
 * Every connection is bounded: METRICS_REQUEST_MAX bytes of head, one
 * deadline to send it and one to take the answer, a short linger after,
 * and at most METRICS_MAX_CLIENTS at once.
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "account.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "parent.h"
#include "pipepool.h"
#include "proto.h"
#include "pwcheck.h"
#include "relay.h"
#include "resolver.h"
#include "shaper.h"
#include "stats.h"

#define METRICS_BACKLOG 128           /* a burst of METRICS_MAX_CLIENTS fits */
#define METRICS_ACCEPT_BATCH 16       /* accepts per wakeup, for fairness */
#define METRICS_LINGER_MS 1000        /* drain the peer after answering */
#define METRICS_LINGER_READS 4        /* reads per wakeup while lingering */
#define METRICS_PAUSE_MS 1000         /* listener rest after EMFILE */
#define METRICS_LOG_INTERVAL_MS 60000 /* repeated accept errors */

#define HTTP_OK 200
#define HTTP_BAD_REQUEST 400
#define HTTP_NOT_FOUND 404
#define HTTP_METHOD_NOT_ALLOWED 405
#define HTTP_HEADERS_TOO_LARGE 431 /* RFC 6585 §5 */
#define HTTP_INTERNAL_ERROR 500

#define METRICS_PATH "/metrics"
/* The Prometheus text exposition format, version 0.0.4. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum metrics_client_state {
	MC_ST_READ,   /* reading the request head; READ watched, deadline armed */
	MC_ST_WRITE,  /* sending the response; WRITE watched while the socket
	               * is full, deadline re-armed once for the whole answer */
	MC_ST_LINGER, /* answered and write side shut; READ watched, discarding
	               * until EOF or the linger deadline, so our close does not
	               * turn into an RST that destroys the answer in flight */
};

struct metrics_client {
	struct metrics_server *m;
	LIST_ENTRY(metrics_client) link; /* m->clients */
	int fd;
	struct watcher w;
	struct timer deadline; /* whatever the state waits for */
	struct release rel;
	enum metrics_client_state state;
	bool stopped;                  /* client_stop ran; freed after the batch */
	bool have_line;                /* request line complete and valid */
	bool in_target;                /* past the method's space */
	bool head;                     /* HEAD: headers only */
	size_t req_len;                /* bytes in req */
	size_t scanned;                /* bytes of req already checked */
	size_t line_start;             /* where the current line begins */
	size_t method_len;             /* method is req[0..method_len) */
	size_t target_off, target_len; /* request-target */
	const uint8_t *out;            /* response: in req, or out_owned */
	size_t out_len, out_off;
	uint8_t *out_owned;               /* malloc'd 200 response */
	char peer[ADDR_STRLEN];           /* for debug logs */
	uint8_t req[METRICS_REQUEST_MAX]; /* the head; then error answers */
};

struct metrics_server {
	struct loop *loop;
	int fd;
	struct watcher w;
	struct timer pause; /* resumes accepting after EMFILE */
	struct release rel;
	metrics_render_cb render;
	void *arg;
	unsigned timeout_ms;
	LIST_HEAD(metrics_client_list, metrics_client) clients;
	size_t nclients;
	uint64_t last_log_ms; /* last accept error logged */
	bool logged;
};

static void client_flush(struct metrics_client *c);

/* --- connection lifetime ------------------------------------------------- */

/* Unregisters and closes at once; the memory waits for the end of the
 * batch, since an event for this watcher may still be queued in it. */
static void
client_stop(struct metrics_client *c)
{
	struct metrics_server *m = c->m;

	if (c->stopped)
		return;
	c->stopped = true;
	loop_unwatch(m->loop, &c->w);
	close(c->fd);
	c->fd = -1;
	timer_stop(m->loop, &c->deadline);
	free(c->out_owned);
	c->out_owned = NULL;
	LIST_REMOVE(c, link);
	m->nclients--;
	loop_release(m->loop, &c->rel, free, c);
}

static void
client_set_interest(struct metrics_client *c, unsigned mask)
{
	if (loop_watch(c->m->loop, &c->w, mask) < 0) {
		log_warn("metrics: epoll for %s", c->peer);
		client_stop(c);
	}
}

static void
client_on_deadline(struct loop *loop, void *arg)
{
	struct metrics_client *c = arg;

	if (c->state != MC_ST_LINGER)
		log_debug("metrics: %s timed out", c->peer);
	client_stop(c);
}

/* --- request parsing (RFC 9112 §2-§5) ------------------------------------ */

/* RFC 9110 §5.6.2 tchar: what methods and field names are made of. */
static bool
is_tchar(uint8_t ch)
{
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return true;
	return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* method SP request-target SP HTTP-version, in req[0..end). */
static bool
parse_request_line(struct metrics_client *c, size_t end)
{
	const uint8_t *p = c->req;
	size_t i = 0;

	while (i < end && is_tchar(p[i]))
		i++;
	if (i == 0 || i == end || p[i] != ' ')
		return false;
	c->method_len = i++;
	c->target_off = i;
	while (i < end && p[i] > ' ' && p[i] < 0x7f)
		i++;
	if (i == c->target_off || i == end || p[i] != ' ')
		return false;
	c->target_len = i - c->target_off;
	i++;
	/* HTTP/1.x only: "HTTP/1." DIGIT and nothing after it. */
	return end - i == 8 && memcmp(p + i, "HTTP/1.", 7) == 0 && p[i + 7] >= '0' &&
		p[i + 7] <= '9';
}

/* field-name ":" field-value; obs-fold (a leading space) is rejected, as
 * is space before the colon (RFC 9112 §5.1, §5.2). Control bytes were
 * refused while scanning. */
static bool
header_line_ok(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && is_tchar(p[i]))
		i++;
	return i > 0 && i < n && p[i] == ':';
}

static bool
method_is(const struct metrics_client *c, const char *name)
{
	return c->method_len == strlen(name) && memcmp(c->req, name, c->method_len) == 0;
}

/* The head is complete and well formed: which answer it gets. */
static int
route(struct metrics_client *c)
{
	const uint8_t *t = c->req + c->target_off;
	size_t plen = strlen(METRICS_PATH);
	bool ours;

	c->head = method_is(c, "HEAD");
	/* The query string is Prometheus's business (e.g. ?name[]=); ignore it. */
	ours = c->target_len >= plen && memcmp(t, METRICS_PATH, plen) == 0 &&
		(c->target_len == plen || t[plen] == '?');
	if (!ours)
		return HTTP_NOT_FOUND;
	if (c->head || method_is(c, "GET"))
		return HTTP_OK;
	return HTTP_METHOD_NOT_ALLOWED;
}

/*
 * Checks the bytes that arrived since the last call. Returns 0 while the
 * head is incomplete, else the status to answer. Bad bytes are refused as
 * soon as they are seen (a TLS ClientHello or a bare LF gets its 400 at
 * once, not after the deadline); lines end only with CRLF.
 */
static int
client_scan(struct metrics_client *c)
{
	for (size_t i = c->scanned; i < c->req_len; i++) {
		uint8_t ch = c->req[i];
		bool after_cr = i > 0 && c->req[i - 1] == '\r';

		if (ch == '\n') {
			size_t end = i - 1;

			if (!after_cr)
				return HTTP_BAD_REQUEST;
			if (!c->have_line) {
				if (!parse_request_line(c, end))
					return HTTP_BAD_REQUEST;
				c->have_line = true;
			} else if (end == c->line_start) {
				/* The empty line: the head is complete. Any body
				 * or pipelined request after it is ignored. */
				return route(c);
			} else if (!header_line_ok(c->req + c->line_start, end - c->line_start)) {
				return HTTP_BAD_REQUEST;
			}
			c->line_start = i + 1;
			continue;
		}
		if (after_cr)
			return HTTP_BAD_REQUEST;
		if (ch != '\r' && ch != '\t' && (ch < 0x20 || ch == 0x7f))
			return HTTP_BAD_REQUEST;
		/* The method is judged byte by byte: anything else is not
		 * an HTTP client. */
		if (!c->have_line && !c->in_target) {
			if (ch == ' ')
				c->in_target = true;
			else if (!is_tchar(ch))
				return HTTP_BAD_REQUEST;
		}
	}
	c->scanned = c->req_len;
	if (c->req_len == sizeof(c->req))
		return HTTP_HEADERS_TOO_LARGE;
	return 0;
}

/* --- responses ----------------------------------------------------------- */

static const char *
status_reason(int status)
{
	switch (status) {
	case HTTP_OK:
		return "OK";
	case HTTP_BAD_REQUEST:
		return "Bad Request";
	case HTTP_NOT_FOUND:
		return "Not Found";
	case HTTP_METHOD_NOT_ALLOWED:
		return "Method Not Allowed";
	case HTTP_HEADERS_TOO_LARGE:
		return "Request Header Fields Too Large";
	default:
		return "Internal Server Error";
	}
}

/* RFC 9110 §5.6.7 IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT". */
static void
http_date(char *out, size_t cap)
{
	time_t now = time(NULL);
	struct tm tm;

	if (gmtime_r(&now, &tm) == NULL ||
		strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
		out[0] = '\0';
}

/* The status line and headers, with Connection: close (RFC 9112 §9.6):
 * one request per connection keeps the state machine this small. */
static int
format_head(char *out, size_t cap, int status, const char *type, size_t len)
{
	char date[64];

	http_date(date, sizeof(date));
	return snprintf(out, cap,
		"HTTP/1.1 %d %s\r\n"
		"Date: %s\r\n"
		"Content-Type: %s\r\n"
		"Content-Length: %zu\r\n"
		"%s"
		"Connection: close\r\n"
		"\r\n",
		status, status_reason(status), date, type, len,
		status == HTTP_METHOD_NOT_ALLOWED ? "Allow: GET, HEAD\r\n" : "");
}

/* Error answers are short: written into req, which is no longer needed,
 * so they cost no allocation. */
static void
client_prepare_error(struct metrics_client *c, int status)
{
	char body[64], *out = (char *)c->req;
	int bl, hl;

	bl = snprintf(body, sizeof(body), "%d %s\n", status, status_reason(status));
	hl = format_head(out, sizeof(c->req), status, "text/plain; charset=utf-8", (size_t)bl);
	/* Both fit by construction (a few hundred bytes of 2 KiB). */
	if (!c->head)
		memcpy(out + hl, body, (size_t)bl + 1);
	c->out = c->req;
	c->out_len = (size_t)hl + (c->head ? 0 : (size_t)bl);
}

/* Renders the exposition into memory and builds the 200 answer. Returns
 * 0, or -1 when rendering or allocation failed (the caller answers 500). */
static int
client_prepare_metrics(struct metrics_client *c)
{
	char *body = NULL, head[512];
	size_t blen = 0, total;
	FILE *f;
	int hl, bad;

	f = open_memstream(&body, &blen);
	if (f == NULL) {
		log_warn("metrics: open_memstream");
		return -1;
	}
	c->m->render(f, c->m->arg);
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		log_warnx("metrics: rendering the exposition failed");
		free(body);
		return -1;
	}
	/* The callback may have stopped the server (a reload, say). */
	if (c->stopped) {
		free(body);
		return -1;
	}
	hl = format_head(head, sizeof(head), HTTP_OK, METRICS_CONTENT_TYPE, blen);
	total = (size_t)hl + (c->head ? 0 : blen);
	c->out_owned = malloc(total);
	if (c->out_owned == NULL) {
		log_warn("metrics: response of %zu bytes", total);
		free(body);
		return -1;
	}
	memcpy(c->out_owned, head, (size_t)hl);
	if (!c->head)
		memcpy(c->out_owned + hl, body, blen);
	free(body);
	c->out = c->out_owned;
	c->out_len = total;
	return 0;
}

static void
client_respond(struct metrics_client *c, int status)
{
	if (log_enabled(LOG_LVL_DEBUG)) {
		char method[LOG_ESCAPED_SIZE(16)];
		log_debug("metrics: %s %s -> %d", c->peer,
			c->have_line ? log_escape(c->req, c->method_len, method, sizeof(method))
				     : "-",
			status);
	}
	if (status == HTTP_OK && client_prepare_metrics(c) < 0)
		status = HTTP_INTERNAL_ERROR;
	if (c->stopped)
		return;
	if (status != HTTP_OK)
		client_prepare_error(c, status);
	c->state = MC_ST_WRITE;
	c->out_off = 0;
	timer_start(c->m->loop, &c->deadline, c->m->timeout_ms);
	client_flush(c);
}

/* --- I/O ----------------------------------------------------------------- */

/* Writes what the socket takes; waits for EPOLLOUT for the rest. Once all
 * is out, shuts the write side and lingers. */
static void
client_flush(struct metrics_client *c)
{
	while (c->out_off < c->out_len) {
		/* MSG_NOSIGNAL: a scraper that went away is EPIPE, not a signal. */
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				client_set_interest(c, LOOP_WRITE);
				return;
			}
			log_debug("metrics: send to %s: %s", c->peer, strerror(errno));
			client_stop(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	free(c->out_owned);
	c->out_owned = NULL;
	c->out = NULL;
	if (shutdown(c->fd, SHUT_WR) < 0) {
		client_stop(c);
		return;
	}
	c->state = MC_ST_LINGER;
	timer_start(c->m->loop, &c->deadline,
		c->m->timeout_ms < METRICS_LINGER_MS ? c->m->timeout_ms : METRICS_LINGER_MS);
	client_set_interest(c, LOOP_READ);
}

static void
client_read(struct metrics_client *c)
{
	ssize_t n;
	int status;

	n = net_read_some(c->fd, c->req + c->req_len, sizeof(c->req) - c->req_len);
	if (n < 0)
		return;
	if (n == 0) {
		/* EOF or reset before a whole request: nobody to answer. */
		client_stop(c);
		return;
	}
	c->req_len += (size_t)n;
	status = client_scan(c);
	if (status != 0)
		client_respond(c, status);
}

/* Discards what the peer still sends until it closes. */
static void
client_linger(struct metrics_client *c)
{
	uint8_t sink[512];

	for (int i = 0; i < METRICS_LINGER_READS; i++) {
		ssize_t n = net_read_some(c->fd, sink, sizeof(sink));
		if (n < 0)
			return;
		if (n == 0) {
			client_stop(c);
			return;
		}
	}
}

static void
client_on_io(struct loop *loop, unsigned events, void *arg)
{
	struct metrics_client *c = arg;

	if (c->stopped)
		return;
	switch (c->state) {
	case MC_ST_READ:
		if (events & LOOP_READ)
			client_read(c);
		break;
	case MC_ST_WRITE:
		if (events & LOOP_WRITE)
			client_flush(c);
		break;
	case MC_ST_LINGER:
		if (events & LOOP_READ)
			client_linger(c);
		break;
	}
}

/* --- listener ------------------------------------------------------------ */

static void
client_new(struct metrics_server *m, int fd, const union sockaddr_any *peer)
{
	struct metrics_client *c;

	if (m->nclients >= METRICS_MAX_CLIENTS) {
		/* Accepting and closing keeps the backlog from filling with
		 * connections that would only time out there. */
		log_debug("metrics: %d clients already, closing a new one", METRICS_MAX_CLIENTS);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		log_warn("metrics: new client");
		close(fd);
		return;
	}
	c->m = m;
	c->fd = fd;
	c->state = MC_ST_READ;
	if (log_enabled(LOG_LVL_DEBUG))
		addr_format(peer, c->peer, sizeof(c->peer));
	else
		strcpy(c->peer, "-");
	watcher_init(&c->w, fd, client_on_io, c);
	timer_init(&c->deadline, client_on_deadline, c);
	if (loop_watch(m->loop, &c->w, LOOP_READ) < 0) {
		log_warn("metrics: epoll");
		close(fd);
		free(c);
		return;
	}
	timer_start(m->loop, &c->deadline, m->timeout_ms);
	LIST_INSERT_HEAD(&m->clients, c, link);
	m->nclients++;
}

static void
server_on_resume(struct loop *loop, void *arg)
{
	struct metrics_server *m = arg;

	if (loop_watch(loop, &m->w, LOOP_READ) < 0)
		timer_start(loop, &m->pause, METRICS_PAUSE_MS);
}

static void
server_on_accept(struct loop *loop, unsigned events, void *arg)
{
	struct metrics_server *m = arg;

	for (int i = 0; i < METRICS_ACCEPT_BATCH; i++) {
		union sockaddr_any peer;
		int fd = net_accept(m->fd, &peer);

		if (fd >= 0) {
			client_new(m, fd, &peer);
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if (errno == ECONNABORTED || errno == EPERM)
			continue;
		if (!m->logged || loop_now(loop) - m->last_log_ms >= METRICS_LOG_INTERVAL_MS) {
			log_warn("metrics: accept");
			m->logged = true;
			m->last_log_ms = loop_now(loop);
		}
		/* Out of descriptors or memory: the level-triggered listener
		 * would spin; rest it and let the backlog wait. */
		loop_unwatch(loop, &m->w);
		timer_start(loop, &m->pause, METRICS_PAUSE_MS);
		return;
	}
}

/* --- public -------------------------------------------------------------- */

struct metrics_server *
metrics_start(struct loop *loop, const union sockaddr_any *addr, metrics_render_cb render,
	void *arg)
{
	struct metrics_server *m;
	int saved;

	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->loop = loop;
	m->render = render;
	m->arg = arg;
	m->timeout_ms = METRICS_REQUEST_TIMEOUT_MS;
	m->fd = net_listen_tcp(addr, METRICS_BACKLOG);
	if (m->fd < 0)
		goto fail;
	watcher_init(&m->w, m->fd, server_on_accept, m);
	timer_init(&m->pause, server_on_resume, m);
	if (loop_watch(loop, &m->w, LOOP_READ) < 0)
		goto fail;
	return m;
fail:
	saved = errno;
	if (m->fd >= 0)
		close(m->fd);
	free(m);
	errno = saved;
	return NULL;
}

void
metrics_stop(struct metrics_server *m)
{
	if (m == NULL)
		return;
	while (!LIST_EMPTY(&m->clients))
		client_stop(LIST_FIRST(&m->clients));
	loop_unwatch(m->loop, &m->w);
	close(m->fd);
	m->fd = -1;
	timer_stop(m->loop, &m->pause);
	loop_release(m->loop, &m->rel, free, m);
}

int
metrics_local_addr(const struct metrics_server *m, union sockaddr_any *out)
{
	return net_local_addr(m->fd, out);
}

void
metrics_set_request_timeout_ms(struct metrics_server *m, unsigned ms)
{
	m->timeout_ms = ms;
}

/* --- the daemon's exposition ------------------------------------------------ */

/* One scrape's output: every sample carries the worker label when set. */
struct metrics_text {
	FILE *out;
	char worker[32]; /* worker="N", or empty */
};

static void
metrics_family(const struct metrics_text *t, const char *name, const char *type, const char *help)
{
	fprintf(t->out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{worker,labels} v; labels is "key=\"value\"" or NULL. */
static void
metrics_sample(const struct metrics_text *t, const char *name, const char *labels, uint64_t v)
{
	const char *w = t->worker, *sep = w[0] && labels ? "," : "";

	if (!w[0] && !labels)
		fprintf(t->out, "%s %" PRIu64 "\n", name, v);
	else
		fprintf(t->out, "%s{%s%s%s} %" PRIu64 "\n", name, w, sep, labels ? labels : "", v);
}

/* A family with one labelled sample per value: label="names[i]". */
static void
metrics_by_label(const struct metrics_text *t, const char *name, const char *type, const char *help,
	const char *label, const char *const *names, const uint64_t *v, size_t n)
{
	char l[64];

	metrics_family(t, name, type, help);
	for (size_t i = 0; i < n; i++) {
		snprintf(l, sizeof(l), "%s=\"%s\"", label, names[i]);
		metrics_sample(t, name, l, v[i]);
	}
}

static const char *
metrics_cmd_label(int cmd)
{
	return cmd == 0 ? "none" : proto_cmd_str((uint8_t)cmd);
}

static void
metrics_sessions(const struct metrics_text *t, const struct stats *s)
{
	char l[64];

	metrics_family(t, "socks5d_connections_accepted_total", "counter",
		"Client connections accepted.");
	metrics_sample(t, "socks5d_connections_accepted_total", NULL, s->accepted);
	metrics_family(t, "socks5d_sessions_active", "gauge",
		"Open client connections by command (none: still in the handshake).");
	for (int c = 0; c < STATS_CMD_SLOTS; c++) {
		uint64_t v = s->active_by_cmd[c];
		if (c == 0) {
			v = s->active;
			for (int k = 1; k < STATS_CMD_SLOTS; k++)
				v -= s->active_by_cmd[k];
		}
		snprintf(l, sizeof(l), "cmd=\"%s\"", metrics_cmd_label(c));
		metrics_sample(t, "socks5d_sessions_active", l, v);
	}
	metrics_family(t, "socks5d_sessions_total", "counter",
		"Ended sessions by command and reply code.");
	for (int c = 0; c < STATS_CMD_SLOTS; c++)
		for (int r = 0; r < STATS_REP_SLOTS; r++) {
			char rep[8];
			if (!s->sessions[c][r])
				continue;
			if (r == STATS_REP_NONE)
				snprintf(rep, sizeof(rep), "none");
			else
				snprintf(rep, sizeof(rep), "0x%02x", r);
			snprintf(l, sizeof(l), "cmd=\"%s\",rep=\"%s\"", metrics_cmd_label(c), rep);
			metrics_sample(t, "socks5d_sessions_total", l, s->sessions[c][r]);
		}
}

static void
metrics_relay(const struct metrics_text *t, const struct stats *s)
{
	static const char *const dirs[] = { "up", "down" }, *const paths[] = { "splice", "copy" },
				 *const states[] = { "in_use", "cached" };
	struct relay_stats rls;
	struct pipepool_stats pps;

	relay_get_stats(&rls);
	pipepool_get_stats(&pps);
	metrics_by_label(t, "socks5d_bytes_total", "counter",
		"Bytes relayed so far (running sessions too), by direction.", "direction", dirs,
		(const uint64_t[]){ s->bytes_up + s->live_up, s->bytes_down + s->live_down }, 2);
	metrics_by_label(t, "socks5d_relay_bytes_total", "counter",
		"Bytes the relay has written so far, by path (splice: through a pipe, copy: "
		"through a buffer).",
		"path", paths, (const uint64_t[]){ rls.spliced, rls.copied }, 2);
	metrics_by_label(t, "socks5d_relay_pipes", "gauge", "Splice pipes, by state.", "state",
		states, (const uint64_t[]){ pps.in_use, pps.cached }, 2);
	metrics_family(t, "socks5d_relay_pipe_refusals_total", "counter",
		"Bulk reads that copied because no pipe could be had.");
	metrics_sample(t, "socks5d_relay_pipe_refusals_total", NULL, pps.refused);
}

static void
metrics_refusals(const struct metrics_text *t, const struct stats *s)
{
	static const char *const reasons[] = { "client_rule", "request_rule", "limit",
		"proxy_protocol", "quota" };

	metrics_family(t, "socks5d_auth_failures_total", "counter",
		"Failed RFC 1929 authentications.");
	metrics_sample(t, "socks5d_auth_failures_total", NULL, s->auth_failures);
	metrics_by_label(t, "socks5d_denied_total", "counter",
		"Connections and requests refused, by reason.", "reason", reasons,
		(const uint64_t[]){ s->client_denials, s->rule_denials, s->limit_refusals,
			s->proxy_rejects, s->quota_refusals },
		5);
}

static void
metrics_dns(const struct metrics_text *t, const struct resolver_stats *rs)
{
	static const struct {
		const char *name, *help;
	} families[] = {
		{ "socks5d_dns_lookups_total", "Name lookups started." },
		{ "socks5d_dns_queries_total", "DNS queries sent." },
		{ "socks5d_dns_cache_hits_total", "Lookups answered from the cache." },
		{ "socks5d_dns_timeouts_total", "Queries no server answered." },
		{ "socks5d_dns_lookups_refused_total", "Lookups refused at max-lookups." },
	};
	const uint64_t v[] = { rs->lookups, rs->queries, rs->cache_hits, rs->timeouts,
		rs->refused };

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		metrics_family(t, families[i].name, "counter", families[i].help);
		metrics_sample(t, families[i].name, NULL, v[i]);
	}
}

static void
metrics_auth(const struct metrics_text *t, const struct pwcheck *pw)
{
	static const char *const results[] = { "ok", "failed", "error" };
	static const struct pwcheck_stats none;
	const struct pwcheck_stats *ps = pw ? pwcheck_get_stats(pw) : &none;

	metrics_by_label(t, "socks5d_auth_checks_total", "counter",
		"Password checks answered by the helper processes, by result.", "result", results,
		(const uint64_t[]){ ps->ok, ps->failed, ps->errors }, 3);
	metrics_family(t, "socks5d_auth_hashes_total", "counter",
		"Password checks that ran a hash (the rest were answered from the cache of "
		"verified "
		"passwords or a plain-text secret).");
	metrics_sample(t, "socks5d_auth_hashes_total", NULL, ps->hashed);
	metrics_family(t, "socks5d_auth_checks_waiting", "gauge",
		"Password checks waiting for their turn or at the helpers.");
	metrics_sample(t, "socks5d_auth_checks_waiting", NULL, ps->waiting + ps->sent);
	metrics_family(t, "socks5d_auth_keeper_restarts_total", "counter",
		"Times the password keeper process died and was started again.");
	metrics_sample(t, "socks5d_auth_keeper_restarts_total", NULL, ps->keeper_restarts);
}

/* One sample per parent proxy seen so far (labels are safe: a parent's
 * host passed upstream_parse's checks). */
static void
metrics_parents(const struct metrics_text *t, const struct parents *ps)
{
	static const char *const names[] = { "socks5d_parent_sessions_total",
		"socks5d_parent_failures_total", "socks5d_parent_up" };
	static const char *const types[] = { "counter", "counter", "gauge" };
	static const char *const helps[] = {
		"Requests a parent proxy answered (with any reply).",
		"Attempts that failed at a parent proxy itself (refused, timed out, broken).",
		"1 while a parent proxy is up, 0 while it is marked down.",
	};
	struct timespec ts;
	uint64_t now;
	char l[UPSTREAM_LABEL_MAX + 16];

	clock_gettime(CLOCK_MONOTONIC, &ts); /* the loop's clock */
	now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	for (size_t i = 0; i < 3; i++) {
		metrics_family(t, names[i], types[i], helps[i]);
		for (const struct parent_state *p = ps ? ps->head : NULL; p; p = p->next) {
			uint64_t v = i == 0 ? p->sessions
				: i == 1    ? p->failures
					    : !parent_is_down(p, now);

			snprintf(l, sizeof(l), "parent=\"%s\"", p->label);
			metrics_sample(t, names[i], l, v);
		}
	}
}

/* A label value from a name the clients chose: the log's escaping (every
 * byte but printable ASCII as \xHH), its backslashes doubled as the
 * exposition format wants. */
static const char *
metrics_label_value(const char *s, char *out, size_t cap)
{
	char esc[LOG_ESCAPED_SIZE(255)];
	size_t w = 0;

	log_escape(s, strlen(s), esc, sizeof(esc));
	for (const char *p = esc; *p && w + 3 < cap; p++) {
		if (*p == '\\')
			out[w++] = '\\';
		out[w++] = *p;
	}
	out[w] = '\0';
	return out;
}

/* Users: the first metrics_users since the start have series of their
 * own, the rest are summed as user="_other" (each sum only grows: a user
 * never moves between the two). */
static void
metrics_users(const struct metrics_text *t, struct account *a, unsigned cap)
{
	uint64_t other[3] = { 0, 0, 0 };
	struct account_info i;
	char name[2 * LOG_ESCAPED_SIZE(255)], l[sizeof(name) + 64];
	bool any = false;

	metrics_family(t, "socks5d_user_bytes_total", "counter",
		"Bytes relayed per user so far, by direction (users past metrics-users summed as "
		"_other).");
	for (struct account_rec *r = account_next(a, ACCOUNT_USER, 0); r; r = account_rec_next(r)) {
		account_rec_info(a, r, &i);
		if (i.seq >= cap) {
			other[0] += i.ended[0] + i.live[0];
			other[1] += i.ended[1] + i.live[1];
			other[2] += i.sessions;
			any = true;
			continue;
		}
		metrics_label_value(i.name, name, sizeof(name));
		for (int d = 0; d < 2; d++) {
			snprintf(l, sizeof(l), "user=\"%s\",direction=\"%s\"", name,
				d ? "down" : "up");
			metrics_sample(t, "socks5d_user_bytes_total", l, i.ended[d] + i.live[d]);
		}
	}
	if (any)
		for (int d = 0; d < 2; d++) {
			snprintf(l, sizeof(l), "user=\"_other\",direction=\"%s\"",
				d ? "down" : "up");
			metrics_sample(t, "socks5d_user_bytes_total", l, other[d]);
		}
	metrics_family(t, "socks5d_user_sessions", "gauge", "Running sessions per user.");
	for (struct account_rec *r = account_next(a, ACCOUNT_USER, 0); r; r = account_rec_next(r)) {
		account_rec_info(a, r, &i);
		if (i.seq >= cap)
			continue;
		snprintf(l, sizeof(l), "user=\"%s\"",
			metrics_label_value(i.name, name, sizeof(name)));
		metrics_sample(t, "socks5d_user_sessions", l, i.sessions);
	}
	if (any)
		metrics_sample(t, "socks5d_user_sessions", "user=\"_other\"", other[2]);
}

/* The shared rate limits of the first metrics_users users that have one. */
static void
metrics_user_limits(const struct metrics_text *t, struct account *a, unsigned cap)
{
	char name[2 * LOG_ESCAPED_SIZE(255)], l[sizeof(name) + 64];
	struct account_info i;
	unsigned n = 0;

	metrics_family(t, "socks5d_user_rate_limit_bits", "gauge",
		"A user's shared bandwidth limit in bits per second, by direction (users with "
		"one; 0: that direction is unlimited).");
	for (struct account_rec *r = account_next(a, ACCOUNT_USER, 0); r && n < cap;
		r = account_rec_next(r)) {
		account_rec_info(a, r, &i);
		if (!i.rate[0] && !i.rate[1])
			continue;
		n++;
		metrics_label_value(i.name, name, sizeof(name));
		for (int d = 0; d < 2; d++) {
			snprintf(l, sizeof(l), "user=\"%s\",direction=\"%s\"", name,
				d ? "down" : "up");
			metrics_sample(t, "socks5d_user_rate_limit_bits", l, i.rate[d] * 8);
		}
	}
}

/* Quotas of the users and client groups (the first metrics_users of each
 * that have one): the limit and what is used this period. */
static void
metrics_quotas(const struct metrics_text *t, struct account *a, unsigned cap)
{
	static const char *const fams[2] = { "socks5d_quota_limit_bytes",
		"socks5d_quota_used_bytes" };
	static const char *const helps[2] = { "Quota per period, by scope and name.",
		"Bytes counted against the quota this period, by scope and name." };
	char name[2 * LOG_ESCAPED_SIZE(255)], l[sizeof(name) + 64];
	struct account_info i;

	for (int f = 0; f < 2; f++) {
		metrics_family(t, fams[f], "gauge", helps[f]);
		for (int k = ACCOUNT_USER; k <= ACCOUNT_CLIENT; k++) {
			unsigned n = 0;
			for (struct account_rec *r = account_next(a, (enum account_kind)k, 0);
				r && n < cap; r = account_rec_next(r)) {
				account_rec_info(a, r, &i);
				if (!i.has_quota)
					continue;
				n++;
				snprintf(l, sizeof(l), "scope=\"%s\",name=\"%s\"",
					k == ACCOUNT_USER ? "user" : "client",
					metrics_label_value(i.name, name, sizeof(name)));
				metrics_sample(t, fams[f], l, f ? i.quota.used : i.quota.limit);
			}
		}
	}
}

static void
metrics_accounting(const struct metrics_text *t, const struct metrics_sources *src)
{
	struct shaper_stats ss;

	shaper_get_stats(&ss);
	metrics_family(t, "socks5d_throttle_waits_total", "counter",
		"Times a relayed direction stopped reading to wait for its bandwidth limit.");
	metrics_sample(t, "socks5d_throttle_waits_total", NULL, ss.waits);
	if (!src->acct)
		return;
	metrics_users(t, src->acct, src->metrics_users);
	metrics_user_limits(t, src->acct, src->metrics_users);
	metrics_quotas(t, src->acct, src->metrics_users);
}

static unsigned
metrics_count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	unsigned n = 0;

	if (!dir)
		return 0;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n > 0 ? n - 1 : 0; /* not the directory's own fd */
}

void
metrics_render(FILE *out, void *arg)
{
	static const char *const dirs[] = { "up", "down" };
	const struct metrics_sources *src = arg;
	const struct stats *s = src->stats;
	struct metrics_text t = { .out = out };

	if (src->worker >= 0)
		snprintf(t.worker, sizeof(t.worker), "worker=\"%d\"", src->worker);
	metrics_sessions(&t, s);
	metrics_relay(&t, s);
	metrics_refusals(&t, s);
	metrics_auth(&t, src->pwcheck ? *src->pwcheck : NULL);
	metrics_dns(&t, resolver_get_stats(src->resolver));
	metrics_by_label(&t, "socks5d_udp_datagrams_total", "counter",
		"UDP datagrams relayed (ended associations), by direction.", "direction", dirs,
		(const uint64_t[]){ s->udp_dgrams_up, s->udp_dgrams_down }, 2);
	metrics_by_label(&t, "socks5d_udp_dropped_total", "counter",
		"UDP datagrams dropped, by reason.", "reason", udpassoc_drop_names, s->udp_dropped,
		UDPASSOC_DROP_REASONS);
	metrics_parents(&t, src->parents);
	metrics_accounting(&t, src);
	metrics_family(&t, "socks5d_open_fds", "gauge", "File descriptors in use.");
	metrics_sample(&t, "socks5d_open_fds", NULL, metrics_count_fds());
}
