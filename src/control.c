/*
 * control: the control socket's request parser (pure: the server and
 * `socks5d ctl` share it) and its server in the loop.
 *
 * The server is the metrics endpoint's shape on a unix socket: accept
 * (at most CONTROL_MAX_CLIENTS at once), read one line into a fixed buffer
 * within a deadline, then write the answer through a fixed buffer, asking
 * the handler for more records each time it has drained, each part of the
 * answer again within the deadline; close when all is out. Nothing grows
 * with what a client sends or how many sessions there are.
 */
#include "control.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "loop.h"
#include "net.h"
#include "pct.h"
#include "strnum.h"

#define CONTROL_BACKLOG 32
#define CONTROL_MAX_WORDS 4

static const char *const cmd_names[] = {
	[CONTROL_SESSIONS] = "sessions",
	[CONTROL_USERS] = "users",
	[CONTROL_CLIENTS] = "clients",
	[CONTROL_KILL] = "kill",
	[CONTROL_QUOTA_RESET] = "quota-reset",
	[CONTROL_RELOAD] = "reload",
};

#define NCMDS (sizeof(cmd_names) / sizeof(cmd_names[0]))

/* --- the request ---------------------------------------------------------------- */

const char *
control_cmd_name(enum control_cmd cmd)
{
	return (size_t)cmd < NCMDS ? cmd_names[cmd] : "?";
}

const char *
control_status_str(enum control_status st)
{
	switch (st) {
	case CONTROL_OK:
		return "ok";
	case CONTROL_NEED_MORE:
		return "need more";
	case CONTROL_ERR_TOO_LONG:
		return "request too long";
	case CONTROL_ERR_BYTE:
		return "bad byte in request";
	case CONTROL_ERR_COMMAND:
		return "unknown command or option (sessions, users, clients, kill, quota-reset, "
		       "reload; --json, --client)";
	case CONTROL_ERR_ARGS:
		return "wrong arguments";
	}
	return "unknown status";
}

static bool
word_is(const uint8_t *w, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(w, s, n) == 0;
}

/* The arguments after the command (options taken out) for cmd. */
static enum control_status
parse_args(struct control_request *r, const uint8_t **w, const size_t *wl, int n)
{
	long nl;
	uint64_t id;

	switch (r->cmd) {
	case CONTROL_KILL:
		if (n != 1 ||
			strnum_parse_u64_span((const char *)w[0], wl[0], 1, UINT64_MAX, &id) !=
				STRNUM_OK)
			return CONTROL_ERR_ARGS;
		r->id = id;
		return CONTROL_OK;
	case CONTROL_QUOTA_RESET:
		if (n != 1)
			return CONTROL_ERR_ARGS;
		nl = pct_decode((const char *)w[0], wl[0], (uint8_t *)r->name, CONTROL_NAME_MAX);
		if (nl <= 0 || memchr(r->name, '\0', (size_t)nl))
			return CONTROL_ERR_ARGS;
		r->name_len = (size_t)nl;
		r->name[nl] = '\0';
		return CONTROL_OK;
	default:
		return n == 0 && !r->client ? CONTROL_OK : CONTROL_ERR_ARGS;
	}
}

/* The words of one whole line (without its end). */
static enum control_status
parse_line(const uint8_t *p, size_t len, struct control_request *r)
{
	const uint8_t *w[CONTROL_MAX_WORDS];
	size_t wl[CONTROL_MAX_WORDS], start = 0;
	int n = 0;
	size_t c;

	if (len == 0)
		return CONTROL_ERR_COMMAND;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && p[i] != ' ')
			continue;
		if (i == start)
			return CONTROL_ERR_ARGS; /* an empty word: two spaces, or an edge */
		if (word_is(p + start, i - start, "--json")) {
			r->json = true;
		} else if (word_is(p + start, i - start, "--client")) {
			r->client = true;
		} else if (i - start > 2 && p[start] == '-' && p[start + 1] == '-') {
			return CONTROL_ERR_COMMAND; /* an unknown option */
		} else {
			if (n == CONTROL_MAX_WORDS)
				return CONTROL_ERR_ARGS;
			w[n] = p + start;
			wl[n++] = i - start;
		}
		start = i + 1;
	}
	if (n == 0)
		return CONTROL_ERR_COMMAND;
	for (c = 0; c < NCMDS; c++)
		if (word_is(w[0], wl[0], cmd_names[c]))
			break;
	if (c == NCMDS)
		return CONTROL_ERR_COMMAND;
	r->cmd = (enum control_cmd)c;
	if (r->client && r->cmd != CONTROL_QUOTA_RESET)
		return CONTROL_ERR_ARGS;
	return parse_args(r, w + 1, wl + 1, n - 1);
}

