/*
 * listener: accept loop for one listening socket. Shedding at the fd limit
 * uses the classic reserve descriptor: close it, accept the waiting
 * connection, close that at once (the client sees a clean close instead of a
 * hang in the backlog), and reopen the reserve.
 */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "pipepool.h"

#define ACCEPT_BATCH 64
#define PAUSE_MS 100
#define SHED_LOG_INTERVAL_MS 10000

struct listener {
	struct conn_env *env;
	int fd;
	struct watcher w;
	struct timer pause_timer; /* resumes accepting after fd exhaustion */
	union sockaddr_any addr;
	bool proxy_protocol;    /* connections start with a PROXY header */
	bool wildcard;          /* 0.0.0.0 or :: : the local address varies */
	bool nodelay_inherited; /* TCP_NODELAY set here: accepted sockets inherit it */
	bool stopped;           /* listener_stop ran; freed after the batch */
	struct release rel;     /* freed after the batch that closed it */
};

static int reserve_fd = -1;
static bool listener_reuseport;
static struct log_ratelimit shed_log;
static uint64_t shed_since_log;

static void
reserve_open(void)
{
	if (reserve_fd < 0)
		reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void
listener_shed(struct listener *l, int err)
{
	struct loop *loop = l->env->loop;
	union sockaddr_any peer;
	uint64_t now = loop_now(loop);

	/* Cached splice pipes are two fds each that nobody uses right now. */
	pipepool_trim();
	if (reserve_fd >= 0) {
		close(reserve_fd);
		reserve_fd = -1;
		int fd = net_accept(l->fd, &peer);
		if (fd >= 0) {
			close(fd);
			shed_since_log++;
		}
		reserve_open();
	}
	if (log_ratelimit_ok(&shed_log, now, SHED_LOG_INTERVAL_MS, 1)) {
		errno = err;
		log_warn("accept: shedding new connections (%llu since last report)",
			(unsigned long long)shed_since_log);
		shed_since_log = 0;
	}
	/* Whatever is left in the backlog waits until fds free up; pausing
	 * keeps the level-triggered listener from spinning meanwhile. */
	loop_unwatch(loop, &l->w);
	timer_start(loop, &l->pause_timer, PAUSE_MS);
}

static void
listener_on_accept(struct loop *loop, unsigned events, void *arg)
{
	struct listener *l = arg;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		union sockaddr_any peer, local;
		int fd = net_accept(l->fd, &peer);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
				errno == ENOMEM) {
				listener_shed(l, errno);
				return;
			}
			if (errno != EAGAIN && errno != ECONNABORTED && errno != EPERM)
				log_warn("accept");
			return;
		}
		/* A listener on one address knows the local address; only a
		 * wildcard one must ask (one syscall less per connection). */
		if (!l->wildcard || net_local_addr(fd, &local) < 0)
			local = l->addr;
		if (!l->nodelay_inherited)
			(void)net_set_nodelay(fd);
		conn_accept(l->env, fd, &peer, &local, l->proxy_protocol);
	}
}

static void
listener_on_resume(struct loop *loop, void *arg)
{
	struct listener *l = arg;

	if (loop_watch(loop, &l->w, LOOP_READ) < 0)
		timer_start(loop, &l->pause_timer, PAUSE_MS);
}

void
listener_set_reuseport(bool on)
{
	listener_reuseport = on;
}

/* A listener for an already listening fd: returns NULL with errno (the fd
 * is left open). */
static struct listener *
listener_new(struct conn_env *env, int fd, const union sockaddr_any *addr, bool proxy_protocol)
{
	struct listener *l = calloc(1, sizeof(*l));
	int saved;

	if (!l)
		return NULL;
	reserve_open();
	l->env = env;
	l->fd = fd;
	l->addr = *addr;
	l->proxy_protocol = proxy_protocol;
	l->wildcard = addr_is_unspecified(addr);
	/* Linux clones accepted sockets from the listener, TCP_NODELAY
	 * included: one setsockopt here instead of one per connection. */
	l->nodelay_inherited = net_set_nodelay(fd) == 0;
	watcher_init(&l->w, fd, listener_on_accept, l);
	timer_init(&l->pause_timer, listener_on_resume, l);
	if (loop_watch(env->loop, &l->w, LOOP_READ) < 0) {
		saved = errno;
		free(l);
		errno = saved;
		return NULL;
	}
	return l;
}

struct listener *
listener_open(struct conn_env *env, const union sockaddr_any *addr, bool proxy_protocol,
	int backlog, const struct egress *e)
{
	struct listener *l;
	int fd, saved;

	fd = listener_reuseport ? net_listen_tcp_reuseport(addr, backlog)
				: net_listen_tcp(addr, backlog);
	if (fd < 0)
		return NULL;
	if (e && net_apply_tcp_egress(fd, e) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return NULL;
	}
	if (!(l = listener_new(env, fd, addr, proxy_protocol))) {
		saved = errno;
		close(fd);
		errno = saved;
	}
	return l;
}

struct listener *
listener_adopt(struct conn_env *env, int fd, const struct egress *e)
{
	union sockaddr_any addr;

	if (net_local_addr(fd, &addr) < 0 || (e && net_apply_tcp_egress(fd, e) < 0))
		return NULL;
	return listener_new(env, fd, &addr, false);
}

void
listener_configure(struct listener *l, int backlog, const struct egress *e)
{
	char a[ADDR_STRLEN];

	if (backlog > 0 && net_relisten(l->fd, backlog) < 0)
		log_warn("listen %s: backlog %d", addr_format(&l->addr, a, sizeof(a)), backlog);
	if (e && net_apply_tcp_egress(l->fd, e) < 0)
		log_warn("listen %s: keepalive, user timeout", addr_format(&l->addr, a, sizeof(a)));
}

void
listener_stop(struct listener *l)
{
	if (!l || l->stopped)
		return;
	l->stopped = true;
	timer_stop(l->env->loop, &l->pause_timer);
	loop_unwatch(l->env->loop, &l->w);
	close(l->fd);
	/* An event for this socket may still be pending in the current batch. */
	loop_release(l->env->loop, &l->rel, free, l);
}

const union sockaddr_any *
listener_addr(const struct listener *l)
{
	return &l->addr;
}

bool
listener_proxy_protocol(const struct listener *l)
{
	return l->proxy_protocol;
}
