/*
 * Fuzz target: a client's handshake as one byte stream through the proto
 * parsers, greeting -> RFC 1929 -> request, delivered in read-sized chunks
 * into a fixed handshake buffer the way conn does it.
 *
 * Input layout: data[0] and data[1] are alternating chunk sizes (0 = all
 * that is left), the low two bits of data[2] pick the server's method
 * preference, the rest is the stream. Alternating sizes reach every
 * two-part split of a message.
 *
 * Invariants checked: consumed is within the bytes given and the RFC size;
 * an OK result re-parses identically from exactly its own bytes and a
 * strict prefix of those is NEED_MORE; NEED_MORE never needs more than the
 * RFC maximum; an error stays the same error once more bytes arrive; a
 * parsed request encodes back to the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                              \
	do {                                                                                  \
		if (!(x)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                              \
		}                                                                             \
	} while (0)

enum stage {
	STAGE_GREETING,
	STAGE_AUTH,
	STAGE_REQUEST,
	STAGE_DONE
};

union msg {
	struct proto_greeting g;
	struct proto_userpass up;
	struct proto_request req;
};

/* Poisons out first so two parses of the same bytes compare with memcmp. */
static enum proto_status
parse_stage(enum stage st, const uint8_t *p, size_t len, union msg *out, size_t *consumed)
{
	memset(out, 0xA5, sizeof(*out));
	*consumed = (size_t)-1;
	switch (st) {
	case STAGE_GREETING:
		return proto_parse_greeting(p, len, &out->g, consumed);
	case STAGE_AUTH:
		return proto_parse_userpass(p, len, &out->up, consumed);
	case STAGE_REQUEST:
		return proto_parse_request(p, len, &out->req, consumed);
	case STAGE_DONE:
		break;
	}
	abort();
}

static size_t
stage_max(enum stage st)
{
	if (st == STAGE_GREETING)
		return PROTO_GREETING_MAX;
	if (st == STAGE_AUTH)
		return PROTO_USERPASS_MAX;
	return PROTO_REQUEST_MAX;
}

static void
check_ok(enum stage st, const uint8_t *p, size_t consumed, const union msg *m)
{
	union msg again;
	size_t c2;

	CHECK(consumed >= 2 && consumed <= stage_max(st));
	CHECK(parse_stage(st, p, consumed, &again, &c2) == PROTO_OK);
	CHECK(c2 == consumed);
	CHECK(memcmp(&again, m, sizeof(again)) == 0);
	CHECK(parse_stage(st, p, consumed - 1, &again, &c2) == PROTO_NEED_MORE);
}