enum control_status
control_parse_request(const uint8_t *p, size_t len, struct control_request *out, size_t *used)
{
	struct control_request r;
	enum control_status st;
	size_t end;

	*used = 0;
	for (end = 0; end < len && p[end] != '\n'; end++) {
		bool cr_ok = p[end] == '\r' && end + 1 < len && p[end + 1] == '\n';
		if ((p[end] < 0x20 || p[end] > 0x7e) &&
			!(p[end] == '\r' && (cr_ok || end + 1 == len)))
			return CONTROL_ERR_BYTE;
		if (end + 1 >= CONTROL_REQUEST_MAX)
			return CONTROL_ERR_TOO_LONG;
	}
	if (end == len)
		return CONTROL_NEED_MORE;
	memset(&r, 0, sizeof(r));
	st = parse_line(p, end > 0 && p[end - 1] == '\r' ? end - 1 : end, &r);
	if (st != CONTROL_OK)
		return st;
	*out = r;
	*used = end + 1;
	return CONTROL_OK;
}

int
control_format_request(const struct control_request *r, char *out, size_t cap)
{
	char name[PCT_ENCODED_SIZE(CONTROL_NAME_MAX)] = "", id[24] = "";
	int n;

	if (r->cmd == CONTROL_QUOTA_RESET)
		pct_encode((const uint8_t *)r->name, r->name_len, name, sizeof(name));
	if (r->cmd == CONTROL_KILL)
		snprintf(id, sizeof(id), "%llu", (unsigned long long)r->id);
	n = snprintf(out, cap, "%s%s%s%s%s%s\n", control_cmd_name(r->cmd),
		r->client ? " --client" : "", id[0] ? " " : "", id, name[0] ? " " : "", name);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	if (r->json) {
		if ((size_t)n + 7 >= cap)
			return -1;
		memcpy(out + n - 1, " --json\n", 9);
		n += 7;
	}
	return n;
}

/* --- the answer's buffer ---------------------------------------------------------- */

struct control_reply {
	size_t len, off; /* buf[off..len) not yet written */
	char buf[CONTROL_REPLY_CAP];
};

static int reply_vprintf(struct control_reply *w, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static int
reply_vprintf(struct control_reply *w, const char *fmt, va_list ap)
{
	size_t room;
	int n;

	if (w->off == w->len)
		w->off = w->len = 0;
	room = sizeof(w->buf) - w->len;
	n = vsnprintf(w->buf + w->len, room, fmt, ap);
	if (n < 0 || (size_t)n >= room)
		return -1;
	w->len += (size_t)n;
	return 0;
}

int
control_printf(struct control_reply *w, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = reply_vprintf(w, fmt, ap);
	va_end(ap);
	return r;
}

void
control_ok(struct control_reply *w)
{
	(void)control_printf(w, "ok\n");
}

void
control_error(struct control_reply *w, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(void)control_printf(w, "error: %s\n", msg);
}

/* --- the server --------------------------------------------------------------------- */

enum control_client_state {
	CC_READ,  /* reading the request line; READ watched, deadline armed */
	CC_WRITE, /* writing the answer; WRITE watched while the socket is full */
};

struct control_client {
	struct control_server *s;
	LIST_ENTRY(control_client) link;
	struct watcher w;
	struct timer deadline;
	struct release rel;
	enum control_client_state state;
	bool stopped;
	bool done;       /* the handler has written its last record */
	uint64_t cursor; /* the handler's place */
	struct control_request req;
	size_t in_len;
	uint8_t in[CONTROL_REQUEST_MAX];
	struct control_reply out;
};

struct control_server {
	struct loop *loop;
	int fd;
	struct watcher w;
	struct release rel;
	char path[108];
	dev_t dev; /* the socket file we made: removed at stop only if still ours */
	ino_t ino;
	unsigned timeout_ms;
	control_handler_cb handler;
	void *arg;
	LIST_HEAD(, control_client) clients;
	size_t nclients;
};

static void
client_stop(struct control_client *c)
{
	if (c->stopped)
		return;
	c->stopped = true;
	loop_unwatch_closing(c->s->loop, &c->w);
	close(c->w.fd);
	c->w.fd = -1;
	timer_stop(c->s->loop, &c->deadline);
	LIST_REMOVE(c, link);
	c->s->nclients--;
	loop_release(c->s->loop, &c->rel, free, c);
}

static void
client_on_deadline(struct loop *loop, void *arg)
{
	struct control_client *c = arg;

	log_debug("control: a client %s in time; closed",
		c->state == CC_READ ? "sent no request" : "took no answer");
	client_stop(c);
}

/* Writes what the socket takes; refills from the handler when drained.
 * Returns when the socket is full (WRITE watched) or all is out (closed). */
static void
client_flush(struct control_client *c)
{
	struct control_reply *o = &c->out;

	for (;;) {
		if (o->off == o->len) {
			if (c->done) {
				client_stop(c);
				return;
			}
			o->off = o->len = 0;
			c->done = c->s->handler(&c->req, o, &c->cursor, c->s->arg);
			if (c->stopped)
				return;
			/* A handler that wants more must have written something. */
			if (o->len == 0)
				c->done = true;
			continue;
		}
		ssize_t n = send(c->w.fd, o->buf + o->off, o->len - o->off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			client_stop(c);
			return;
		}
		o->off += (size_t)n;
		/* Progress: the deadline is for each part of the answer. */
		timer_start(c->s->loop, &c->deadline, c->s->timeout_ms);
	}
	if (loop_watch(c->s->loop, &c->w, LOOP_WRITE) < 0)
		client_stop(c);
}

static void
client_read(struct control_client *c)
{
	enum control_status st;
	size_t used;
	ssize_t n;

	n = net_read_some(c->w.fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
	if (n < 0)
		return;
	if (n == 0) {
		client_stop(c);
		return;
	}
	c->in_len += (size_t)n;
	st = control_parse_request(c->in, c->in_len, &c->req, &used);
	if (st == CONTROL_NEED_MORE)
		return;
	c->state = CC_WRITE;
	if (st != CONTROL_OK) {
		control_error(&c->out, "%s", control_status_str(st));
		c->done = true;
	}
	client_flush(c);
}

static void
client_on_io(struct loop *loop, unsigned events, void *arg)
{
	struct control_client *c = arg;

	if (c->stopped)
		return;
	if (c->state == CC_READ && (events & LOOP_READ))
		client_read(c);
	else if (c->state == CC_WRITE && (events & LOOP_WRITE))
		client_flush(c);
}

static void
server_on_accept(struct loop *loop, unsigned events, void *arg)
{
	struct control_server *s = arg;

	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct control_client *c;
		int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
				errno != ECONNABORTED)
				log_warn("control: accept");
			return;
		}
		if (s->nclients >= CONTROL_MAX_CLIENTS || !(c = calloc(1, sizeof(*c)))) {
			close(fd);
			continue;
		}
		c->s = s;
		c->state = CC_READ;
		watcher_init(&c->w, fd, client_on_io, c);
		timer_init(&c->deadline, client_on_deadline, c);
		if (loop_watch(loop, &c->w, LOOP_READ) < 0) {
			close(fd);
			free(c);
			continue;
		}
		timer_start(loop, &c->deadline, s->timeout_ms);
		LIST_INSERT_HEAD(&s->clients, c, link);
		s->nclients++;
	}
}

