/*
 * fuzz_rule: acl rule parsing on arbitrary words. Each input line is split
 * the way the config parser splits (blanks, double quotes, '#' comments);
 * a line starting with "client" adds a client rule, "rule" or anything else
 * a request rule. The rules that parse are checked against a fixed set of
 * requests and dumped; the dump is parsed again and must give the same
 * dump and the same answers (the round trip `socks5d -T` relies on).
 * An allow rule's outbound clauses (issue 19) must come back equal too.
 * A mismatch aborts, so the fuzzer reports it as a crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "addr.h"
#include "egress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
fuzz_is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Splits line in place into argv (room for strlen(line) / 2 + 2 words).
 * Returns the word count, or -1 for an unterminated quote. */
static int
fuzz_split(char *s, char **argv)
{
	size_t r = 0, w = 0;
	int n = 0;

	for (;;) {
		bool quoted = false;
		char end;

		while (fuzz_is_space(s[r]))
			r++;
		if (s[r] == '\0' || s[r] == '#')
			break;
		argv[n++] = s + w;
		while (s[r] != '\0' && (quoted || (!fuzz_is_space(s[r]) && s[r] != '#'))) {
			if (s[r] == '"')
				quoted = !quoted;
			else
				s[w++] = s[r];
			r++;
		}
		if (quoted)
			return -1;
		end = s[r];
		s[w++] = '\0';
		if (end == '\0' || end == '#')
			break;
		r++;
	}
	argv[n] = NULL;
	return n;
}

/* Adds every line of text (modified in place) to a. */
static void
fuzz_load(struct acl *a, char *text, char **argv)
{
	char err[256], *line, *save = NULL;
	int n, lineno = 0;

	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		n = fuzz_split(line, argv);
		if (n <= 0)
			continue;
		if (strcmp(argv[0], "client") == 0)
			(void)acl_add_client_rule(a, argv + 1, lineno, err, sizeof(err));
		else if (strcmp(argv[0], "rule") == 0)
			(void)acl_add_request_rule(a, argv + 1, lineno, err, sizeof(err));
		else
			(void)acl_add_request_rule(a, argv, lineno, err, sizeof(err));
	}
}

static char *
fuzz_dump(const struct acl *a)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	acl_dump(a, f);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

#define NELEM(x) (sizeof(x) / sizeof((x)[0]))

/* Runs a fixed matrix of requests through a and b; aborts on any
 * difference in verdict or to_addr (lines differ: the dump reorders). */
static void
fuzz_compare(const struct acl *a, const struct acl *b)
{
	static const char *const clients[] = { "10.0.0.1", "::ffff:192.168.1.1", "2001:db8::1" };
	static const char *const users[] = { NULL, "alice", "alice smith" };
	static const unsigned cmds[] = { ACL_CMD_CONNECT, ACL_CMD_BIND, ACL_CMD_UDP };
	static const char *const names[] = { NULL, "www.example.com", "EXAMPLE.com." };
	static const char *const dsts[] = { NULL, "10.1.2.3", "2001:db8::5", "::ffff:8.8.8.8" };
	static const uint16_t ports[] = { 1, 80, 65535 };
	union sockaddr_any c, d;
	struct acl_request r;
	struct acl_result ra, rb;
	size_t i, x;

	for (i = 0; i < NELEM(clients); i++) {
		if (addr_parse(clients[i], 0, &c) != 0)
			abort();
		ra = acl_check_client(a, &c);
		rb = acl_check_client(b, &c);
		if (ra.verdict != rb.verdict)
			abort();
		/* x walks every combination of the other fields. */
		for (x = 0;
			x < NELEM(users) * NELEM(cmds) * NELEM(names) * NELEM(dsts) * NELEM(ports);
			x++) {
			size_t rest = x;

			memset(&r, 0, sizeof(r));
			r.client = &c;
			r.user = users[rest % NELEM(users)];
			rest /= NELEM(users);
			r.cmd = cmds[rest % NELEM(cmds)];
			rest /= NELEM(cmds);
			r.dst_name = names[rest % NELEM(names)];
			rest /= NELEM(names);
			if (dsts[rest % NELEM(dsts)] != NULL) {
				if (addr_parse(dsts[rest % NELEM(dsts)], 0, &d) != 0)
					abort();
				r.dst_addr = &d;
			}
			rest /= NELEM(dsts);
			r.port = ports[rest % NELEM(ports)];
			ra = acl_check_request(a, &r);
			rb = acl_check_request(b, &r);
			if (ra.verdict != rb.verdict || ra.to_addr != rb.to_addr ||
				(ra.line == 0) != (rb.line == 0))
				abort();
			/* The deciding rule's outbound clauses print back the same. */
			if ((ra.egress == NULL) != (rb.egress == NULL) ||
				(ra.egress && !egress_equal(ra.egress, rb.egress)))
				abort();
			if (ra.egress && ra.verdict != ACL_ALLOW)
				abort();
			/* Only a missing address leaves a rule undecided. */
			if (ra.verdict == ACL_UNDECIDED && r.dst_addr != NULL)
				abort();
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct acl *a = acl_new(), *b = acl_new();
	char *text = malloc(size + 1), *first = NULL, *second = NULL;
	char **argv = NULL;
	size_t i;

	if (a == NULL || b == NULL || text == NULL)
		goto out;
	for (i = 0; i < size; i++)
		text[i] = data[i] == '\0' ? ' ' : (char)data[i];
	text[size] = '\0';
	/* A line of n characters has at most n / 2 + 1 words. */
	argv = malloc((size / 2 + 2) * sizeof(*argv));
	if (argv == NULL)
		goto out;
	fuzz_load(a, text, argv);
	first = fuzz_dump(a);
	if (first == NULL)
		goto out;
	free(argv);
	argv = malloc((strlen(first) / 2 + 2) * sizeof(*argv));
	free(text);
	text = strdup(first);
	if (argv == NULL || text == NULL)
		goto out;
	/* Every dumped line must parse again, whole. */
	{
		size_t nc = acl_client_rule_count(a), nr = acl_request_rule_count(a);

		fuzz_load(b, text, argv);
		if (acl_client_rule_count(b) != nc || acl_request_rule_count(b) != nr)
			abort();
	}
	second = fuzz_dump(b);
	if (second == NULL)
		goto out;
	if (strcmp(first, second) != 0)
		abort();
	fuzz_compare(a, b);
out:
	free(first);
	free(second);
	free(argv);
	free(text);
	acl_free(a);
	acl_free(b);
	return 0;
}
