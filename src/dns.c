/*
 * dns: the pure DNS message codec (RFC 1035 §4). It turns a hostname into a
 * one-question query and checks that a response answers exactly that
 * question, walking names with bounded decompression and following CNAME
 * chains to the addresses. Every length and pointer is checked against the
 * message before use; each way a message can be wrong has its own status.
 * Sockets, retries, timeouts and caching belong to the resolver.
 */
#include "dns.h"

#include <string.h>

#include "strnum.h"

/* RFC 1035 §4.1.1 header flag bits (in the 16-bit flags word). */
#define DNS_FLAG_QR 0x8000u
#define DNS_FLAG_TC 0x0200u
#define DNS_FLAG_RD 0x0100u
#define DNS_OPCODE_SHIFT 11
#define DNS_OPCODE_MASK 0xFu
#define DNS_OPCODE_QUERY 0
#define DNS_RCODE_MASK 0xFu

/* RFC 1035 §4.1.4: the top two bits of a length byte. */
#define DNS_LABEL_KIND_MASK 0xC0u
#define DNS_LABEL_KIND_POINTER 0xC0u
#define DNS_LABEL_KIND_NORMAL 0x00u

#define DNS_RR_FIXED_LEN 10  /* TYPE, CLASS, TTL, RDLENGTH: RFC 1035 §4.1.3 */
#define DNS_SOA_FIXED_LEN 20 /* SERIAL..MINIMUM: RFC 1035 §3.3.13 */

/* A name in wire form, lowercased, without compression. */
struct dns_name {
	uint8_t b[DNS_NAME_MAX];
	size_t len;
};

/* One resource record's fixed fields (RFC 1035 §4.1.3). */
struct dns_rr {
	struct dns_name owner;
	uint16_t type;
	uint16_t class;
	uint32_t ttl;
	size_t rdata; /* offset of RDATA in the message */
	uint16_t rdlength;
};

static const char *const dns_status_names[] = {
	[DNS_OK] = "ok",
	[DNS_ERR_NAME_EMPTY] = "empty name",
	[DNS_ERR_NAME_TOO_LONG] = "name too long",
	[DNS_ERR_LABEL_TOO_LONG] = "label too long",
	[DNS_ERR_LABEL_EMPTY] = "empty label",
	[DNS_ERR_NAME_CHAR] = "invalid character in name",
	[DNS_ERR_QTYPE] = "unsupported query type",
	[DNS_ERR_NO_SPACE] = "output buffer too small",
	[DNS_ERR_SHORT_HEADER] = "message shorter than the header",
	[DNS_ERR_NOT_RESPONSE] = "QR bit not set",
	[DNS_ERR_ID] = "id mismatch",
	[DNS_ERR_OPCODE] = "opcode is not QUERY",
	[DNS_ERR_QDCOUNT] = "question count is not 1",
	[DNS_ERR_QUESTION_TRUNCATED] = "question truncated",
	[DNS_ERR_QUESTION_MISMATCH] = "question name mismatch",
	[DNS_ERR_QTYPE_MISMATCH] = "question type or class mismatch",
	[DNS_ERR_BAD_POINTER] = "bad compression pointer",
	[DNS_ERR_POINTER_LOOP] = "compression pointer loop",
	[DNS_ERR_RR_TRUNCATED] = "record truncated",
	[DNS_ERR_RDATA_TRUNCATED] = "rdata runs past the end",
	[DNS_ERR_ADDR_LENGTH] = "wrong address length",
	[DNS_ERR_BAD_CNAME] = "malformed CNAME",
	[DNS_ERR_BAD_SOA] = "malformed SOA",
	[DNS_ERR_CNAME_LOOP] = "CNAME loop",
	[DNS_ERR_CNAME_CHAIN] = "CNAME chain too long",
};

const char *
dns_status_str(enum dns_status st)
{
	return STRNUM_NAME(dns_status_names, st, "unknown");
}

static uint16_t
dns_get16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t
dns_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
dns_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* RFC 2181 §8: a TTL with the top bit set is to be treated as zero. */
static uint32_t
dns_ttl(uint32_t raw)
{
	return (raw & 0x80000000u) ? 0 : raw;
}

static uint8_t
dns_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