/* A unix socket at path, bound with mode 0600 (the umask covers the
 * window before chmod), given to uid:gid. */
static int
control_listen(struct control_server *s, uid_t uid, gid_t gid)
{
	struct sockaddr_un sun;
	struct stat st;
	mode_t old;
	int fd, rc;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, s->path, strlen(s->path));
	/* A socket left by a daemon that died: replaced. Anything else at
	 * the path is not ours to remove. */
	if (lstat(s->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			errno = EEXIST;
			return -1;
		}
		(void)unlink(s->path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc < 0 || chmod(s->path, 0600) < 0 ||
		(uid != (uid_t)-1 && chown(s->path, uid, gid) < 0) ||
		listen(fd, CONTROL_BACKLOG) < 0 || stat(s->path, &st) < 0) {
		int saved = errno;
		close(fd);
		if (rc == 0)
			(void)unlink(s->path);
		errno = saved;
		return -1;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	return fd;
}

struct control_server *
control_start(struct loop *loop, const char *path, uid_t uid, gid_t gid, unsigned timeout_ms,
	control_handler_cb handler, void *arg)
{
	struct control_server *s;
	int saved;

	if (strlen(path) >= sizeof(s->path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	if (!(s = calloc(1, sizeof(*s))))
		return NULL;
	s->loop = loop;
	s->handler = handler;
	s->arg = arg;
	s->timeout_ms = timeout_ms;
	LIST_INIT(&s->clients);
	memcpy(s->path, path, strlen(path) + 1);
	s->fd = control_listen(s, uid, gid);
	if (s->fd < 0)
		goto fail;
	watcher_init(&s->w, s->fd, server_on_accept, s);
	if (loop_watch(loop, &s->w, LOOP_READ) < 0) {
		saved = errno;
		close(s->fd);
		(void)unlink(s->path);
		errno = saved;
		goto fail;
	}
	return s;
fail:
	free(s); /* keeps errno (POSIX.1-2024; glibc since 2.33) */
	return NULL;
}

void
control_stop(struct control_server *s)
{
	struct stat st;

	if (!s)
		return;
	while (!LIST_EMPTY(&s->clients))
		client_stop(LIST_FIRST(&s->clients));
	loop_unwatch_closing(s->loop, &s->w);
	close(s->fd);
	if (stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		(void)unlink(s->path);
	loop_release(s->loop, &s->rel, free, s);
}

const char *
control_path(const struct control_server *s)
{
	return s->path;
}

void
control_set_timeout(struct control_server *s, unsigned timeout_ms)
{
	s->timeout_ms = timeout_ms;
}
