/*
 * fuzz_limitset: the limit line and value parsers (issue 18) on arbitrary
 * text. Each line is split at spaces; "rate", "amount", "tz" and "period"
 * lines parse one value, "rule UP DOWN" a rule clause, anything else the
 * words of a `limit` line. What parses is printed back and parsed again,
 * which must give the same text (the round trip `socks5d -T` relies on):
 * a mismatch aborts, so the fuzzer reports it as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limitset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                              \
	do {                                                                                  \
		if (!(x)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                              \
		}                                                                             \
	} while (0)

/* One value word of kind, parsed, printed and parsed again. */
static void
fuzz_value(const char *kind, const char *word)
{
	char err[256], out[LIMITSET_VALUE_STRLEN];
	uint64_t v, back;
	int m, mb;

	if (strcmp(kind, "rate") == 0 && limitset_parse_rate(word, &v, err, sizeof(err)) == 0) {
		limitset_format_rate(v, out, sizeof(out));
		CHECK(limitset_parse_rate(out, &back, err, sizeof(err)) == 0 && back == v);
	} else if (strcmp(kind, "amount") == 0 &&
		limitset_parse_amount(word, &v, err, sizeof(err)) == 0) {
		limitset_format_amount(v, out, sizeof(out));
		CHECK(limitset_parse_amount(out, &back, err, sizeof(err)) == 0 && back == v);
	} else if (strcmp(kind, "tz") == 0 && limitset_parse_tz(word, &m, err, sizeof(err)) == 0) {
		limitset_format_tz(m, out, sizeof(out));
		CHECK(limitset_parse_tz(out, &mb, err, sizeof(err)) == 0 && mb == m);
	}
}

/* Dumps l's lines, as limit words again, into a second set: same dump. */
static void
fuzz_round_trip(const struct limitset *l)
{
	char *d1 = NULL, *d2 = NULL, *line, *save = NULL, err[256];
	size_t n1 = 0, n2 = 0;
	struct limitset *l2 = limitset_new();
	FILE *f;

	if (!l2 || !(f = open_memstream(&d1, &n1)))
		abort();
	limitset_dump(l, f);
	fclose(f);
	for (line = strtok_r(d1, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *argv[16], *w, *ws = NULL;
		int n = 0;
		if (strncmp(line, "limit ", 6) != 0 || strchr(line, '"'))
			continue;
		for (w = strtok_r(line + 6, " ", &ws); w && n < 15; w = strtok_r(NULL, " ", &ws))
			argv[n++] = w;
		argv[n] = NULL;
		CHECK(limitset_add_line(l2, argv, 1, err, sizeof(err)) == 0);
	}
	free(d1);
	d1 = NULL;
	if (!(f = open_memstream(&d1, &n1)))
		abort();
	limitset_dump(l, f);
	fclose(f);
	if (!(f = open_memstream(&d2, &n2)))
		abort();
	limitset_dump(l2, f);
	fclose(f);
	/* Quoted names are skipped above: compare only without them. */
	if (!strchr(d1, '"'))
		CHECK(strcmp(d1, d2) == 0);
	free(d1);
	free(d2);
	limitset_free(l2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), *line, *save = NULL, err[256];
	struct limitset *l = limitset_new();

	if (!text || !l) {
		free(text);
		limitset_free(l);
		return 0;
	}
	memcpy(text, data, size);
	text[size] = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *argv[16], *w, *ws = NULL;
		int n = 0;
		for (w = strtok_r(line, " ", &ws); w && n < 15; w = strtok_r(NULL, " ", &ws))
			argv[n++] = w;
		argv[n] = NULL;
		if (n == 2 &&
			(strcmp(argv[0], "rate") == 0 || strcmp(argv[0], "amount") == 0 ||
				strcmp(argv[0], "tz") == 0))
			fuzz_value(argv[0], argv[1]);
		else if (n == 3 && strcmp(argv[0], "rule") == 0)
			(void)limitset_add_rule_rate(l, 1, argv[1], argv[2], "k", err, sizeof(err));
		else if (n > 0)
			(void)limitset_add_line(l, argv, 1, err, sizeof(err));
	}
	fuzz_round_trip(l);
	limitset_free(l);
	free(text);
	return 0;
}