static bool
dns_name_char_ok(unsigned char c)
{
	/* Letters, digits and hyphen (RFC 1123 §2.1); underscore too, since
	 * real names (_dmarc, SRV-style hosts) carry it and resolvers pass it. */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '-' || c == '_';
}

enum dns_status
dns_check_name(const char *name)
{
	size_t len = strlen(name);
	size_t label = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0)
		return DNS_ERR_NAME_EMPTY;
	if (len > DNS_HOSTNAME_MAX)
		return DNS_ERR_NAME_TOO_LONG;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '.') {
			if (label == 0)
				return DNS_ERR_LABEL_EMPTY;
			label = 0;
			continue;
		}
		if (!dns_name_char_ok(c))
			return DNS_ERR_NAME_CHAR;
		if (++label > DNS_LABEL_MAX)
			return DNS_ERR_LABEL_TOO_LONG;
	}
	/* Only one final dot stands for the root: "a.." ends empty. */
	if (label == 0)
		return DNS_ERR_LABEL_EMPTY;
	return DNS_OK;
}

/*
 * Text name to wire form (RFC 1035 §3.1), optionally lowercased. The name
 * must already have passed dns_check_name, so it fits in DNS_NAME_MAX.
 */
static size_t
dns_name_to_wire(const char *name, uint8_t *out, bool lower)
{
	size_t len = strlen(name);
	size_t o = 0;
	size_t start = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && name[i] != '.')
			continue;
		out[o++] = (uint8_t)(i - start);
		for (size_t j = start; j < i; j++) {
			uint8_t c = (uint8_t)name[j];
			out[o++] = lower ? dns_lower(c) : c;
		}
		start = i + 1;
	}
	out[o++] = 0;
	return o;
}

enum dns_status
dns_build_query(uint8_t *out, size_t cap, size_t *len, uint16_t id, const char *name,
	uint16_t qtype)
{
	enum dns_status st;
	uint8_t wire[DNS_NAME_MAX];
	size_t wlen;
	size_t total;

	if ((st = dns_check_name(name)) != DNS_OK)
		return st;
	if (qtype != DNS_TYPE_A && qtype != DNS_TYPE_AAAA)
		return DNS_ERR_QTYPE;
	wlen = dns_name_to_wire(name, wire, false);
	total = DNS_HEADER_LEN + wlen + 4;
	if (cap < total)
		return DNS_ERR_NO_SPACE;

	/* RFC 1035 §4.1.1: ID, flags (standard query, recursion desired),
	 * QDCOUNT 1, ANCOUNT/NSCOUNT/ARCOUNT 0. */
	dns_put16(out, id);
	dns_put16(out + 2, DNS_FLAG_RD);
	dns_put16(out + 4, 1);
	dns_put16(out + 6, 0);
	dns_put16(out + 8, 0);
	dns_put16(out + 10, 0);
	/* RFC 1035 §4.1.2: QNAME, QTYPE, QCLASS. */
	memcpy(out + DNS_HEADER_LEN, wire, wlen);
	dns_put16(out + DNS_HEADER_LEN + wlen, qtype);
	dns_put16(out + DNS_HEADER_LEN + wlen + 2, DNS_CLASS_IN);
	*len = total;
	return DNS_OK;
}

/*
 * Reads the (possibly compressed) name at *off into out, lowercased.
 * RFC 1035 §4.1.4. The uncompressed part at *off must end before limit;
 * after a pointer, the name may be anywhere in msg[DNS_HEADER_LEN..len).
 * On success *off is just past the name as it appears at *off. A name
 * running off its bound returns DNS_ERR_RR_TRUNCATED; callers turn that into
 * their own section's error.
 */
