/*
 * fuzz_egress: the outbound clauses (issue 19) on arbitrary words. The
 * input's first byte picks the context (global directive, rule, user
 * line), the rest is split on blanks into words, parsed clause by clause
 * until one is refused, then printed; the printout must parse again, whole,
 * to equal settings and print the same (the round trip `socks5d -T` relies
 * on), and every source the settings have must be drawn inside its prefix.
 * A mismatch aborts, so the fuzzer reports it as a crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits s in place on blanks into argv (room for strlen(s) / 2 + 2). */
static int
fuzz_split(char *s, char **argv)
{
	int n = 0;

	for (char *w = strtok(s, " \t\r\n"); w != NULL; w = strtok(NULL, " \t\r\n"))
		argv[n++] = w;
	argv[n] = NULL;
	return n;
}

/* Parses argv's clauses into e; returns whether all of them parsed. */
static bool
fuzz_parse(struct egress *e, enum egress_context ctx, char **argv, int n)
{
	char err[256];

	egress_init(e);
	for (int i = 0; i < n;) {
		int used = egress_parse_clause(e, ctx, argv + i, err, sizeof(err));

		if (used <= 0)
			return false;
		if (used > n - i)
			abort(); /* took words it was not given */
		i += used;
	}
	return true;
}

static char *
fuzz_dump(const struct egress *e)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	egress_dump(e, f, " ", "");
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* Every source e has lies in its prefix. */
static void
fuzz_check_sources(const struct egress *e)
{
	static const uint8_t key[SIPHASH_KEY_LEN] = "fuzz-key-0123456";
	uint8_t rnd[EGRESS_RANDOM_LEN];
	static const int families[2] = { AF_INET, AF_INET6 };

	memset(rnd, 0xa5, sizeof(rnd));
	for (int f = 0; f < 2; f++) {
		const struct egress_source *s = &e->src[f];
		union sockaddr_any a;
		const uint8_t *got, *net;
		unsigned full;

		if (!egress_source(e, families[f], key, "user", rnd, &a)) {
			if (s->mode != EGRESS_SRC_UNSET)
				abort();
			continue;
		}
		if (a.sa.sa_family != families[f])
			abort();
		full = f ? 128 : 32;
		got = f ? a.sin6.sin6_addr.s6_addr : (const uint8_t *)&a.sin.sin_addr;
		net = f ? s->addr.sin6.sin6_addr.s6_addr : (const uint8_t *)&s->addr.sin.sin_addr;
		for (unsigned bit = 0; bit < s->prefix && bit < full; bit++) {
			unsigned m = 0x80u >> (bit % 8);
			if ((got[bit / 8] & m) != (net[bit / 8] & m))
				abort();
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum egress_context ctx;
	char *text, *first = NULL, *second = NULL, **argv = NULL;
	struct egress a, b;
	int n;

	if (size == 0)
		return 0;
	ctx = (enum egress_context)(data[0] % 3);
	text = malloc(size);
	if (text == NULL)
		return 0;
	for (size_t i = 1; i < size; i++)
		text[i - 1] = data[i] == '\0' ? ' ' : (char)data[i];
	text[size - 1] = '\0';
	argv = malloc((size / 2 + 2) * sizeof(*argv));
	if (argv == NULL)
		goto out;
	n = fuzz_split(text, argv);
	if (!fuzz_parse(&a, ctx, argv, n))
		goto out;
	fuzz_check_sources(&a);
	first = fuzz_dump(&a);
	if (first == NULL)
		goto out;
	free(text);
	free(argv);
	text = strdup(first);
	argv = malloc((strlen(first) / 2 + 2) * sizeof(*argv));
	if (text == NULL || argv == NULL)
		goto out;
	n = fuzz_split(text, argv);
	/* What a context accepted prints back as clauses that context takes. */
	if (!fuzz_parse(&b, ctx, argv, n) || !egress_equal(&a, &b))
		abort();
	second = fuzz_dump(&b);
	if (second == NULL)
		goto out;
	if (strcmp(first, second) != 0)
		abort();
out:
	free(first);
	free(second);
	free(argv);
	free(text);
	return 0;
}
