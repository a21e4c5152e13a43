/* buf: a growing byte buffer with a hard cap, like curl's dynbuf. */
#ifndef VOZAGENT_BUF_H
#define VOZAGENT_BUF_H

#include <stddef.h>

struct buf {
	char *data;     /* NULL until something is added */
	size_t len;
	size_t cap;
	size_t max;     /* len never exceeds it */
};

void buf_init(struct buf *b, size_t max);
/* Room for n more bytes after len: 0, or -1 past max or out of memory. */
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *p, size_t n);
void buf_free(struct buf *b);

#endif
