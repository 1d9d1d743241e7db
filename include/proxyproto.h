/*
 * proxyproto: the pure parser of HAProxy's PROXY protocol header, version 1
 * (text) and version 2 (binary, TLVs skipped), sent by a load balancer in
 * front of the SOCKS greeting to carry the real client address. No I/O.
 */
#ifndef SOCKS5D_PROXYPROTO_H
#define SOCKS5D_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* v1 lines are at most 107 bytes; v2 headers 16 + a 16-bit length. */
#define PROXYPROTO_V1_MAX 107
#define PROXYPROTO_V2_MAX (16 + 65535)

enum proxyproto_status {
	PROXYPROTO_OK = 0,        /* *consumed bytes form the header */
	PROXYPROTO_NEED_MORE,     /* a valid prefix so far */
	PROXYPROTO_ERR_SIGNATURE, /* neither "PROXY " nor the v2 signature */
	PROXYPROTO_ERR_VERSION,   /* v2 version nibble is not 2 */
	PROXYPROTO_ERR_COMMAND,   /* v2 command neither LOCAL nor PROXY */
	PROXYPROTO_ERR_FAMILY,    /* unknown or unsupported family/protocol */
	PROXYPROTO_ERR_LENGTH,    /* v2 length too short for its family */
	PROXYPROTO_ERR_SYNTAX,    /* v1 line malformed (fields, spaces, CRLF) */
	PROXYPROTO_ERR_ADDRESS,   /* v1 address or port does not parse */
	PROXYPROTO_ERR_TOO_LONG,  /* v1 line longer than 107 bytes */
};

struct proxyproto_result {
	int version;            /* 1 or 2 */
	bool local;             /* v2 LOCAL or v1 UNKNOWN: keep the real peer */
	union sockaddr_any src; /* client address (when !local) */
	union sockaddr_any dst; /* address the client connected to (when !local) */
};

/* Parses a header at p[0..len). Only TCP over IPv4/IPv6 (and UNKNOWN/LOCAL)
 * are accepted; v2 UNIX and UDP families are PROXYPROTO_ERR_FAMILY. */
enum proxyproto_status proxyproto_parse(const uint8_t *p, size_t len, struct proxyproto_result *out,
	size_t *consumed);
/* A short English name for st, for logs; never NULL. */
const char *proxyproto_status_str(enum proxyproto_status st);

#endif
