/*-------------------------------------------------------------------------
 *
 * signing.h
 *		Standard Webhooks signatures with PostgreSQL's own HMAC and base64.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_SIGNING_H
#define WEBHOOK_SIGNING_H

#include "datatype/timestamp.h"

#define WEBHOOK_MAX_KEY 256

/* A decoded whsec_ secret. */
typedef struct WebhookKey
{
	int			len;
	uint8		bytes[WEBHOOK_MAX_KEY];
} WebhookKey;

/*
 * What signs an endpoint's requests: its secret, and after a rotation
 * (webhook.rotate_secret) the one before it, until previous_until.
 */
typedef struct WebhookKeys
{
	WebhookKey	current;
	WebhookKey	previous;		/* len 0: none */
	TimestampTz previous_until;
} WebhookKeys;

extern bool WebhookDecodeSecret(const char *secret, WebhookKey *key);
extern bool WebhookDecodeKeys(const char *secret, const char *previous,
							  TimestampTz previous_until, WebhookKeys *keys);
extern char *WebhookSign(const WebhookKey *key, const char *id, int64 timestamp,
						 const char *body, size_t body_len);
extern char *WebhookSignature(const WebhookKeys *keys, const char *id, int64 timestamp,
							  const char *body, size_t body_len);


#endif							/* WEBHOOK_SIGNING_H */
