/* utf8: the one strict UTF-8 check (RFC 3629) for every text that leaves the daemon. */
#include "utf8.h"

/*
 * How many bytes the character starting with c needs (0: c cannot start one),
 * and the range its second byte must fall in: that range is what excludes
 * overlong forms (E0, F0), surrogates (ED) and code points past U+10FFFF (F4).
 */
static size_t
utf8_need(unsigned char c, unsigned char *lo, unsigned char *hi)
{
	*lo = 0x80;
	*hi = 0xBF;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return 2;
	if (c >= 0xE0 && c <= 0xEF) {
		if (c == 0xE0)
			*lo = 0xA0;
		else if (c == 0xED)
			*hi = 0x9F;
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		if (c == 0xF0)
			*lo = 0x90;
		else if (c == 0xF4)
			*hi = 0x8F;
		return 4;
	}
	return 0;
}

/* How many of the n bytes at s follow the rules of the character they start (at most need). */
static size_t
utf8_good_prefix(const unsigned char *s, size_t n, size_t need, unsigned char lo,
    unsigned char hi)
{
	size_t i;

	if (n < 2 || need < 2)
		return n < 1 ? 0 : 1;
	if (s[1] < lo || s[1] > hi)
		return 1;
	for (i = 2; i < n && i < need; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			break;
	return i;
}

size_t
utf8_char_len(const unsigned char *s, size_t n)
{
	unsigned char lo, hi;
	size_t need;

	if (n == 0 || (need = utf8_need(s[0], &lo, &hi)) == 0 || n < need)
		return 0;
	return utf8_good_prefix(s, need, need, lo, hi) == need ? need : 0;
}

bool
utf8_is_cut(const unsigned char *s, size_t n)
{
	unsigned char lo, hi;
	size_t need;

	if (n == 0 || (need = utf8_need(s[0], &lo, &hi)) <= n)
		return false;
	return utf8_good_prefix(s, n, need, lo, hi) == n;
}

bool
utf8_is_valid(const unsigned char *s, size_t n)
{
	size_t i = 0, len;

	while (i < n) {
		if ((len = utf8_char_len(s + i, n - i)) == 0)
			return false;
		i += len;
	}
	return true;
}

void
utf8_repair(char *s)
{
	unsigned char *p = (unsigned char *)s;
	size_t n = 0, len;

	while (p[n] != '\0')
		n++;
	while (n > 0) {
		if ((len = utf8_char_len(p, n)) > 0) {
			p += len;
			n -= len;
		} else if (utf8_is_cut(p, n)) {
			*p = '\0';
			return;
		} else {
			*p++ = '?';
			n--;
		}
	}
}
