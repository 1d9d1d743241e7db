/*
 * errbuf: a parser's error message into the caller's buffer (pure).
 */
#ifndef SOCKS5D_ERRBUF_H
#define SOCKS5D_ERRBUF_H

#include <stddef.h>

/* printf into err[0..errlen); err NULL or errlen 0: the caller wants no
 * message. Cut to fit, always terminated. */
void errbuf_printf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
