/*
 * Fuzz target: the strict decimal parser on arbitrary bytes, as a
 * length-delimited span and (when the bytes hold no NUL) as a string.
 *
 * Invariants checked: empty input is EMPTY and only it; NOT_DECIMAL exactly
 * when some byte is not a digit; an OK value printed back is the input
 * without its leading zeros; the span and string forms agree; a narrower
 * range (1..65535) agrees with the full one; *out is untouched on refusal.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strnum.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                              \
	do {                                                                                  \
		if (!(x)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                              \
		}                                                                             \
	} while (0)

#define POISON UINT64_C(0xA5A5A5A5A5A5A5A5)

static void
check_ok_value(const char *s, size_t size, uint64_t v)
{
	char back[24];
	size_t zeros = 0;
	int n = snprintf(back, sizeof(back), "%llu", (unsigned long long)v);

	while (zeros + 1 < size && s[zeros] == '0')
		zeros++;
	CHECK(n > 0 && (size_t)n == size - zeros);
	CHECK(memcmp(back, s + zeros, (size_t)n) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	uint64_t full = POISON, port = POISON;
	enum strnum_status st, st_port;
	bool digits = true;

	for (size_t i = 0; i < size; i++)
		digits = digits && data[i] >= '0' && data[i] <= '9';
	st = strnum_parse_u64_span(s, size, 0, UINT64_MAX, &full);
	CHECK(st >= STRNUM_OK && st <= STRNUM_RANGE);
	CHECK((st == STRNUM_EMPTY) == (size == 0));
	CHECK((st == STRNUM_NOT_DECIMAL) == (size > 0 && !digits));
	if (st == STRNUM_OK)
		check_ok_value(s, size, full);
	else
		CHECK(full == POISON);

	st_port = strnum_parse_u64_span(s, size, 1, 65535, &port);
	if (st == STRNUM_OK && full >= 1 && full <= 65535)
		CHECK(st_port == STRNUM_OK && port == full);
	else if (st == STRNUM_OK || st == STRNUM_RANGE)
		CHECK(st_port == STRNUM_RANGE && port == POISON);
	else
		CHECK(st_port == st && port == POISON);

	if (memchr(data, '\0', size) == NULL) {
		char *copy = malloc(size + 1);
		uint64_t v = POISON;

		if (copy == NULL)
			return 0;
		memcpy(copy, data, size);
		copy[size] = '\0';
		CHECK(strnum_parse_u64(copy, 0, UINT64_MAX, &v) == st);
		CHECK(v == full);
		free(copy);
	}
	return 0;
}
