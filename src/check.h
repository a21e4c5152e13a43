/* check: `vozagent-sync check`: is everything `run` needs there? One line per check. */
#ifndef VOZAGENT_CHECK_H
#define VOZAGENT_CHECK_H

#include <stdio.h>

/* The worst finding, most lasting first: main turns it into an exit status. */
enum check_result {
	CHECK_OK,
	CHECK_CONFIG,     /* the configuration is invalid, or the API refused its filters */
	CHECK_AUTH,       /* the API refused the key */
	CHECK_DATABASE,   /* PostgreSQL unreachable, or not usable as `run` needs it */
	CHECK_API,        /* the API unreachable or failing */
};

/*
 * Loads the configuration at path (NULL = the default) as `run` does, asks
 * the API for one call and inspects the database, changing nothing. Writes
 * "WHAT: OK ..." or "WHAT: FAIL: why: what to do" per check to out; never the key.
 */
enum check_result check_all(const char *path, FILE *out);

#endif
