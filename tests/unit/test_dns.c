/*
 * test_dns: the DNS codec. Queries are compared byte for byte; responses are
 * built by hand here (no resolver library in the loop) so that each malformed
 * case differs from a valid message in exactly one way.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dns.h"

#include "unit_util.h"

#define F_QR 0x8000u
#define F_TC 0x0200u
#define F_RD 0x0100u
#define F_RA 0x0080u
#define RESP(rcode) ((uint16_t)(F_QR | F_RD | F_RA | (rcode)))

#define QNAME "www.example.com"
#define QID 0xBEEF

/* The address bytes of an answer (4 for A, 16 for AAAA), network order. */
static const uint8_t *
addr_bytes(const union sockaddr_any *a)
{
	if (a->sa.sa_family == AF_INET6)
		return a->sin6.sin6_addr.s6_addr;
	return (const uint8_t *)&a->sin.sin_addr;
}

/* A response under construction. */
struct msg {
	uint8_t b[8192];
	size_t len;
};

static void
m_u8(struct msg *m, uint8_t v)
{
	assert_true(m->len < sizeof(m->b));
	m->b[m->len++] = v;
}

static void
m_u16(struct msg *m, uint16_t v)
{
	m_u8(m, (uint8_t)(v >> 8));
	m_u8(m, (uint8_t)v);
}

static void
m_u32(struct msg *m, uint32_t v)
{
	m_u16(m, (uint16_t)(v >> 16));
	m_u16(m, (uint16_t)v);
}

static void
m_bytes(struct msg *m, const void *p, size_t n)
{
	assert_true(m->len + n <= sizeof(m->b));
	memcpy(m->b + m->len, p, n);
	m->len += n;
}

/* Labels of a dotted name, without the terminating zero. */
static void
m_labels(struct msg *m, const char *text)
{
	while (*text) {
		const char *dot = strchr(text, '.');
		size_t n = dot ? (size_t)(dot - text) : strlen(text);

		m_u8(m, (uint8_t)n);
		m_bytes(m, text, n);
		text += n;
		if (*text == '.')
			text++;
	}
}

static void
m_name(struct msg *m, const char *text)
{
	m_labels(m, text);
	m_u8(m, 0);
}

static void
m_ptr(struct msg *m, uint16_t off)
{
	m_u16(m, (uint16_t)(0xC000u | off));
}

static void
m_header(struct msg *m, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns,
	uint16_t ar)
{
	m->len = 0;
	m_u16(m, id);
	m_u16(m, flags);
	m_u16(m, qd);
	m_u16(m, an);
	m_u16(m, ns);
	m_u16(m, ar);
}

/* Header plus the question for QNAME; the name sits at offset 12. */
static void
m_start(struct msg *m, uint16_t flags, uint16_t an, uint16_t ns, uint16_t qtype)
{
	m_header(m, QID, flags, 1, an, ns, 0);
	m_name(m, QNAME);
	m_u16(m, qtype);
	m_u16(m, DNS_CLASS_IN);
}

/* TYPE, CLASS, TTL and a placeholder RDLENGTH; returns where it is. */
static size_t
m_rr(struct msg *m, uint16_t type, uint32_t ttl)
{
	size_t at;

	m_u16(m, type);
	m_u16(m, DNS_CLASS_IN);
	m_u32(m, ttl);
	at = m->len;
	m_u16(m, 0);
	return at;
}

static void
m_rdlength(struct msg *m, size_t at)
{
	size_t n = m->len - at - 2;

	m->b[at] = (uint8_t)(n >> 8);
	m->b[at + 1] = (uint8_t)n;
}

static void
m_a(struct msg *m, uint32_t ttl, uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	size_t at = m_rr(m, DNS_TYPE_A, ttl);
	uint8_t ip[4] = { a, b, c, d };

	m_bytes(m, ip, 4);
	m_rdlength(m, at);
}

static void
m_aaaa(struct msg *m, uint32_t ttl, uint8_t last)
{
	size_t at = m_rr(m, DNS_TYPE_AAAA, ttl);
	uint8_t ip[16] = { 0x20, 0x01, 0x0d, 0xb8 };

	ip[15] = last;
	m_bytes(m, ip, 16);
	m_rdlength(m, at);
}

/* SOA RDATA with the given MINIMUM (RFC 1035 §3.3.13). */
static void
m_soa(struct msg *m, uint32_t ttl, uint32_t minimum)
{
	size_t at = m_rr(m, DNS_TYPE_SOA, ttl);

	m_name(m, "ns1.example.com");
	m_name(m, "hostmaster.example.com");
	m_u32(m, 2024010101);
	m_u32(m, 7200);
	m_u32(m, 3600);
	m_u32(m, 1209600);
	m_u32(m, minimum);
	m_rdlength(m, at);
}

static enum dns_status
parse(const struct msg *m, uint16_t qtype, struct dns_response *r)
{
	return dns_parse_response(m->b, m->len, QID, QNAME, qtype, r);
}

static void
assert_parse_error(const struct msg *m, uint16_t qtype, enum dns_status want)
{
	struct dns_response r;
	enum dns_status st = parse(m, qtype, &r);

	if (st != want)
		fail_msg("got %s, want %s", dns_status_str(st), dns_status_str(want));
}

