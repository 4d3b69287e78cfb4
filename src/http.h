/*-------------------------------------------------------------------------
 *
 * http.h
 *		Everything HTTP: URLs, request headers and signatures, the
 *		blocked-network check and the decoding of responses (http_message.c);
 *		the worker's asynchronous engine (libcurl's multi interface waited on
 *		with the latch) and the backends' synchronous one (http.c). Only
 *		those two files see libcurl.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_HTTP_H
#define WEBHOOK_HTTP_H

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "signing.h"

/* What a reply that is judged (a handshake, a moderation hook) may be. */
#define WEBHOOK_REPLY_CAP (64 * 1024)
#define WEBHOOK_HTTP_ERROR_SIZE 256

/* How a request ended. */
typedef enum WebhookHttpOutcome
{
	WEBHOOK_HTTP_RESPONSE,		/* a response came back: see status */
	WEBHOOK_HTTP_TIMEOUT,		/* webhook.timeout passed first */
	WEBHOOK_HTTP_FAILED			/* no response: see WebhookHttpError() */
} WebhookHttpOutcome;

/*
 * One signed POST. The caller fills the request fields and owns them; the
 * engine fills the results. The response buffers are malloc'd by libcurl's
 * callbacks and freed by WebhookHttpRelease().
 */
typedef struct WebhookRequest
{
	dlist_node	node;			/* in the engine's done list */
	void	   *owner;			/* the caller's object */

	/* the request */
	const char *url;
	const char *content_type;
	const char *body;
	size_t		body_len;
	const char *id;				/* webhook-id */
	const WebhookKeys *keys;	/* sign it (WebhookSignature) */
	int			nheaders;		/* the endpoint's "Name: value" lines */
	char	  **headers;
	long		timeout_ms;
	size_t		max_body;		/* most bytes of the response body kept */

	/* results */
	WebhookHttpOutcome outcome;
	long		status;			/* 0 when no response came back */
	int64		duration_us;
	bool		blocked;		/* refused by webhook.blocked_networks */
	char		errbuf[WEBHOOK_HTTP_ERROR_SIZE];
	char	   *resp;			/* body, at most max_body bytes (malloc'd) */
	size_t		resp_len;
	size_t		resp_alloc;
	char	   *hdrs;			/* header lines of the final response (malloc'd) */
	size_t		hdrs_len;
	size_t		hdrs_alloc;

	/* the engine's own */
	int			code;			/* libcurl's result code */
	void	   *easy;			/* libcurl's handle, in flight */
	void	   *header_list;	/* libcurl's list of the request's headers */
} WebhookRequest;

/* URLs and bodies */
extern char *WebhookUrlWithToken(const char *url, const char *token);
extern void WebhookFormField(StringInfo buf, const char *name, const char *value);
extern void WebhookParseHeaders(const char *json, int *n, char ***lines);

/* the worker's engine */
extern void WebhookHttpInit(void);
extern void WebhookHttpConfigure(void);
extern void WebhookHttpStart(WebhookRequest *req);
extern int	WebhookHttpInFlight(void);
extern int	WebhookHttpWait(long timeout_ms, dlist_head *done, bool wake_on_latch);

/* a backend's synchronous request */
extern void WebhookHttpPerform(WebhookRequest *req);

/* results */
extern void WebhookHttpRelease(WebhookRequest *req);
extern const char *WebhookHttpError(WebhookRequest *req);
extern char *WebhookResponseBody(WebhookRequest *req);
extern Jsonb *WebhookResponseHeaders(WebhookRequest *req, int64 *retry_after_ms);

/* http_message.c for http.c: a request's curl_slist, the blocked networks */
struct sockaddr;
extern void *WebhookRequestHeaders(const WebhookRequest *req);
extern bool WebhookSockaddrBlocked(const struct sockaddr *addr);
extern bool WebhookIpTextBlocked(const char *ip);

#endif							/* WEBHOOK_HTTP_H */
