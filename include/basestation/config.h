/*
 * Configuration of `basestation serve`: defaults, flags, environment.
 * Flags win over environment variables, which win over defaults.
 */
#ifndef BASESTATION_CONFIG_H
#define BASESTATION_CONFIG_H

#include "basestation/settings.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

void config_defaults(struct config *c);
/* Apply BASESTATION_* environment variables. 0 ok, -1 bad value (message
 * printed to err). */
int config_from_env(struct config *c, FILE *err);
/* Parse serve flags from argv[0..argc). 0 ok, 1 --help printed, -1 usage
 * error (message printed to err). */
int config_from_args(struct config *c, int argc, char **argv, FILE *err);
void config_usage(FILE *f);
void config_free(struct config *c);

#endif