/* --- queries --------------------------------------------------------- */

static void
test_query_a_byte_exact(void **state)
{
	static const uint8_t want[] = {
		0x12, 0x34, /* ID */
		0x01, 0x00, /* RD */
		0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 3, 'w', 'w', 'w', 7, 'e', 'x', 'a',
		'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0x00, 0x01, /* QTYPE A */
		0x00, 0x01,                                          /* QCLASS IN */
	};
	uint8_t out[DNS_QUERY_MAX];
	size_t len = 0;

	(void)state;
	assert_int_equal(
		dns_build_query(out, sizeof(out), &len, 0x1234, "www.example.com", DNS_TYPE_A),
		DNS_OK);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
}

static void
test_query_aaaa_trailing_dot_byte_exact(void **state)
{
	static const uint8_t want[] = {
		0xFF,
		0x01,
		0x01,
		0x00,
		0x00,
		0x01,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		1,
		'A',
		5,
		'b',
		'-',
		'c',
		'_',
		'D',
		0,
		0x00,
		0x1C, /* QTYPE AAAA */
		0x00,
		0x01,
	};
	uint8_t out[DNS_QUERY_MAX];
	size_t len = 0;

	(void)state;
	assert_int_equal(dns_build_query(out, sizeof(out), &len, 0xFF01, "A.b-c_D.", DNS_TYPE_AAAA),
		DNS_OK);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
}

static void
make_name(char *out, size_t nlabels, size_t label_len, size_t last_len)
{
	size_t o = 0;

	for (size_t i = 0; i < nlabels; i++) {
		size_t n = (i + 1 == nlabels) ? last_len : label_len;

		if (i > 0)
			out[o++] = '.';
		memset(out + o, 'a' + (int)(i % 26), n);
		o += n;
	}
	out[o] = '\0';
}

static void
test_query_name_limits(void **state)
{
	char name[600];
	uint8_t out[DNS_QUERY_MAX];
	size_t len = 0;

	(void)state;
	/* 63-byte label: fine; 64: too long. */
	make_name(name, 2, 63, 3);
	assert_int_equal(dns_check_name(name), DNS_OK);
	make_name(name, 2, 64, 3);
	assert_int_equal(dns_check_name(name), DNS_ERR_LABEL_TOO_LONG);
	make_name(name, 1, 64, 64);
	assert_int_equal(dns_check_name(name), DNS_ERR_LABEL_TOO_LONG);

	/* 3*63 + 61 + 3 dots = 253 bytes: the longest name; its query is
	 * exactly DNS_QUERY_MAX bytes. */
	make_name(name, 4, 63, 61);
	assert_int_equal(strlen(name), 253);
	assert_int_equal(dns_build_query(out, sizeof(out), &len, 1, name, DNS_TYPE_A), DNS_OK);
	assert_int_equal(len, DNS_QUERY_MAX);
	/* With a final dot it is still 253. */
	strcat(name, ".");
	assert_int_equal(dns_check_name(name), DNS_OK);
	make_name(name, 4, 63, 62);
	assert_int_equal(strlen(name), 254);
	assert_int_equal(dns_check_name(name), DNS_ERR_NAME_TOO_LONG);
	memset(name, 'a', 599);
	name[599] = '\0';
	assert_int_equal(dns_check_name(name), DNS_ERR_NAME_TOO_LONG);
}

static void
test_query_rejects_bad_names(void **state)
{
	static const struct {
		const char *name;
		enum dns_status want;
	} cases[] = {
		{ "", DNS_ERR_NAME_EMPTY },
		{ ".", DNS_ERR_NAME_EMPTY },
		{ "..", DNS_ERR_LABEL_EMPTY },
		{ ".example.com", DNS_ERR_LABEL_EMPTY },
		{ "example..com", DNS_ERR_LABEL_EMPTY },
		{ "example.com..", DNS_ERR_LABEL_EMPTY },
		{ "exa mple.com", DNS_ERR_NAME_CHAR },
		{ "example.com/", DNS_ERR_NAME_CHAR },
		{ "ex\\.ample", DNS_ERR_NAME_CHAR },
		{ "caf\xc3\xa9.fr", DNS_ERR_NAME_CHAR },
		{ "a\tb", DNS_ERR_NAME_CHAR },
		{ "[::1]", DNS_ERR_NAME_CHAR },
		{ "localhost", DNS_OK },
		{ "1.2.3.4", DNS_OK },
		{ "_dmarc.example.com", DNS_OK },
		{ "xn--caf-dma.fr.", DNS_OK },
	};
	uint8_t out[DNS_QUERY_MAX];
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum dns_status st = dns_check_name(cases[i].name);

		if (st != cases[i].want)
			fail_msg("\"%s\": got %s, want %s", cases[i].name, dns_status_str(st),
				dns_status_str(cases[i].want));
		st = dns_build_query(out, sizeof(out), &len, 7, cases[i].name, DNS_TYPE_A);
		assert_int_equal(st, cases[i].want);
	}
}

