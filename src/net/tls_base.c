/*
 * The reason for the last TLS failure, one static string for both TLS
 * layers (basestation/tls_base.h).
 */
#include <stdio.h>

#include "basestation/tls_base.h"

static char last_error[256];

const char *tls_error(void)
{
	return last_error;
}

void tls_set_error(const char *why)
{
	snprintf(last_error, sizeof(last_error), "%s", why);
}
