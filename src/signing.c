/*-------------------------------------------------------------------------
 *
 * signing.c
 *		The webhook-signature header: "v1," followed by the base64 of
 *		HMAC-SHA256, keyed with the decoded secret, over "id.timestamp.body".
 *
 * Uses the server's pg_hmac_* and pg_b64_* so the module links no crypto
 * library of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "signing.h"

/* Decode "whsec_<base64>" into *key; false when it is not that. */
bool
WebhookDecodeSecret(const char *secret, WebhookKey *key)
{
	const char *b64;
	int			len;

	if (strncmp(secret, "whsec_", 6) != 0)
		return false;
	b64 = secret + 6;
	len = strlen(b64);
	if (pg_b64_dec_len(len) > WEBHOOK_MAX_KEY)
		return false;
	key->len = pg_b64_decode(b64, len, (char *) key->bytes, WEBHOOK_MAX_KEY);
	return key->len > 0;
}

/*
 * An endpoint's keys from its secret and, when given, the secret it had
 * before a rotation, kept until previous_until. False when the secret is
 * not a whsec_ secret (the key is then empty; an old secret that is not
 * one is left out).
 */
bool
WebhookDecodeKeys(const char *secret, const char *previous, TimestampTz previous_until,
				  WebhookKeys *keys)
{
	keys->previous_until = previous_until;
	if (previous == NULL || !WebhookDecodeSecret(previous, &keys->previous))
		keys->previous.len = 0;
	if (WebhookDecodeSecret(secret, &keys->current))
		return true;
	keys->current.len = 0;
	return false;
}

/*
 * The webhook-signature value of one request, palloc'd: "v1,<signature>",
 * or "v1,<new> v1,<old>" until a rotated-out secret's time is up. Standard
 * Webhooks receivers accept a request when any of the signatures matches,
 * so they can move to the new secret at any moment of that time.
 */
char *
WebhookSignature(const WebhookKeys *keys, const char *id, int64 timestamp,
				 const char *body, size_t body_len)
{
	char	   *sig = WebhookSign(&keys->current, id, timestamp, body, body_len);
	char	   *old;
	char	   *both;

	if (keys->previous.len == 0 || GetCurrentTimestamp() >= keys->previous_until)
		return sig;
	old = WebhookSign(&keys->previous, id, timestamp, body, body_len);
	both = psprintf("%s %s", sig, old);
	pfree(sig);
	pfree(old);
	return both;
}

/* The webhook-signature value for one request and one key, palloc'd. */
char *
WebhookSign(const WebhookKey *key, const char *id, int64 timestamp,
			const char *body, size_t body_len)
{
	pg_hmac_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		ts[32];
	char	   *out;
	int			enc_len;

	/*
	 * With OpenSSL the HMAC context is tracked by the current resource owner;
	 * the worker signs outside transactions, so give it one of its own.
	 */
	static ResourceOwner sign_owner = NULL;
	ResourceOwner saved = CurrentResourceOwner;

	if (CurrentResourceOwner == NULL)
	{
		if (sign_owner == NULL)
			sign_owner = ResourceOwnerCreate(NULL, "webhook signing");
		CurrentResourceOwner = sign_owner;
	}
	snprintf(ts, sizeof(ts), INT64_FORMAT, timestamp);
	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, key->bytes, key->len) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) id, strlen(id)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ".", 1) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ts, strlen(ts)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ".", 1) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) body, body_len) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		const char *why = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the request signature: %s", why)));
	}
	pg_hmac_free(ctx);
	CurrentResourceOwner = saved;

	enc_len = pg_b64_enc_len(sizeof(digest));
	out = palloc(3 + enc_len + 1);
	memcpy(out, "v1,", 3);
	enc_len = pg_b64_encode((const char *) digest, sizeof(digest), out + 3, enc_len);
	out[3 + enc_len] = '\0';
	return out;
}