static void
test_query_rejects_other_types_and_small_buffers(void **state)
{
	uint8_t out[DNS_QUERY_MAX];
	size_t len = 0;
	size_t need;

	(void)state;
	assert_int_equal(dns_build_query(out, sizeof(out), &len, 1, "a.b", 15), DNS_ERR_QTYPE);
	assert_int_equal(dns_build_query(out, sizeof(out), &len, 1, "a.b", DNS_TYPE_CNAME),
		DNS_ERR_QTYPE);
	assert_int_equal(dns_build_query(out, sizeof(out), &len, 1, "a.b", DNS_TYPE_A), DNS_OK);
	need = len;
	assert_int_equal(need, 12 + 5 + 4);
	for (size_t cap = 0; cap < need; cap++)
		assert_int_equal(dns_build_query(out, cap, &len, 1, "a.b", DNS_TYPE_A),
			DNS_ERR_NO_SPACE);
	assert_int_equal(dns_build_query(out, need, &len, 1, "a.b", DNS_TYPE_A), DNS_OK);
}

/* --- valid responses --------------------------------------------------- */

static void
test_response_several_a_min_ttl(void **state)
{
	struct msg m;
	struct dns_response r;

	(void)state;
	m_start(&m, RESP(0), 3, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	m_a(&m, 300, 192, 0, 2, 1);
	m_ptr(&m, 12);
	m_a(&m, 60, 192, 0, 2, 2);
	m_ptr(&m, 12);
	m_a(&m, 120, 192, 0, 2, 3);
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.answer, DNS_ANS_ADDRS);
	assert_int_equal(r.rcode, 0);
	assert_int_equal(r.naddrs, 3);
	assert_int_equal(r.ttl, 60);
	assert_int_equal(r.cnames, 0);
	for (size_t i = 0; i < 3; i++) {
		uint8_t want[4] = { 192, 0, 2, (uint8_t)(i + 1) };

		assert_int_equal(r.addrs[i].sa.sa_family, AF_INET);
		assert_memory_equal(addr_bytes(&r.addrs[i]), want, 4);
	}
}

static void
test_response_aaaa_uncompressed_owner_any_case(void **state)
{
	struct msg m;
	struct dns_response r;

	(void)state;
	/* The server echoes the question in another case (0x20 style) and
	 * spells owners out without compression. */
	m_header(&m, QID, RESP(0), 1, 2, 0, 0);
	m_name(&m, "WwW.ExAmPlE.cOm");
	m_u16(&m, DNS_TYPE_AAAA);
	m_u16(&m, DNS_CLASS_IN);
	m_name(&m, "WWW.EXAMPLE.COM");
	m_aaaa(&m, 3600, 1);
	m_name(&m, "www.example.com");
	m_aaaa(&m, 1800, 2);
	assert_int_equal(parse(&m, DNS_TYPE_AAAA, &r), DNS_OK);
	assert_int_equal(r.answer, DNS_ANS_ADDRS);
	assert_int_equal(r.naddrs, 2);
	assert_int_equal(r.ttl, 1800);
	assert_int_equal(r.addrs[0].sa.sa_family, AF_INET6);
	assert_int_equal(addr_bytes(&r.addrs[0])[0], 0x20);
	assert_int_equal(addr_bytes(&r.addrs[0])[15], 1);
	assert_int_equal(addr_bytes(&r.addrs[1])[15], 2);
}

static void
test_response_cname_chain_with_pointers(void **state)
{
	struct msg m;
	struct dns_response r;
	size_t at, t1, t2;

	(void)state;
	/* www.example.com CNAME edge.cdn.net; edge.cdn.net CNAME
	 * a1.edge.cdn.net; a1.edge.cdn.net A x2. Targets are reached
	 * through pointers into earlier RDATA, one pointing mid-name. */
	m_start(&m, RESP(0), 4, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	at = m_rr(&m, DNS_TYPE_CNAME, 500);
	t1 = m.len;
	m_name(&m, "edge.cdn.net");
	m_rdlength(&m, at);
	m_ptr(&m, (uint16_t)t1);
	at = m_rr(&m, DNS_TYPE_CNAME, 200);
	t2 = m.len;
	m_labels(&m, "a1");
	m_ptr(&m, (uint16_t)t1);
	m_rdlength(&m, at);
	m_ptr(&m, (uint16_t)t2);
	m_a(&m, 900, 203, 0, 113, 7);
	m_ptr(&m, (uint16_t)t2);
	m_a(&m, 800, 203, 0, 113, 8);
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.answer, DNS_ANS_ADDRS);
	assert_int_equal(r.cnames, 2);
	assert_int_equal(r.naddrs, 2);
	assert_int_equal(r.ttl, 200); /* the chain's weakest link */
	assert_int_equal(addr_bytes(&r.addrs[0])[3], 7);
	assert_int_equal(addr_bytes(&r.addrs[1])[3], 8);
}

