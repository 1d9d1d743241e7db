/*
 * passwd: `socks5d passwd`, the users-file tool. A short-lived command, not
 * part of the daemon's loop: it may block on the terminal and the disk.
 *
 * The file format is auth's: "name:secret" lines, blanks around a line
 * ignored, '#' comments. Only the named user's line changes; every other
 * line is copied byte for byte. Writing is atomic: a temporary file in the
 * same directory with the old file's owner and mode, fsync, rename, fsync
 * of the directory. On any failure the temporary file is removed and the
 * old file stays as it was; readers (the daemon's reload, its inotify
 * watch) see either the old file or the new one, never a part.
 */
#include "passwd.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

/* RFC 1929: ULEN and PLEN are one byte each. */
#define PASSWD_FIELD_MAX 255
/* A users file is far smaller; this only stops a mistaken path. */
#define PASSWD_FILE_MAX ((size_t)16 << 20)

struct passwd_opts {
	const char *file;   /* NULL: print the line */
	const char *prefix; /* crypt_gensalt prefix */
	const char *name;
	bool delete;
};

static const struct {
	const char *name, *prefix;
} passwd_methods[] = {
	{ "yescrypt", "$y$" },
	{ "sha512", "$6$" },
};

/* A file's bytes. */
struct passwd_text {
	char *p;
	size_t len;
};

/* The terminal's settings while echo is off, for the signal handler. */
static struct termios saved_tio;
static volatile sig_atomic_t tio_saved;

static void perr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
perr(const char *fmt, ...)
{
	va_list ap;

	fputs("socks5d passwd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: socks5d passwd [-m yescrypt|sha512] [-f users-file] name\n"
		"       socks5d passwd -D -f users-file name\n"
		"  -f file  add or replace the user's line in file (else print it)\n"
		"  -m       hash method (default yescrypt)\n"
		"  -D       delete the user from file\n");
}

static bool
is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Why name cannot be a users-file name, or NULL when it can. */
static const char *
name_problem(const char *name)
{
	size_t n = strlen(name);

	if (n == 0)
		return "the name is empty";
	if (n > PASSWD_FIELD_MAX)
		return "the name is longer than 255 bytes";
	if (strpbrk(name, ":\n"))
		return "a name cannot hold ':' or a line break";
	if (name[0] == '#' || is_blank(name[0]) || is_blank(name[n - 1]))
		return "a name cannot start with '#' or start or end with a blank";
	return NULL;
}

/* --- the password ---------------------------------------------------------- */

static void
on_signal_restore_tty(int signo)
{
	if (tio_saved)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
	(void)signal(signo, SIG_DFL);
	(void)raise(signo);
}

static int
tty_echo(bool on)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP };
	struct termios t;

	if (on) {
		tio_saved = 0;
		return tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
	}
	if (tcgetattr(STDIN_FILENO, &saved_tio) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		(void)signal(sigs[i], on_signal_restore_tty);
	t = saved_tio;
	t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	tio_saved = 1;
	return tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
}

/* One line from standard input without its '\n', a byte at a time so that
 * nothing after it is consumed. Returns 0, or -1 after a message. */
static int
read_line(const char *prompt, char *buf, size_t cap)
{
	size_t n = 0;

	if (prompt)
		fputs(prompt, stderr);
	for (;;) {
		char ch;
		ssize_t r = read(STDIN_FILENO, &ch, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			perr("reading the password: %s", strerror(errno));
			return -1;
		}
		if (r == 0 || ch == '\n')
			break;
		if (ch == '\0' || n + 1 >= cap) {
			perr("the password must be 1 to %d bytes without a NUL byte",
				PASSWD_FIELD_MAX);
			return -1;
		}
		buf[n++] = ch;
	}
	buf[n] = '\0';
	if (prompt)
		fputc('\n', stderr); /* the Enter key was not echoed */
	if (n == 0) {
		perr("empty password");
		return -1;
	}
	return 0;
}

/* The password into pass (PASSWD_FIELD_MAX + 1 bytes): twice from a
 * terminal, without echo; once from a pipe or file. Returns 0 or -1. */