static enum dns_status
dns_read_name(const uint8_t *msg, size_t len, size_t *off, size_t limit, struct dns_name *out)
{
	size_t pos = *off;
	size_t end = 0; /* where the name ends in the original stream */
	bool jumped = false;
	unsigned jumps = 0;

	out->len = 0;
	for (;;) {
		uint8_t b;

		if (pos >= limit)
			return DNS_ERR_RR_TRUNCATED;
		b = msg[pos];
		if ((b & DNS_LABEL_KIND_MASK) == DNS_LABEL_KIND_POINTER) {
			size_t ptr;

			if (pos + 1 >= limit)
				return DNS_ERR_RR_TRUNCATED;
			ptr = (size_t)(b & ~DNS_LABEL_KIND_MASK) << 8 | msg[pos + 1];
			/* Names never live in the header, and a pointer must
			 * land inside the message. */
			if (ptr < DNS_HEADER_LEN || ptr >= len)
				return DNS_ERR_BAD_POINTER;
			/* Pointers that only point at each other add no
			 * labels, so the length limit alone cannot stop them. */
			if (++jumps > DNS_MAX_JUMPS)
				return DNS_ERR_POINTER_LOOP;
			if (!jumped)
				end = pos + 2;
			jumped = true;
			pos = ptr;
			limit = len;
			continue;
		}
		if ((b & DNS_LABEL_KIND_MASK) != DNS_LABEL_KIND_NORMAL)
			/* 01 and 10 prefixes (RFC 6891 §5 extended labels,
			 * reserved): a length above 63 either way. */
			return DNS_ERR_LABEL_TOO_LONG;
		if (b == 0) {
			if (out->len + 1 > DNS_NAME_MAX)
				return DNS_ERR_NAME_TOO_LONG;
			out->b[out->len++] = 0;
			if (!jumped)
				end = pos + 1;
			break;
		}
		if (pos + 1 + b > limit)
			return DNS_ERR_RR_TRUNCATED;
		/* Keep room for the terminating zero. */
		if (out->len + 1 + b + 1 > DNS_NAME_MAX)
			return DNS_ERR_NAME_TOO_LONG;
		out->b[out->len++] = b;
		for (size_t i = 0; i < b; i++)
			out->b[out->len++] = dns_lower(msg[pos + 1 + i]);
		pos += 1 + (size_t)b;
	}
	*off = end;
	return DNS_OK;
}

static bool
dns_name_equal(const struct dns_name *a, const struct dns_name *b)
{
	/* Both sides are lowercased; length bytes (< 64) never collide with
	 * letters, so a byte compare is a case-insensitive name compare. */
	return a->len == b->len && memcmp(a->b, b->b, a->len) == 0;
}

/* RFC 1035 §4.1.3: owner name, TYPE, CLASS, TTL, RDLENGTH, RDATA. */
static enum dns_status
dns_read_rr(const uint8_t *msg, size_t len, size_t *off, struct dns_rr *rr)
{
	enum dns_status st;
	size_t pos = *off;

	if ((st = dns_read_name(msg, len, &pos, len, &rr->owner)) != DNS_OK)
		return st;
	if (len - pos < DNS_RR_FIXED_LEN)
		return DNS_ERR_RR_TRUNCATED;
	rr->type = dns_get16(msg + pos);
	rr->class = dns_get16(msg + pos + 2);
	rr->ttl = dns_ttl(dns_get32(msg + pos + 4));
	rr->rdlength = dns_get16(msg + pos + 8);
	rr->rdata = pos + DNS_RR_FIXED_LEN;
	if (len - rr->rdata < rr->rdlength)
		return DNS_ERR_RDATA_TRUNCATED;
	*off = rr->rdata + rr->rdlength;
	return DNS_OK;
}

/* A CNAME's RDATA is exactly one name (RFC 1035 §3.3.1). */
static enum dns_status
dns_read_cname(const uint8_t *msg, size_t len, const struct dns_rr *rr, struct dns_name *target)
{
	size_t pos = rr->rdata;
	size_t end = rr->rdata + rr->rdlength;
	enum dns_status st;

	st = dns_read_name(msg, len, &pos, end, target);
	if (st == DNS_ERR_RR_TRUNCATED)
		return DNS_ERR_BAD_CNAME;
	if (st != DNS_OK)
		return st;
	if (pos != end)
		return DNS_ERR_BAD_CNAME;
	return DNS_OK;
}

/* SOA RDATA: MNAME, RNAME, then five 32-bit fields (RFC 1035 §3.3.13).
 * *minimum is the last of them. */
static enum dns_status
dns_read_soa(const uint8_t *msg, size_t len, const struct dns_rr *rr, uint32_t *minimum)
{
	size_t pos = rr->rdata;
	size_t end = rr->rdata + rr->rdlength;
	struct dns_name n;
	enum dns_status st;

	for (int i = 0; i < 2; i++) {
		st = dns_read_name(msg, len, &pos, end, &n);
		if (st == DNS_ERR_RR_TRUNCATED)
			return DNS_ERR_BAD_SOA;
		if (st != DNS_OK)
			return st;
	}
	if (end - pos != DNS_SOA_FIXED_LEN)
		return DNS_ERR_BAD_SOA;
	*minimum = dns_get32(msg + pos + 16);
	return DNS_OK;
}