static void
test_response_cname_chain_out_of_order(void **state)
{
	struct msg m;
	struct dns_response r;
	size_t at;

	(void)state;
	m_start(&m, RESP(0), 3, 0, DNS_TYPE_A);
	m_name(&m, "c.example.org");
	m_a(&m, 50, 10, 0, 0, 1);
	m_name(&m, "b.example.org");
	at = m_rr(&m, DNS_TYPE_CNAME, 70);
	m_name(&m, "c.example.org");
	m_rdlength(&m, at);
	m_ptr(&m, 12);
	at = m_rr(&m, DNS_TYPE_CNAME, 60);
	m_name(&m, "b.example.org");
	m_rdlength(&m, at);
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.cnames, 2);
	assert_int_equal(r.naddrs, 1);
	assert_int_equal(r.ttl, 50);
}

static void
test_response_ignores_records_off_the_chain(void **state)
{
	struct msg m;
	struct dns_response r;

	(void)state;
	/* An address for another name, one of the other type, one in class
	 * CH: none of them belong to our answer. */
	m_start(&m, RESP(0), 4, 0, DNS_TYPE_A);
	m_name(&m, "evil.example.net");
	m_a(&m, 10, 6, 6, 6, 6);
	m_ptr(&m, 12);
	m_aaaa(&m, 10, 9);
	m_ptr(&m, 12);
	m_u16(&m, DNS_TYPE_A);
	m_u16(&m, 3); /* CH */
	m_u32(&m, 10);
	m_u16(&m, 4);
	m_u32(&m, 0x07070707);
	m_ptr(&m, 12);
	m_a(&m, 40, 192, 0, 2, 80);
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.answer, DNS_ANS_ADDRS);
	assert_int_equal(r.naddrs, 1);
	assert_int_equal(addr_bytes(&r.addrs[0])[3], 80);
	assert_int_equal(r.ttl, 40);
}

static void
test_response_keeps_at_most_max_addrs(void **state)
{
	struct msg m;
	struct dns_response r;

	(void)state;
	m_start(&m, RESP(0), DNS_MAX_ADDRS + 4, 0, DNS_TYPE_A);
	for (int i = 0; i < DNS_MAX_ADDRS + 4; i++) {
		m_ptr(&m, 12);
		m_a(&m, (uint32_t)(100 + i), 10, 0, 0, (uint8_t)i);
	}
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.naddrs, DNS_MAX_ADDRS);
	assert_int_equal(addr_bytes(&r.addrs[DNS_MAX_ADDRS - 1])[3], DNS_MAX_ADDRS - 1);
	assert_int_equal(r.ttl, 100);
}

static void
test_response_ttl_top_bit_is_zero(void **state)
{
	struct msg m;
	struct dns_response r;

	(void)state;
	/* RFC 2181 §8 */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	m_a(&m, 0x80000010u, 10, 0, 0, 1);
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.ttl, 0);
}

static void
test_response_nxdomain_soa_negative_ttl(void **state)
{
	struct msg m;
	struct dns_response r;

	(void)state;
	/* RFC 2308 §5: the lesser of the SOA record's TTL and MINIMUM. */
	m_start(&m, RESP(DNS_RCODE_NXDOMAIN), 0, 1, DNS_TYPE_A);
	m_ptr(&m, 16); /* "example.com" inside the question */
	m_soa(&m, 900, 300);
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.answer, DNS_ANS_NXDOMAIN);
	assert_int_equal(r.rcode, DNS_RCODE_NXDOMAIN);
	assert_true(r.has_soa);
	assert_int_equal(r.neg_ttl, 300);
	assert_int_equal(r.naddrs, 0);

	m_start(&m, RESP(DNS_RCODE_NXDOMAIN), 0, 1, DNS_TYPE_A);
	m_ptr(&m, 16);
	m_soa(&m, 60, 3600);
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.neg_ttl, 60);
}

static void
test_response_nxdomain_after_cname(void **state)
{
	struct msg m;
	struct dns_response r;
	size_t at;

	(void)state;
	m_start(&m, RESP(DNS_RCODE_NXDOMAIN), 1, 1, DNS_TYPE_A);
	m_ptr(&m, 12);
	at = m_rr(&m, DNS_TYPE_CNAME, 100);
	m_name(&m, "gone.example.net");
	m_rdlength(&m, at);
	m_name(&m, "example.net");
	m_soa(&m, 120, 240);
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.answer, DNS_ANS_NXDOMAIN);
	assert_int_equal(r.cnames, 1);
	assert_int_equal(r.neg_ttl, 120);
}

