/*-------------------------------------------------------------------------
 *
 * signing.h
 *		Standard Webhooks signatures with PostgreSQL's own HMAC and base64.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_SIGNING_H
#define WEBHOOK_SIGNING_H

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


#endif							/* WEBHOOK_SIGNING_H */