/* Checks every answer record's framing and the RDATA of the types we use. */
static enum dns_status
dns_check_answers(const uint8_t *msg, size_t len, size_t off, unsigned count, size_t *end)
{
	struct dns_rr rr;
	struct dns_name target;
	enum dns_status st;

	for (unsigned i = 0; i < count; i++) {
		if ((st = dns_read_rr(msg, len, &off, &rr)) != DNS_OK)
			return st;
		if (rr.class != DNS_CLASS_IN)
			continue;
		if (rr.type == DNS_TYPE_A && rr.rdlength != 4)
			return DNS_ERR_ADDR_LENGTH;
		if (rr.type == DNS_TYPE_AAAA && rr.rdlength != 16)
			return DNS_ERR_ADDR_LENGTH;
		if (rr.type == DNS_TYPE_CNAME &&
			(st = dns_read_cname(msg, len, &rr, &target)) != DNS_OK)
			return st;
	}
	*end = off;
	return DNS_OK;
}

static bool
dns_chain_has(const struct dns_name *chain, size_t n, const struct dns_name *name)
{
	for (size_t i = 0; i < n; i++)
		if (dns_name_equal(&chain[i], name))
			return true;
	return false;
}

/*
 * Follows CNAMEs from the query name (RFC 1034 §3.6.2, §5.2.2) and collects
 * the addresses owned by a name on the chain. Records owned by other names
 * are ignored. The answers were already checked by dns_check_answers.
 */
static enum dns_status
dns_collect_answers(const uint8_t *msg, size_t len, size_t start, unsigned count,
	const struct dns_name *qname, uint16_t qtype, struct dns_response *out)
{
	struct dns_name chain[DNS_MAX_CNAMES + 1];
	size_t nchain = 1;
	struct dns_rr rr;
	uint32_t ttl = UINT32_MAX;
	size_t off;
	enum dns_status st;

	chain[0] = *qname;
	for (;;) {
		bool found = false;

		off = start;
		for (unsigned i = 0; i < count && !found; i++) {
			struct dns_name target;

			if ((st = dns_read_rr(msg, len, &off, &rr)) != DNS_OK)
				return st;
			if (rr.type != DNS_TYPE_CNAME || rr.class != DNS_CLASS_IN ||
				!dns_name_equal(&rr.owner, &chain[nchain - 1]))
				continue;
			if ((st = dns_read_cname(msg, len, &rr, &target)) != DNS_OK)
				return st;
			if (dns_chain_has(chain, nchain, &target))
				return DNS_ERR_CNAME_LOOP;
			if (nchain == DNS_MAX_CNAMES + 1)
				return DNS_ERR_CNAME_CHAIN;
			chain[nchain++] = target;
			if (rr.ttl < ttl)
				ttl = rr.ttl;
			found = true;
		}
		if (!found)
			break;
	}
	out->cnames = (unsigned)(nchain - 1);

	off = start;
	for (unsigned i = 0; i < count; i++) {
		if ((st = dns_read_rr(msg, len, &off, &rr)) != DNS_OK)
			return st;
		if (rr.type != qtype || rr.class != DNS_CLASS_IN ||
			!dns_chain_has(chain, nchain, &rr.owner))
			continue;
		if (rr.ttl < ttl)
			ttl = rr.ttl;
		if (out->naddrs == DNS_MAX_ADDRS)
			continue;
		/* RDLENGTH was checked against the type (4 or 16) when read. */
		addr_from_ip(&out->addrs[out->naddrs++], qtype == DNS_TYPE_A ? AF_INET : AF_INET6,
			msg + rr.rdata, 0);
	}
	out->ttl = out->naddrs > 0 ? ttl : 0;
	return DNS_OK;
}

/* Authority section: framing of every record, and the negative-caching TTL
 * from any SOA (RFC 2308 §5: the lesser of the SOA's TTL and MINIMUM). */