static void
test_response_nodata(void **state)
{
	struct msg m;
	struct dns_response r;

	(void)state;
	m_start(&m, RESP(0), 0, 1, DNS_TYPE_AAAA);
	m_ptr(&m, 16);
	m_soa(&m, 3600, 30);
	assert_int_equal(parse(&m, DNS_TYPE_AAAA, &r), DNS_OK);
	assert_int_equal(r.answer, DNS_ANS_NODATA);
	assert_true(r.has_soa);
	assert_int_equal(r.neg_ttl, 30);

	/* No SOA: still NODATA, nothing to cache it by. */
	m_start(&m, RESP(0), 0, 0, DNS_TYPE_AAAA);
	assert_int_equal(parse(&m, DNS_TYPE_AAAA, &r), DNS_OK);
	assert_int_equal(r.answer, DNS_ANS_NODATA);
	assert_false(r.has_soa);

	/* Only an address of the other type. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_AAAA);
	m_ptr(&m, 12);
	m_a(&m, 10, 1, 2, 3, 4);
	assert_int_equal(parse(&m, DNS_TYPE_AAAA, &r), DNS_OK);
	assert_int_equal(r.answer, DNS_ANS_NODATA);
	assert_int_equal(r.naddrs, 0);
}

static void
test_response_error_rcodes(void **state)
{
	static const struct {
		uint8_t rcode;
		enum dns_answer want;
	} cases[] = {
		{ DNS_RCODE_SERVFAIL, DNS_ANS_SERVFAIL },
		{ DNS_RCODE_FORMERR, DNS_ANS_REFUSED },
		{ DNS_RCODE_NOTIMP, DNS_ANS_REFUSED },
		{ DNS_RCODE_REFUSED, DNS_ANS_REFUSED },
		{ 6, DNS_ANS_REFUSED },
		{ 15, DNS_ANS_REFUSED },
	};
	struct msg m;
	struct dns_response r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* The body is garbage: error answers are not read further. */
		m_start(&m, RESP(cases[i].rcode), 5, 5, DNS_TYPE_A);
		m_u8(&m, 0xC0);
		assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
		assert_int_equal(r.answer, cases[i].want);
		assert_int_equal(r.rcode, cases[i].rcode);
	}
}

static void
test_response_truncated_flag(void **state)
{
	struct msg m;
	struct dns_response r;

	(void)state;
	/* TC with the answer cut mid-record: checked up to the question. */
	m_start(&m, (uint16_t)(RESP(0) | F_TC), 7, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	m_u16(&m, DNS_TYPE_A);
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.answer, DNS_ANS_TRUNCATED);
	/* The question still has to match. */
	assert_int_equal(dns_parse_response(m.b, m.len, QID, "other.example.com", DNS_TYPE_A, &r),
		DNS_ERR_QUESTION_MISMATCH);
}

static void
test_response_to_built_query_round_trip(void **state)
{
	struct msg m;
	struct dns_response r;
	size_t len;

	(void)state;
	assert_int_equal(dns_build_query(m.b, sizeof(m.b), &len, QID, QNAME, DNS_TYPE_A), DNS_OK);
	m.len = len;
	m.b[2] |= 0x80; /* QR */
	m.b[7] = 1;     /* ANCOUNT */
	m_ptr(&m, 12);
	m_a(&m, 5, 127, 0, 0, 1);
	assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
	assert_int_equal(r.naddrs, 1);
	assert_int_equal(r.ttl, 5);
}

/* --- malformed responses ------------------------------------------------- */

/* What every prefix of a message handed to truncated() must get: one of
 * two statuses (the same one twice when only one will do). */
struct truncated_want {
	enum dns_status a, b;
};

/* A prefix of a QNAME/A response is rejected as what it cuts short. */
static void
truncated(const uint8_t *p, size_t n, void *arg)
{
	const struct truncated_want *want = arg;
	struct dns_response r;
	enum dns_status st = dns_parse_response(p, n, QID, QNAME, DNS_TYPE_A, &r);

	if (st != want->a && st != want->b)
		fail_msg("len %zu: %s", n, dns_status_str(st));
}

static void
test_reject_short_header(void **state)
{
	struct truncated_want want = { DNS_ERR_SHORT_HEADER, DNS_ERR_SHORT_HEADER };
	struct msg m;

	(void)state;
	m_start(&m, RESP(0), 0, 0, DNS_TYPE_A);
	unit_each_prefix(m.b, 0, DNS_HEADER_LEN, truncated, &want);
}

static void
test_reject_truncated_question_at_every_byte(void **state)
{
	struct truncated_want want = { DNS_ERR_QUESTION_TRUNCATED, DNS_ERR_QUESTION_TRUNCATED };
	struct msg m;

	(void)state;
	m_start(&m, RESP(0), 0, 0, DNS_TYPE_A);
	unit_each_prefix(m.b, DNS_HEADER_LEN, m.len, truncated, &want);
}

static void
test_reject_every_prefix_of_an_answer(void **state)
{
	struct truncated_want want = { DNS_ERR_RR_TRUNCATED, DNS_ERR_RDATA_TRUNCATED };
	struct msg m;
	struct dns_response full;
	size_t qend;

	(void)state;
	m_start(&m, RESP(0), 2, 1, DNS_TYPE_A);
	qend = m.len;
	m_ptr(&m, 12);
	m_a(&m, 60, 1, 2, 3, 4);
	m_name(&m, "x.example.com");
	m_a(&m, 60, 1, 2, 3, 5);
	m_ptr(&m, 16);
	m_soa(&m, 60, 60);
	assert_int_equal(parse(&m, DNS_TYPE_A, &full), DNS_OK);
	unit_each_prefix(m.b, qend, m.len, truncated, &want);
}

