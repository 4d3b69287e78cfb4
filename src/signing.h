/*-------------------------------------------------------------------------
 *
 * signing.h
 *		Standard Webhooks signatures with PostgreSQL's own HMAC and base64.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_SIGNING_H
#define WEBHOOK_SIGNING_H

#include <curl/curl.h>

#define WEBHOOK_MAX_KEY 256

/* A decoded whsec_ secret. */
typedef struct WebhookKey
{
	int			len;
	uint8		bytes[WEBHOOK_MAX_KEY];
} WebhookKey;

extern bool WebhookDecodeSecret(const char *secret, WebhookKey *key);
extern char *WebhookSign(const WebhookKey *key, const char *id, int64 timestamp,
						 const char *body, size_t body_len);

extern struct curl_slist *WebhookSignedHeaders(const WebhookKey *key, const char *id,
											   const char *content_type,
											   const char *body, size_t body_len,
											   int nheaders, char **headers);
extern void WebhookParseHeaders(const char *json, int *n, char ***lines);

#endif							/* WEBHOOK_SIGNING_H */
