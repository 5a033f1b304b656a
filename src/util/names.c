/* Names a client may give. */
#include "basestation/names.h"

#include <string.h>

int name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

int name_json_ok(const json_t *v, size_t max)
{
	return json_is_string(v) &&
	       strlen(json_string_value(v)) == json_string_length(v) &&
	       name_ok(json_string_value(v), max);
}