static void
test_reject_not_response_wrong_id_opcode_qdcount(void **state)
{
	struct msg m;

	(void)state;
	m_start(&m, (uint16_t)(RESP(0) & ~F_QR), 0, 0, DNS_TYPE_A);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_NOT_RESPONSE);

	m_start(&m, RESP(0), 0, 0, DNS_TYPE_A);
	m.b[0] ^= 0x01;
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_ID);
	m.b[0] ^= 0x01;
	m.b[1] ^= 0x80;
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_ID);

	for (unsigned op = 1; op < 16; op++) {
		m_start(&m, (uint16_t)(RESP(0) | op << 11), 0, 0, DNS_TYPE_A);
		assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_OPCODE);
	}

	m_start(&m, RESP(0), 0, 0, DNS_TYPE_A);
	m.b[5] = 0;
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_QDCOUNT);
	m.b[5] = 2;
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_QDCOUNT);
	m.b[4] = 1;
	m.b[5] = 1;
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_QDCOUNT);
}

static void
test_reject_question_mismatch(void **state)
{
	struct msg m;

	(void)state;
	m_header(&m, QID, RESP(0), 1, 0, 0, 0);
	m_name(&m, "www.example.org");
	m_u16(&m, DNS_TYPE_A);
	m_u16(&m, DNS_CLASS_IN);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_QUESTION_MISMATCH);

	/* A prefix or a longer name is not the same name. */
	m_header(&m, QID, RESP(0), 1, 0, 0, 0);
	m_name(&m, "www.example.com.evil");
	m_u16(&m, DNS_TYPE_A);
	m_u16(&m, DNS_CLASS_IN);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_QUESTION_MISMATCH);
	m_header(&m, QID, RESP(0), 1, 0, 0, 0);
	m_name(&m, "example.com");
	m_u16(&m, DNS_TYPE_A);
	m_u16(&m, DNS_CLASS_IN);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_QUESTION_MISMATCH);

	m_start(&m, RESP(0), 0, 0, DNS_TYPE_AAAA);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_QTYPE_MISMATCH);

	m_header(&m, QID, RESP(0), 1, 0, 0, 0);
	m_name(&m, QNAME);
	m_u16(&m, DNS_TYPE_A);
	m_u16(&m, 3); /* CH */
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_QTYPE_MISMATCH);
}

static void
test_reject_bad_pointers(void **state)
{
	struct msg m;

	(void)state;
	/* Answer owner pointing past the end of the message. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_ptr(&m, 0x3FFF);
	m_a(&m, 1, 1, 1, 1, 1);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_BAD_POINTER);

	/* Pointing exactly at the end. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	m_a(&m, 1, 1, 1, 1, 1);
	m.b[m.len - 16] = (uint8_t)(0xC0 | (m.len >> 8));
	m.b[m.len - 15] = (uint8_t)m.len;
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_BAD_POINTER);

	/* Into the header. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_ptr(&m, 4);
	m_a(&m, 1, 1, 1, 1, 1);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_BAD_POINTER);

	/* In the question itself. */
	m_header(&m, QID, RESP(0), 1, 0, 0, 0);
	m_ptr(&m, 200);
	m_u16(&m, DNS_TYPE_A);
	m_u16(&m, DNS_CLASS_IN);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_BAD_POINTER);

	/* A pointer cut after its first byte. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_u8(&m, 0xC0);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_RR_TRUNCATED);
}

static void
test_reject_pointer_loops(void **state)
{
	struct msg m;
	size_t at;

	(void)state;
	/* A pointer to itself. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	at = m.len;
	m_ptr(&m, (uint16_t)at);
	m_a(&m, 1, 1, 1, 1, 1);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_POINTER_LOOP);

	/* Two pointers pointing at each other. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	at = m.len;
	m_ptr(&m, (uint16_t)(at + 2));
	m_ptr(&m, (uint16_t)at);
	m.b[7] = 1;
	m_a(&m, 1, 1, 1, 1, 1);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_POINTER_LOOP);

	/* A label then a pointer back to it: grows until too long. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	at = m.len;
	m_labels(&m, "loop");
	m_ptr(&m, (uint16_t)at);
	m_a(&m, 1, 1, 1, 1, 1);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_POINTER_LOOP);

	/* The same in the question. */
	m_header(&m, QID, RESP(0), 1, 0, 0, 0);
	m_ptr(&m, 12);
	m_u16(&m, DNS_TYPE_A);
	m_u16(&m, DNS_CLASS_IN);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_POINTER_LOOP);
}

static void
test_reject_long_names_and_labels(void **state)
{
	struct msg m;
	size_t at;

	(void)state;
	/* Length bytes 0x40..0xBF are not labels (RFC 1035 §4.1.4). */
	for (unsigned b = 0x40; b < 0xC0; b += 0x3F) {
		m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
		m_u8(&m, (uint8_t)b);
		for (unsigned i = 0; i < b; i++)
			m_u8(&m, 'x');
		m_u8(&m, 0);
		m_a(&m, 1, 1, 1, 1, 1);
		assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_LABEL_TOO_LONG);
	}

	/* A name of 5 x 63-byte labels: 321 bytes in wire form. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	for (int l = 0; l < 5; l++) {
		m_u8(&m, 63);
		for (int i = 0; i < 63; i++)
			m_u8(&m, 'y');
	}
	m_u8(&m, 0);
	m_a(&m, 1, 1, 1, 1, 1);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_NAME_TOO_LONG);

	/* Exactly 255 bytes is allowed; 256 is not, even when the extra
	 * length arrives through a pointer. 4 x 63 labels = 256 + root. */
	m_start(&m, RESP(0), 2, 0, DNS_TYPE_A);
	at = m.len;
	for (int l = 0; l < 3; l++) {
		m_u8(&m, 63);
		for (int i = 0; i < 63; i++)
			m_u8(&m, 'z');
	}
	m_u8(&m, 61);
	for (int i = 0; i < 61; i++)
		m_u8(&m, 'z');
	m_u8(&m, 0); /* 3*64 + 62 + 1 = 255 */
	m_a(&m, 1, 1, 1, 1, 1);
	m_labels(&m, "q");
	m_ptr(&m, (uint16_t)at); /* 2 + 255 = 257 */
	m_a(&m, 1, 1, 1, 1, 1);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_NAME_TOO_LONG);
	m.b[7] = 1;
	{
		struct dns_response r;

		assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
		assert_int_equal(r.naddrs, 0);
	}
}

