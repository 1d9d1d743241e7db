/*
 * pct: percent-encoding (RFC 3986 §2.1 style, over every byte that is not
 * printable ASCII, and the space and '%') of words in line-based text.
 */
#include "pct.h"

static const char hexdigits[] = "0123456789ABCDEF";

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

char *
pct_encode(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t w = 0;

	if (cap == 0)
		return out;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c > 0x20 && c < 0x7f && c != '%') {
			if (w + 1 >= cap)
				break;
			out[w++] = (char)c;
			continue;
		}
		if (w + 3 >= cap)
			break;
		out[w++] = '%';
		out[w++] = hexdigits[c >> 4];
		out[w++] = hexdigits[c & 0xf];
	}
	out[w] = '\0';
	return out;
}

long
pct_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
	size_t w = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		int hi, lo;

		if (c <= 0x20 || c >= 0x7f || w == cap)
			return -1;
		if (c != '%') {
			out[w++] = c;
			continue;
		}
		if (i + 2 >= len || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
			return -1;
		out[w++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	return (long)w;
}
