/*
 * failpoints: an LD_PRELOAD module that makes one library call fail on
 * demand, to reach error paths a healthy machine never takes.
 *   E2E_FAIL_UV_SIGNAL_INIT=N  uv_signal_init() fails (UV_ENOMEM) after N calls
 *                              (uv_loop_init makes one)
 *   E2E_FAIL_STRDUP=TEXT       strdup(TEXT) fails (ENOMEM); other strings copy
 *   E2E_FAIL_PQPREPARE=PATH    PQprepare() fails once, if PATH exists (removed)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <uv.h>

int
uv_signal_init(uv_loop_t *loop, uv_signal_t *handle)
{
	static int (*real)(uv_loop_t *, uv_signal_t *);
	static int calls;
	const char *after = getenv("E2E_FAIL_UV_SIGNAL_INIT");

	if (after != NULL && calls++ >= atoi(after))
		return UV_ENOMEM;
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "uv_signal_init");
	return real(loop, handle);
}

char *
strdup(const char *s)
{
	static char *(*real)(const char *);
	const char *fail = getenv("E2E_FAIL_STRDUP");

	if (fail != NULL && strcmp(s, fail) == 0) {
		errno = ENOMEM;
		return NULL;
	}
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "strdup");
	return real(s);
}

/*
 * E2E_FAIL_PQPREPARE=PATH: PQprepare() fails once while the file PATH exists,
 * which it then removes, so only the next preparation after creating it fails.
 */
PGresult *
PQprepare(PGconn *conn, const char *name, const char *query, int nparams,
    const Oid *types)
{
	static PGresult *(*real)(PGconn *, const char *, const char *, int, const Oid *);
	const char *marker = getenv("E2E_FAIL_PQPREPARE");

	if (marker != NULL && unlink(marker) == 0)
		return PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "PQprepare");
	return real(conn, name, query, nparams, types);
}