static void
test_reject_answer_count_lying(void **state)
{
	struct msg m;

	(void)state;
	m_start(&m, RESP(0), 2, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	m_a(&m, 1, 1, 1, 1, 1);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_RR_TRUNCATED);

	/* ANCOUNT 0xFFFF over a few bytes. */
	m.b[6] = 0xFF;
	m.b[7] = 0xFF;
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_RR_TRUNCATED);

	/* The authority count lies too. */
	m_start(&m, RESP(DNS_RCODE_NXDOMAIN), 0, 2, DNS_TYPE_A);
	m_ptr(&m, 16);
	m_soa(&m, 1, 1);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_RR_TRUNCATED);
}

static void
test_reject_rdlength_lying(void **state)
{
	struct msg m;

	(void)state;
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	m_a(&m, 1, 1, 1, 1, 1);
	m.b[m.len - 6] = 0x00;
	m.b[m.len - 5] = 0x05; /* 5 bytes announced, 4 present */
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_RDATA_TRUNCATED);
	m.b[m.len - 6] = 0xFF;
	m.b[m.len - 5] = 0xFF;
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_RDATA_TRUNCATED);
}

static void
test_reject_wrong_address_lengths(void **state)
{
	struct msg m;
	size_t at;

	(void)state;
	for (uint16_t n = 0; n < 20; n++) {
		if (n == 4)
			continue;
		m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
		m_ptr(&m, 12);
		at = m_rr(&m, DNS_TYPE_A, 1);
		for (uint16_t i = 0; i < n; i++)
			m_u8(&m, 1);
		m_rdlength(&m, at);
		assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_ADDR_LENGTH);
	}
	for (uint16_t n = 0; n < 20; n++) {
		if (n == 16)
			continue;
		m_start(&m, RESP(0), 1, 0, DNS_TYPE_AAAA);
		m_ptr(&m, 12);
		at = m_rr(&m, DNS_TYPE_AAAA, 1);
		for (uint16_t i = 0; i < n; i++)
			m_u8(&m, 1);
		m_rdlength(&m, at);
		assert_parse_error(&m, DNS_TYPE_AAAA, DNS_ERR_ADDR_LENGTH);
	}
	/* A bad AAAA in an A answer is still a malformed message. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	at = m_rr(&m, DNS_TYPE_AAAA, 1);
	m_u32(&m, 1);
	m_rdlength(&m, at);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_ADDR_LENGTH);
}

static void
test_reject_bad_cname_and_soa(void **state)
{
	struct msg m;
	size_t at;

	(void)state;
	/* A name followed by a stray byte inside the RDATA. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	at = m_rr(&m, DNS_TYPE_CNAME, 1);
	m_name(&m, "t.example.com");
	m_u8(&m, 0);
	m_rdlength(&m, at);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_BAD_CNAME);

	/* A name running past RDLENGTH (though not past the message). */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	at = m_rr(&m, DNS_TYPE_CNAME, 1);
	m_name(&m, "t.example.com");
	m_rdlength(&m, at);
	m.b[at + 1] = 3;
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_BAD_CNAME);

	/* Empty CNAME RDATA. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	at = m_rr(&m, DNS_TYPE_CNAME, 1);
	m_rdlength(&m, at);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_BAD_CNAME);

	/* SOA short of its 20 fixed bytes, and with one too many. */
	m_start(&m, RESP(DNS_RCODE_NXDOMAIN), 0, 1, DNS_TYPE_A);
	m_ptr(&m, 16);
	at = m_rr(&m, DNS_TYPE_SOA, 1);
	m_name(&m, "ns1.example.com");
	m_name(&m, "hostmaster.example.com");
	for (int i = 0; i < 19; i++)
		m_u8(&m, 0);
	m_rdlength(&m, at);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_BAD_SOA);
	m_u8(&m, 0);
	m_u8(&m, 0);
	m_rdlength(&m, at);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_BAD_SOA);

	/* SOA with its RNAME cut by RDLENGTH. */
	m_start(&m, RESP(0), 0, 1, DNS_TYPE_A);
	m_ptr(&m, 16);
	at = m_rr(&m, DNS_TYPE_SOA, 1);
	m_name(&m, "ns1.example.com");
	m_labels(&m, "hostmaster");
	m_rdlength(&m, at);
	m_u8(&m, 0);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_BAD_SOA);
}

