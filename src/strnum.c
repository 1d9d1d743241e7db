/*
 * strnum: strict decimal numbers from text. Every caller that reads a
 * number from a config file, a rule, a PROXY header, resolv.conf or the
 * environment goes through here, so "+1", " 1", "1 " and "0x1" are refused
 * the same way everywhere. What a caller says about a refusal (its message,
 * whether it is fatal) stays with the caller. Also the lookup of a name in
 * a table indexed by number, which every module's *_str function shares.
 */
#include "strnum.h"

#include <stdbool.h>
#include <string.h>

enum strnum_status
strnum_parse_u64_span(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	bool over = false;

	if (len == 0)
		return STRNUM_EMPTY;
	/* Every character is looked at even after an overflow, so trailing
	 * junk is reported as junk, not as a big number. */
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned char)s[i] - (unsigned)'0';

		if (d > 9)
			return STRNUM_NOT_DECIMAL;
		if (v > (UINT64_MAX - d) / 10)
			over = true;
		else
			v = v * 10 + d;
	}
	if (over || v < min || v > max)
		return STRNUM_RANGE;
	*out = v;
	return STRNUM_OK;
}

enum strnum_status
strnum_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	return strnum_parse_u64_span(s, strlen(s), min, max, out);
}

enum strnum_status
strnum_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	uint64_t v;
	enum strnum_status st = strnum_parse_u64(s, min, max, &v);

	if (st == STRNUM_OK)
		*out = (unsigned)v;
	return st;
}

const char *
strnum_name(const char *const *names, size_t n, size_t i, const char *dflt)
{
	return i < n && names[i] != NULL ? names[i] : dflt;
}

const char *
strnum_status_str(enum strnum_status st)
{
	switch (st) {
	case STRNUM_OK:
		return "ok";
	case STRNUM_EMPTY:
		return "empty";
	case STRNUM_NOT_DECIMAL:
		return "not a decimal number";
	case STRNUM_RANGE:
		return "out of range";
	}
	return "unknown status";
}
