/*-------------------------------------------------------------------------
 *
 * http.h
 *		The worker's HTTP engine: libcurl's multi interface, its sockets fed
 *		into one epoll set that is waited on with the worker's latch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_HTTP_H
#define WEBHOOK_HTTP_H

#include <curl/curl.h>

#include "lib/ilist.h"

/*
 * One HTTP request. The caller fills url, body and headers and owns them;
 * the engine fills the result fields. The response buffers are malloc'd by
 * the curl callbacks and released with WebhookHttpRelease().
 */
typedef struct WebhookRequest
{
	dlist_node	node;			/* in the engine's done list */
	void	   *owner;			/* the caller's object */

	const char *url;
	const char *body;
	size_t		body_len;
	struct curl_slist *headers;
	long		timeout_ms;
	size_t		max_body;		/* most bytes of the response body kept */

	/* results */
	CURLcode	result;
	long		status;			/* 0 when no response came back */
	int64		duration_us;
	bool		blocked;		/* refused by webhook.blocked_networks */
	char		errbuf[CURL_ERROR_SIZE];
	char	   *resp;			/* body, at most resp_cap bytes (malloc'd) */
	size_t		resp_len;
	size_t		resp_cap;
	size_t		resp_alloc;
	char	   *hdrs;			/* header lines of the final response (malloc'd) */
	size_t		hdrs_len;
	size_t		hdrs_alloc;

	CURL	   *easy;
} WebhookRequest;

/* What a reply that is judged (a handshake, a moderation hook) may be. */
#define WEBHOOK_REPLY_CAP (64 * 1024)

extern void WebhookHttpInit(void);
extern void WebhookHttpConfigure(void);
extern void WebhookHttpStart(WebhookRequest *req);
extern void WebhookHttpPerform(WebhookRequest *req);
extern int	WebhookHttpInFlight(void);
extern int	WebhookHttpWait(long timeout_ms, dlist_head *done, bool wake_on_latch);
extern void WebhookHttpRelease(WebhookRequest *req);
extern const char *WebhookHttpError(WebhookRequest *req);

#endif							/* WEBHOOK_HTTP_H */