static void
test_reject_cname_loops_and_long_chains(void **state)
{
	struct msg m;
	size_t at;
	char owner[32], target[32];

	(void)state;
	/* www -> a -> www */
	m_start(&m, RESP(0), 2, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	at = m_rr(&m, DNS_TYPE_CNAME, 1);
	m_name(&m, "a.example.com");
	m_rdlength(&m, at);
	m_name(&m, "a.example.com");
	at = m_rr(&m, DNS_TYPE_CNAME, 1);
	m_ptr(&m, 12);
	m_rdlength(&m, at);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_CNAME_LOOP);

	/* A name aliased to itself. */
	m_start(&m, RESP(0), 1, 0, DNS_TYPE_A);
	m_ptr(&m, 12);
	at = m_rr(&m, DNS_TYPE_CNAME, 1);
	m_ptr(&m, 12);
	m_rdlength(&m, at);
	assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_CNAME_LOOP);

	/* DNS_MAX_CNAMES links are followed; one more is refused. */
	for (int extra = 0; extra < 2; extra++) {
		int links = DNS_MAX_CNAMES + extra;

		m_start(&m, RESP(0), (uint16_t)(links + 1), 0, DNS_TYPE_A);
		for (int i = 0; i < links; i++) {
			snprintf(owner, sizeof(owner), "c%d.example.com", i);
			snprintf(target, sizeof(target), "c%d.example.com", i + 1);
			if (i == 0)
				m_ptr(&m, 12);
			else
				m_name(&m, owner);
			at = m_rr(&m, DNS_TYPE_CNAME, 1);
			m_name(&m, target);
			m_rdlength(&m, at);
		}
		m_name(&m, target);
		m_a(&m, 1, 1, 1, 1, 1);
		if (extra == 0) {
			struct dns_response r;

			assert_int_equal(parse(&m, DNS_TYPE_A, &r), DNS_OK);
			assert_int_equal(r.cnames, DNS_MAX_CNAMES);
			assert_int_equal(r.naddrs, 1);
		} else {
			assert_parse_error(&m, DNS_TYPE_A, DNS_ERR_CNAME_CHAIN);
		}
	}
}

static void
test_reject_invalid_query_name(void **state)
{
	struct msg m;
	struct dns_response r;

	(void)state;
	m_start(&m, RESP(0), 0, 0, DNS_TYPE_A);
	assert_int_equal(dns_parse_response(m.b, m.len, QID, "bad..name", DNS_TYPE_A, &r),
		DNS_ERR_LABEL_EMPTY);
}

static void
test_status_strings(void **state)
{
	(void)state;
	for (int st = DNS_OK; st <= DNS_ERR_CNAME_CHAIN; st++)
		assert_string_not_equal(dns_status_str((enum dns_status)st), "unknown");
	assert_string_equal(dns_status_str((enum dns_status)999), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_a_byte_exact),
		cmocka_unit_test(test_query_aaaa_trailing_dot_byte_exact),
		cmocka_unit_test(test_query_name_limits),
		cmocka_unit_test(test_query_rejects_bad_names),
		cmocka_unit_test(test_query_rejects_other_types_and_small_buffers),
		cmocka_unit_test(test_response_several_a_min_ttl),
		cmocka_unit_test(test_response_aaaa_uncompressed_owner_any_case),
		cmocka_unit_test(test_response_cname_chain_with_pointers),
		cmocka_unit_test(test_response_cname_chain_out_of_order),
		cmocka_unit_test(test_response_ignores_records_off_the_chain),
		cmocka_unit_test(test_response_keeps_at_most_max_addrs),
		cmocka_unit_test(test_response_ttl_top_bit_is_zero),
		cmocka_unit_test(test_response_nxdomain_soa_negative_ttl),
		cmocka_unit_test(test_response_nxdomain_after_cname),
		cmocka_unit_test(test_response_nodata),
		cmocka_unit_test(test_response_error_rcodes),
		cmocka_unit_test(test_response_truncated_flag),
		cmocka_unit_test(test_response_to_built_query_round_trip),
		cmocka_unit_test(test_reject_short_header),
		cmocka_unit_test(test_reject_truncated_question_at_every_byte),
		cmocka_unit_test(test_reject_every_prefix_of_an_answer),
		cmocka_unit_test(test_reject_not_response_wrong_id_opcode_qdcount),
		cmocka_unit_test(test_reject_question_mismatch),
		cmocka_unit_test(test_reject_bad_pointers),
		cmocka_unit_test(test_reject_pointer_loops),
		cmocka_unit_test(test_reject_long_names_and_labels),
		cmocka_unit_test(test_reject_answer_count_lying),
		cmocka_unit_test(test_reject_rdlength_lying),
		cmocka_unit_test(test_reject_wrong_address_lengths),
		cmocka_unit_test(test_reject_bad_cname_and_soa),
		cmocka_unit_test(test_reject_cname_loops_and_long_chains),
		cmocka_unit_test(test_reject_invalid_query_name),
		cmocka_unit_test(test_status_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
