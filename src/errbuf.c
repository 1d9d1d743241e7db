/*
 * errbuf: a parser's error message into the caller's buffer (pure).
 */
#include "errbuf.h"

#include <stdarg.h>
#include <stdio.h>

void
errbuf_printf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
