/*
 * dns: the pure DNS message codec (RFC 1035). Builds one-question A/AAAA
 * queries and parses the matching response: header and question checks,
 * bounded name decompression, CNAME chains, addresses with their TTL and the
 * negative-caching TTL from the SOA (RFC 2308). No I/O, no malloc, no
 * globals, no logging: the resolver owns sockets, retries and the cache.
 * Answers are handed over as addr's union sockaddr_any, the one address
 * type every module shares (a value; nothing here touches a socket).
 */
#ifndef SOCKS5D_DNS_H
#define SOCKS5D_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define DNS_HEADER_LEN 12    /* RFC 1035 §4.1.1 */
#define DNS_NAME_MAX 255     /* wire form, RFC 1035 §2.3.4 */
#define DNS_LABEL_MAX 63     /* RFC 1035 §2.3.4 */
#define DNS_HOSTNAME_MAX 253 /* text form without the final dot */
#define DNS_UDP_MAX 512      /* RFC 1035 §4.2.1, we send no EDNS */
/* Header, the name in wire form, QTYPE and QCLASS. */
#define DNS_QUERY_MAX (DNS_HEADER_LEN + DNS_NAME_MAX + 4)
#define DNS_MAX_ADDRS 16  /* addresses kept from one response */
#define DNS_MAX_CNAMES 16 /* CNAME links followed in one response */
#define DNS_MAX_JUMPS 32  /* compression pointers followed in one name */

/* RFC 1035 §3.2.2, RFC 3596 §2.1 */
#define DNS_TYPE_A 1
#define DNS_TYPE_NS 2
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_SOA 6
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN 1

/* RFC 1035 §4.1.1 */
#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_FORMERR 1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_NOTIMP 4
#define DNS_RCODE_REFUSED 5

enum dns_status {
	DNS_OK = 0,
	/* Building a query (and checking a name). */
	DNS_ERR_NAME_EMPTY,     /* "" or "." */
	DNS_ERR_NAME_TOO_LONG,  /* text > 253, or wire form > 255 */
	DNS_ERR_LABEL_TOO_LONG, /* label > 63 (or a reserved 01/10 length byte) */
	DNS_ERR_LABEL_EMPTY,    /* "a..b", ".a" */
	DNS_ERR_NAME_CHAR,      /* not a letter, digit, '-' or '_' */
	DNS_ERR_QTYPE,          /* query type other than A or AAAA */
	DNS_ERR_NO_SPACE,       /* output buffer too small */
	/* Parsing a response: is it the answer to our question? */
	DNS_ERR_SHORT_HEADER,       /* fewer than 12 bytes */
	DNS_ERR_NOT_RESPONSE,       /* QR = 0 */
	DNS_ERR_ID,                 /* not the id we sent */
	DNS_ERR_OPCODE,             /* OPCODE is not QUERY */
	DNS_ERR_QDCOUNT,            /* QDCOUNT is not 1 */
	DNS_ERR_QUESTION_TRUNCATED, /* question name or QTYPE/QCLASS past the end */
	DNS_ERR_QUESTION_MISMATCH,  /* question name differs from ours */
	DNS_ERR_QTYPE_MISMATCH,     /* QTYPE or QCLASS differs from ours */
	/* Parsing a response: names and records. */
	DNS_ERR_BAD_POINTER,     /* compression pointer past the end or into the header */
	DNS_ERR_POINTER_LOOP,    /* more than DNS_MAX_JUMPS pointers in one name */
	DNS_ERR_RR_TRUNCATED,    /* a record (name or fixed part) past the end: counts lie */
	DNS_ERR_RDATA_TRUNCATED, /* RDLENGTH runs past the end */
	DNS_ERR_ADDR_LENGTH,     /* A with RDLENGTH != 4, AAAA with != 16 */
	DNS_ERR_BAD_CNAME,       /* CNAME RDATA is not exactly one name */
	DNS_ERR_BAD_SOA,         /* SOA RDATA is not two names and 20 bytes */
	DNS_ERR_CNAME_LOOP,      /* a CNAME chain returns to a name already seen */
	DNS_ERR_CNAME_CHAIN,     /* more than DNS_MAX_CNAMES links */
};

/* What a valid response says, summarised for the resolver. */
enum dns_answer {
	DNS_ANS_ADDRS = 0, /* NOERROR with at least one address of the asked type */
	DNS_ANS_NODATA,    /* NOERROR, the name exists without that type */
	DNS_ANS_NXDOMAIN,  /* RCODE 3: the (final) name does not exist */
	DNS_ANS_SERVFAIL,  /* RCODE 2: try another server */
	DNS_ANS_REFUSED,   /* any other RCODE (FORMERR, NOTIMP, REFUSED...) */
	DNS_ANS_TRUNCATED, /* TC = 1: retry over TCP; nothing else filled in */
};

struct dns_response {
	enum dns_answer answer;
	uint8_t rcode;                           /* RCODE as received */
	size_t naddrs;                           /* addresses kept (at most DNS_MAX_ADDRS) */
	union sockaddr_any addrs[DNS_MAX_ADDRS]; /* AF_INET for A, AF_INET6 for AAAA; port 0 */
	uint32_t ttl;     /* min TTL of the addresses and CNAMEs used; valid when naddrs > 0 */
	bool has_soa;     /* an SOA was in the authority section */
	uint32_t neg_ttl; /* RFC 2308 §5: min(SOA TTL, SOA MINIMUM); valid when has_soa */
	unsigned cnames;  /* CNAME links followed */
};

/* Human-readable name of a status ("bad compression pointer"). */
const char *dns_status_str(enum dns_status st);

/*
 * Checks that name is a hostname we can ask for: dot-separated labels of
 * letters, digits, '-' and '_', each 1..63 bytes, 253 bytes in all; one final
 * dot is allowed (and not counted). Returns DNS_OK or the specific error.
 */
enum dns_status dns_check_name(const char *name) __attribute__((warn_unused_result));

/*
 * Writes a standard query (RD set, one question, class IN) for name and qtype
 * (DNS_TYPE_A or DNS_TYPE_AAAA) with the given id into out[0..cap). Returns
 * DNS_OK with *len set, or an error from dns_check_name, DNS_ERR_QTYPE or
 * DNS_ERR_NO_SPACE (cap >= DNS_QUERY_MAX always suffices).
 */
enum dns_status dns_build_query(uint8_t *out, size_t cap, size_t *len, uint16_t id,
	const char *name, uint16_t qtype) __attribute__((warn_unused_result));

/*
 * Parses msg[0..len) as the response to the query (id, name, qtype). Returns
 * DNS_OK with *out filled, or a specific error; on error *out is unspecified.
 * DNS_OK does not mean the name resolved: read out->answer. With TC set only
 * the header and question are checked (the rest may be cut). For NOERROR and
 * NXDOMAIN the answer and authority sections are walked in full; the
 * additional section is never read.
 */
enum dns_status dns_parse_response(const uint8_t *msg, size_t len, uint16_t id, const char *name,
	uint16_t qtype, struct dns_response *out) __attribute__((warn_unused_result));

#endif
