/* Names a client may give. */
#include "basestation/names.h"

#include <stdint.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at u (n bytes left), 0 when it
 * is not one: no overlong form, no surrogate, nothing past U+10FFFF. The
 * util layer's own (names from a URL path may be any bytes); the codec's
 * incremental validator (ws/utf8.c) is a layer above. */
static size_t utf8_seq(const unsigned char *u, size_t n)
{
	size_t len = u[0] < 0x80	     ? 1
		     : (u[0] & 0xe0) == 0xc0 ? 2
		     : (u[0] & 0xf0) == 0xe0 ? 3
		     : (u[0] & 0xf8) == 0xf0 ? 4
					     : 0;
	uint32_t cp;

	if (len == 0 || len > n)
		return 0;
	cp = len == 1 ? u[0] : u[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((u[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (u[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* UTF-8 without C0 controls, DEL or C1 controls (U+0080..U+009F). */
int name_id_ok(const char *s, size_t len, size_t max)
{
	const unsigned char *u = (const unsigned char *)s;

	if (s == NULL || len == 0 || len > max)
		return 0;
	for (size_t i = 0, k; i < len; i += k) {
		if ((k = utf8_seq(u + i, len - i)) == 0 || u[i] < 0x20 ||
		    u[i] == 0x7f || (u[i] == 0xc2 && u[i + 1] < 0xa0))
			return 0;
	}
	return 1;
}

int name_ok(const char *s, size_t max)
{
	return s != NULL && name_id_ok(s, strlen(s), max);
}

int name_json_ok(const json_t *v, size_t max)
{
	return json_is_string(v) &&
	       name_id_ok(json_string_value(v), json_string_length(v), max);
}