static enum dns_status
dns_read_authority(const uint8_t *msg, size_t len, size_t off, unsigned count,
	struct dns_response *out)
{
	struct dns_rr rr;
	enum dns_status st;

	for (unsigned i = 0; i < count; i++) {
		uint32_t minimum, neg;

		if ((st = dns_read_rr(msg, len, &off, &rr)) != DNS_OK)
			return st;
		if (rr.type != DNS_TYPE_SOA || rr.class != DNS_CLASS_IN)
			continue;
		if ((st = dns_read_soa(msg, len, &rr, &minimum)) != DNS_OK)
			return st;
		neg = dns_ttl(minimum) < rr.ttl ? dns_ttl(minimum) : rr.ttl;
		if (!out->has_soa || neg < out->neg_ttl)
			out->neg_ttl = neg;
		out->has_soa = true;
	}
	return DNS_OK;
}

enum dns_status
dns_parse_response(const uint8_t *msg, size_t len, uint16_t id, const char *name, uint16_t qtype,
	struct dns_response *out)
{
	struct dns_name qname, got;
	uint16_t flags, qdcount, ancount, nscount;
	size_t off = DNS_HEADER_LEN;
	size_t answers_end;
	enum dns_status st;

	memset(out, 0, sizeof(*out));
	if ((st = dns_check_name(name)) != DNS_OK)
		return st;
	qname.len = dns_name_to_wire(name, qname.b, true);

	/* RFC 1035 §4.1.1 header. */
	if (len < DNS_HEADER_LEN)
		return DNS_ERR_SHORT_HEADER;
	flags = dns_get16(msg + 2);
	if (!(flags & DNS_FLAG_QR))
		return DNS_ERR_NOT_RESPONSE;
	if (dns_get16(msg) != id)
		return DNS_ERR_ID;
	if (((flags >> DNS_OPCODE_SHIFT) & DNS_OPCODE_MASK) != DNS_OPCODE_QUERY)
		return DNS_ERR_OPCODE;
	qdcount = dns_get16(msg + 4);
	ancount = dns_get16(msg + 6);
	nscount = dns_get16(msg + 8);
	if (qdcount != 1)
		return DNS_ERR_QDCOUNT;

	/* RFC 1035 §4.1.2: the question must be ours, echoed. RFC 1034 §3.1
	 * makes the comparison case-insensitive. */
	st = dns_read_name(msg, len, &off, len, &got);
	if (st == DNS_ERR_RR_TRUNCATED)
		return DNS_ERR_QUESTION_TRUNCATED;
	if (st != DNS_OK)
		return st;
	if (len - off < 4)
		return DNS_ERR_QUESTION_TRUNCATED;
	if (!dns_name_equal(&got, &qname))
		return DNS_ERR_QUESTION_MISMATCH;
	if (dns_get16(msg + off) != qtype || dns_get16(msg + off + 2) != DNS_CLASS_IN)
		return DNS_ERR_QTYPE_MISMATCH;
	off += 4;

	out->rcode = (uint8_t)(flags & DNS_RCODE_MASK);
	/* A truncated message may stop anywhere after the question
	 * (RFC 2181 §9): the sections are not read, the caller asks over TCP. */
	if (flags & DNS_FLAG_TC) {
		out->answer = DNS_ANS_TRUNCATED;
		return DNS_OK;
	}
	switch (out->rcode) {
	case DNS_RCODE_NOERROR:
	case DNS_RCODE_NXDOMAIN:
		break;
	case DNS_RCODE_SERVFAIL:
		out->answer = DNS_ANS_SERVFAIL;
		return DNS_OK;
	default:
		out->answer = DNS_ANS_REFUSED;
		return DNS_OK;
	}

	if ((st = dns_check_answers(msg, len, off, ancount, &answers_end)) != DNS_OK)
		return st;
	if ((st = dns_read_authority(msg, len, answers_end, nscount, out)) != DNS_OK)
		return st;
	st = dns_collect_answers(msg, len, off, ancount, &qname, qtype, out);
	if (st != DNS_OK)
		return st;

	if (out->rcode == DNS_RCODE_NXDOMAIN)
		out->answer = DNS_ANS_NXDOMAIN;
	else
		out->answer = out->naddrs > 0 ? DNS_ANS_ADDRS : DNS_ANS_NODATA;
	return DNS_OK;
}
