/* Names a client may give. */
#include "basestation/names.h"

#include <string.h>

int name_id_ok(const char *s, size_t len, size_t max)
{
	if (s == NULL || len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
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