static int
read_password(char *pass)
{
	char again[PASSWD_FIELD_MAX + 1];
	int ret = -1;

	if (!isatty(STDIN_FILENO))
		return read_line(NULL, pass, PASSWD_FIELD_MAX + 1);
	if (tty_echo(false) < 0) {
		perr("cannot turn the terminal's echo off: %s", strerror(errno));
		return -1;
	}
	if (read_line("Password: ", pass, PASSWD_FIELD_MAX + 1) == 0 &&
		read_line("Retype password: ", again, sizeof(again)) == 0) {
		if (strcmp(pass, again) == 0)
			ret = 0;
		else
			perr("the passwords do not match");
	}
	(void)tty_echo(true);
	explicit_bzero(again, sizeof(again));
	return ret;
}

/* "name:hash" (malloc'd), or NULL after a message. */
static char *
hash_line(const char *name, const char *prefix, const char *pass)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char *setting = crypt_gensalt_ra(prefix, 0, NULL, 0);
	char *line = NULL;
	const char *h;

	if (!setting || !cd) {
		perr("cannot make a %s salt: %s", prefix, strerror(errno));
		goto out;
	}
	h = crypt_r(pass, setting, cd);
	if (!h || h[0] == '*') {
		perr("crypt failed for method %s", prefix);
		goto out;
	}
	if (asprintf(&line, "%s:%s", name, h) < 0) {
		perr("out of memory");
		line = NULL;
	}
out:
	if (cd)
		explicit_bzero(cd, sizeof(*cd));
	free(cd);
	free(setting);
	return line;
}

/* --- the file ---------------------------------------------------------------- */

/* The whole file into t and its status into st; a file that does not
 * exist is empty with *exists false. Returns 0 or -1 after a message. */
