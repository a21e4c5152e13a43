/*
 * curl_noproto: an LD_PRELOAD module that makes libcurl look like one that
 * cannot limit a transfer's protocols (CURLOPT_PROTOCOLS_STR and
 * CURLOPT_PROTOCOLS fail), as a libcurl older than 7.85 does for the first.
 * Every other option goes through to the real libcurl.
 */
#define _GNU_SOURCE
#define CURL_DISABLE_TYPECHECK
#define CURL_DISABLE_DEPRECATION  /* CURLOPT_PROTOCOLS is refused too */
#include <dlfcn.h>
#include <stdarg.h>

#include <curl/curl.h>

CURLcode
curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
	static CURLcode (*real)(CURL *, CURLoption, ...);
	va_list ap;
	void *arg;

	if (opt == CURLOPT_PROTOCOLS_STR || opt == CURLOPT_PROTOCOLS)
		return CURLE_UNKNOWN_OPTION;
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "curl_easy_setopt");
	/* long, pointer and curl_off_t are each one 64-bit register argument here */
	va_start(ap, opt);
	arg = va_arg(ap, void *);
	va_end(ap);
	return real(h, opt, arg);
}
