/*
 * fuzz_control: the control socket's request parser (issue 18) on arbitrary
 * bytes. A request that parses must have been NEED_MORE at every shorter
 * prefix, and written again by control_format_request it must parse to the
 * same request; a refused one stays refused with more bytes behind it. A
 * mismatch aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                              \
	do {                                                                                  \
		if (!(x)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                              \
		}                                                                             \
	} while (0)

static void
check_round_trip(const struct control_request *r)
{
	struct control_request back;
	char line[CONTROL_REQUEST_MAX * 2];
	size_t used;
	int n = control_format_request(r, line, sizeof(line));

	CHECK(n > 0);
	CHECK(control_parse_request((const uint8_t *)line, (size_t)n, &back, &used) == CONTROL_OK);
	CHECK((size_t)n == used);
	CHECK(back.cmd == r->cmd && back.json == r->json && back.client == r->client);
	CHECK(back.id == r->id && back.name_len == r->name_len);
	CHECK(memcmp(back.name, r->name, r->name_len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct control_request r, p;
	size_t used = 0, pu;
	enum control_status st = control_parse_request(data, size, &r, &used);

	if (st == CONTROL_OK) {
		CHECK(used > 0 && used <= size && data[used - 1] == '\n');
		for (size_t k = 0; k < used; k++)
			CHECK(control_parse_request(data, k, &p, &pu) == CONTROL_NEED_MORE);
		check_round_trip(&r);
	} else if (st != CONTROL_NEED_MORE) {
		/* An error does not go away with more bytes. */
		uint8_t *more = malloc(size + 1);
		if (!more)
			return 0;
		memcpy(more, data, size);
		more[size] = '\n';
		CHECK(control_parse_request(more, size + 1, &p, &pu) == st);
		free(more);
	}
	return 0;
}