static int
read_file(const char *path, struct passwd_text *t, struct stat *st, bool *exists)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	size_t cap = 0;

	t->p = NULL;
	t->len = 0;
	*exists = fd >= 0;
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0 || fstat(fd, st) < 0)
		goto fail;
	if (!S_ISREG(st->st_mode) || (size_t)st->st_size > PASSWD_FILE_MAX) {
		perr("%s: not a regular file of at most 16 MiB", path);
		close(fd);
		return -1;
	}
	cap = (size_t)st->st_size + 1;
	t->p = malloc(cap);
	if (!t->p)
		goto fail;
	for (;;) {
		ssize_t r = read(fd, t->p + t->len, cap - t->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto fail;
		if (r == 0)
			break;
		t->len += (size_t)r;
		if (t->len == cap)
			break; /* more than its size said: it grew while read */
	}
	close(fd);
	if (t->len == cap) {
		perr("%s: changed while it was read; try again", path);
		return -1;
	}
	return 0;
fail:
	perr("%s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Whether the line [s, e) is name's "name:secret" line. */
static bool
is_users_line(const char *s, const char *e, const char *name)
{
	size_t n = strlen(name);
	const char *colon;

	while (s < e && is_blank(*s))
		s++;
	if (s == e || *s == '#' || *s == '\n')
		return false;
	colon = memchr(s, ':', (size_t)(e - s));
	return colon && (size_t)(colon - s) == n && memcmp(s, name, n) == 0;
}

/* old with name's line replaced by line, or added at the end, or removed
 * when line is NULL, into out. *found: name had a line. 0 or -1. */
static int
rewrite(const struct passwd_text *old, const char *name, const char *line, struct passwd_text *out,
	bool *found)
{
	const char *p = old->p, *end = old->p + old->len;
	size_t llen = line ? strlen(line) : 0;

	*found = false;
	out->len = 0;
	out->p = malloc(old->len + llen + 2);
	if (!out->p) {
		perr("out of memory");
		return -1;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl ? nl + 1 : end;

		if (is_users_line(p, next, name)) {
			/* The first of the user's lines becomes the new one;
			 * any later one (an error for the daemon) goes. */
			if (line && !*found) {
				memcpy(out->p + out->len, line, llen);
				out->len += llen;
				out->p[out->len++] = '\n';
			}
			*found = true;
		} else {
			memcpy(out->p + out->len, p, (size_t)(next - p));
			out->len += (size_t)(next - p);
		}
		p = next;
	}
	if (line && !*found) {
		if (out->len > 0 && out->p[out->len - 1] != '\n')
			out->p[out->len++] = '\n';
		memcpy(out->p + out->len, line, llen);
		out->len += llen;
		out->p[out->len++] = '\n';
	}
	return 0;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The directory part of path ("." without one), for fsync after rename. */
static void
sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];
	int fd;

	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) + 1 : 1, slash ? path : ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		perr("warning: %s: fsync of the directory: %s", dir, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* Replaces path with t: temporary file beside it, owner and mode of old
 * (NULL: a new file, mode 0644 less the umask), fsync, rename. On failure
 * the temporary file is removed and path is untouched. 0 or -1. */
static int
write_atomic(const char *path, const struct passwd_text *t, const struct stat *old)
{
	const char *slash = strrchr(path, '/');
	char tmp[PATH_MAX];
	int fd, n;
	mode_t um;

	if (slash)
		n = snprintf(tmp, sizeof(tmp), "%.*s.%s.XXXXXX", (int)(slash - path) + 1, path,
			slash + 1);
	else
		n = snprintf(tmp, sizeof(tmp), ".%s.XXXXXX", path);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		perr("%s: path too long", path);
		return -1;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		perr("%s: %s", tmp, strerror(errno));
		return -1;
	}
	um = umask(0);
	umask(um);
	if ((old && fchown(fd, old->st_uid, old->st_gid) < 0) ||
		fchmod(fd, old ? old->st_mode & 07777 : 0644 & ~um) < 0 ||
		write_all(fd, t->p, t->len) < 0 || fsync(fd) < 0) {
		perr("%s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		perr("%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	sync_dir(path);
	return 0;
}

/* Adds, replaces (line) or deletes (line NULL) name's line in file. */
static int
update_file(const char *file, const char *name, const char *line)
{
	struct passwd_text old = { 0 }, new = { 0 };
	char real[PATH_MAX];
	const char *path = file;
	struct stat st;
	bool exists, found;
	int ret = -1;

	/* A symlinked users file stays a symlink: write where it points. */
	if (realpath(file, real))
		path = real;
	if (read_file(path, &old, &st, &exists) < 0)
		goto out;
	if (!exists && !line) {
		perr("%s: %s", file, strerror(ENOENT));
		goto out;
	}
	if (rewrite(&old, name, line, &new, &found) < 0)
		goto out;
	if (!line && !found) {
		perr("%s: no user '%s'", file, name);
		goto out;
	}
	if (write_atomic(path, &new, exists ? &st : NULL) < 0)
		goto out;
	fprintf(stderr, "socks5d passwd: %s '%s' %s %s; reload socks5d to apply\n",
		!line           ? "deleted"
			: found ? "replaced"
				: "added",
		name, line ? "in" : "from", file);
	ret = 0;
out:
	free(old.p);
	free(new.p);
	return ret;
}

/* --- the command ----------------------------------------------------------- */

static int
parse_args(int argc, char **argv, struct passwd_opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	o->prefix = passwd_methods[0].prefix;
	optind = 1;
	while ((ch = getopt(argc, argv, "Df:m:h")) != -1) {
		size_t i, n = sizeof(passwd_methods) / sizeof(passwd_methods[0]);

		switch (ch) {
		case 'D':
			o->delete = true;
			break;
		case 'f':
			o->file = optarg;
			break;
		case 'm':
			for (i = 0; i < n && strcmp(optarg, passwd_methods[i].name) != 0; i++)
				;
			if (i == n) {
				perr("unknown method '%s' (yescrypt, sha512)", optarg);
				return 2;
			}
			o->prefix = passwd_methods[i].prefix;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1 || (o->delete &&!o->file)) {
		usage(stderr);
		return 2;
	}
	o->name = argv[optind];
	return -1;
}

int
passwd_main(int argc, char **argv)
{
	struct passwd_opts o;
	char pass[PASSWD_FIELD_MAX + 1];
	const char *why;
	char *line;
	int ret;

	ret = parse_args(argc, argv, &o);
	if (ret >= 0)
		return ret;
	if ((why = name_problem(o.name)) != NULL) {
		perr("%s", why);
		return 1;
	}
	if (o.delete)
		return update_file(o.file, o.name, NULL) < 0 ? 1 : 0;
	if (read_password(pass) < 0) {
		explicit_bzero(pass, sizeof(pass));
		return 1;
	}
	line = hash_line(o.name, o.prefix, pass);
	explicit_bzero(pass, sizeof(pass));
	if (!line)
		return 1;
	if (o.file)
		ret = update_file(o.file, o.name, line) < 0 ? 1 : 0;
	else
		ret = printf("%s\n", line) < 0 || fflush(stdout) != 0 ? 1 : 0;
	free(line);
	return ret;
}