/* Acting on a parsed request: everything conn and the logger would do. */
static void
check_request(const uint8_t *p, size_t consumed, const struct proto_request *r)
{
	uint8_t enc[PROTO_REQUEST_MAX];
	uint8_t reply[PROTO_REPLY_MAX];
	struct sockaddr_storage ss;
	struct socks_addr back;
	socklen_t sl;
	char text[1100];
	size_t n;

	CHECK(r->cmd == SOCKS_CMD_CONNECT || r->cmd == SOCKS_CMD_BIND ||
		r->cmd == SOCKS_CMD_UDP_ASSOCIATE);
	/* The wire form is canonical, so encoding gives back the input. */
	enc[0] = SOCKS_VERSION;
	enc[1] = r->cmd;
	enc[2] = 0;
	n = proto_encode_addr(enc + 3, sizeof(enc) - 3, &r->dst);
	CHECK(3 + n == consumed);
	CHECK(memcmp(enc, p, consumed) == 0);

	proto_addr_format(&r->dst, text, sizeof(text));
	CHECK(strlen(text) < sizeof(text));
	proto_addr_format(&r->dst, text, 5);
	CHECK(strlen(text) < 5);

	if (r->dst.atyp == SOCKS_ATYP_DOMAIN) {
		CHECK(r->dst.name_len > 0);
		CHECK(strlen(r->dst.name) == r->dst.name_len);
		CHECK(proto_addr_to_sockaddr(&r->dst, &ss, &sl) == -1);
		return;
	}
	CHECK(proto_addr_to_sockaddr(&r->dst, &ss, &sl) == 0);
	proto_addr_from_sockaddr(&back, (struct sockaddr *)&ss);
	CHECK(back.atyp == r->dst.atyp && back.port == r->dst.port);
	n = proto_encode_reply(reply, SOCKS_REP_SUCCEEDED, (struct sockaddr *)&ss);
	CHECK(n == 10 || n == 22);
	CHECK(reply[0] == SOCKS_VERSION && reply[2] == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t pref_sets[4][2] = {
		{ SOCKS_METHOD_NONE, SOCKS_METHOD_NONE },
		{ SOCKS_METHOD_PASSWORD, SOCKS_METHOD_PASSWORD },
		{ SOCKS_METHOD_PASSWORD, SOCKS_METHOD_NONE },
		{ SOCKS_METHOD_NONE, SOCKS_METHOD_PASSWORD },
	};
	uint8_t hs[PROTO_USERPASS_MAX]; /* as big as the largest message */
	uint8_t wide[PROTO_USERPASS_MAX + 600];
	const uint8_t *s, *prefs;
	size_t n, pos = 0, have = 0, chunk_no = 0;
	enum stage st = STAGE_GREETING;

	if (size < 3)
		return 0;
	prefs = pref_sets[data[2] & 3];
	s = data + 3;
	n = size - 3;

	while (st != STAGE_DONE && pos < n) {
		size_t k = data[chunk_no++ & 1];

		if (k == 0 || k > n - pos)
			k = n - pos;
		if (k > sizeof(hs) - have)
			k = sizeof(hs) - have;
		/* A full buffer with NEED_MORE would be a parser asking for
		 * more than the RFC allows; check_* below rules that out. */
		CHECK(k > 0);
		memcpy(hs + have, s + pos, k);
		have += k;
		pos += k;

		while (st != STAGE_DONE) {
			union msg m;
			size_t consumed, w;
			enum proto_status rc = parse_stage(st, hs, have, &m, &consumed);
			uint8_t out[PROTO_REPLY_MAX];
			uint8_t method;

			if (rc == PROTO_NEED_MORE) {
				CHECK(have < stage_max(st));
				break;
			}
			if (rc != PROTO_OK) {
				/* The verdict must not change once more bytes
				 * arrive: re-parse with the rest of the stream. */
				union msg m2;
				size_t c2;

				w = n - pos;
				if (w > sizeof(wide) - have)
					w = sizeof(wide) - have;
				memcpy(wide, hs, have);
				memcpy(wide + have, s + pos, w);
				CHECK(parse_stage(st, wide, have + w, &m2, &c2) == rc);
				CHECK(proto_status_str(rc) != NULL);
				out[0] = proto_rep_for_status(rc);
				CHECK(proto_rep_str(out[0]) != NULL);
				return 0;
			}

			CHECK(consumed <= have);
			check_ok(st, hs, consumed, &m);
			switch (st) {
			case STAGE_GREETING:
				CHECK(m.g.nmethods > 0);
				method = proto_choose_method(&m.g, prefs, 2);
				CHECK(method == SOCKS_METHOD_NO_ACCEPTABLE || method == prefs[0] ||
					method == prefs[1]);
				CHECK(proto_encode_method(out, method) == 2);
				if (method == SOCKS_METHOD_NO_ACCEPTABLE)
					return 0;
				st = method == SOCKS_METHOD_PASSWORD ? STAGE_AUTH : STAGE_REQUEST;
				break;
			case STAGE_AUTH:
				CHECK(m.up.ulen > 0);
				CHECK(m.up.user[m.up.ulen] == '\0');
				CHECK(m.up.pass[m.up.plen] == '\0');
				CHECK(consumed == 3u + m.up.ulen + m.up.plen);
				CHECK(proto_encode_auth_status(out, SOCKS_AUTH_STATUS_OK) == 2);
				st = STAGE_REQUEST;
				break;
			case STAGE_REQUEST:
				check_request(hs, consumed, &m.req);
				st = STAGE_DONE;
				break;
			case STAGE_DONE:
				abort();
			}
			/* Consume exactly the message; what follows is the next
			 * message (or, after the request, relay payload). */
			memmove(hs, hs + consumed, have - consumed);
			have -= consumed;
		}
	}
	return 0;
}
