/*
 * A connection enters the open state, WebSocket or SSE stream alike: the
 * frame parser's policy, its address counted, its session opened and
 * counted, and (WebSocket) the connect frame. Below upgrade.c and sse.c,
 * which both end here.
 */
#include "conn_int.h"
#include "basestation/auth.h"
#include "basestation/log.h"
#include "basestation/net.h"
#include "basestation/proto.h"

#include <stdint.h>

void conn_open(struct conn *c, const struct auth_identity *id)
{
	c->since_ms = now_ms();
	c->last_rx = c->last_ping = mono_ms();
	/* The codec's policy: masked client frames, no reserved bits (RSV1
	 * only with permessage-deflate, on a message's first frame), no
	 * binary messages (1003), --max-message and --max-frames. */
	ws_parser_init(&c->parser, cs.cfg->max_message, 1);
	c->parser.max_frames = (uint32_t)cs.cfg->max_frames;
	c->parser.rsv1_ok = c->pmd.on; /* compressed messages */
	c->parser.binary_ok = 0;
	if (c->ip == NULL)
		c->ip = net_ip_hold(c->remote, IP_WS);
	/* The session remembers its token: it is closed when the token
	 * expires or is revoked. */
	session_open(&c->s, id);
	conn_entered(c);
	log_info("conn.open", "conn=%llu uid=%s role=%s remote=%s token=%s",
		 (unsigned long long)c->s.id, log_val(id->uid),
		 auth_role_name(id->role), c->remote,
		 id->prefix[0] ? id->prefix : "jwt");
	if (c->sse == NULL)
		proto_hello(&c->s, id->uid);
}
