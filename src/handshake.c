/*-------------------------------------------------------------------------
 *
 * handshake.c
 *		The verdict of a url_verification handshake, and its storing.
 *
 * A 2xx that echoes the challenge verifies the endpoint; no answer, a 429 or
 * a 5xx is tried again on the retry schedule (record.c's, waiting at least
 * what Retry-After asked) and leaves it unverified when the schedule is used
 * up; any other reply is final. SQL only stores the verdict.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "webhook.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(webhook_handshake_result);

static SPIPlanPtr plan_handshake;

/*
 * Store a handshake's verdict, if the endpoint still waits for it with the
 * url and token it was sent with (changed while the handshake was in flight,
 * it has another handshake due). $1 endpoint, $2 url, $3 token, $4 state,
 * $5 state_reason, $6 ms to the next try (NULL: none).
 */
static const char *sql_handshake =
"UPDATE webhook.endpoint SET state = $4, state_reason = $5,"
"  verified_at = CASE WHEN $4 = 'verified' THEN pg_catalog.now() ELSE verified_at END,"
"  failing_since = CASE WHEN $4 = 'verified' THEN NULL ELSE failing_since END,"
"  verify_attempts = verify_attempts + 1,"
"  verify_next_at = pg_catalog.now() + $6 * interval '1 millisecond',"
"  updated_at = pg_catalog.now()"
" WHERE id = $1 AND state = 'pending' AND url = $2 AND token = $3";
static Oid	t_handshake[] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID};

/* With the worker's other statements (and in a backend, at its first use). */
void
WebhookHandshakePrepare(void)
{
	WebhookPrepare(&plan_handshake, sql_handshake, lengthof(t_handshake), t_handshake);
}

/*
 * Does a reply that starts with '{' carry the challenge as its "challenge"
 * (reply::jsonb ->> 'challenge')? A reply that is not JSON does not: the
 * cast's error is caught in a subtransaction.
 */
static bool
json_echoes(const char *reply, const char *challenge)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 2);
		Datum		field;

		InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = DirectFunctionCall1(jsonb_in, CStringGetDatum(reply));
		fcinfo->args[0].isnull = false;
		fcinfo->args[1].value = CStringGetTextDatum("challenge");
		fcinfo->args[1].isnull = false;
		field = jsonb_object_field_text(fcinfo);
		ok = !fcinfo->isnull && strcmp(TextDatumGetCString(field), challenge) == 0;
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

/* Does the reply echo the challenge: as is, as a JSON string, or in a JSON object? */
static bool
echoes_challenge(const char *body, const char *challenge)
{
	const char *ws = " \t\r\n";
	size_t		start = strspn(body, ws);
	size_t		len = strlen(body + start);
	size_t		clen = strlen(challenge);
	char	   *reply;

	while (len > 0 && strchr(ws, body[start + len - 1]))
		len--;
	if ((len == clen && strncmp(body + start, challenge, clen) == 0) ||
		(len == clen + 2 && body[start] == '"' && body[start + len - 1] == '"' &&
		 strncmp(body + start + 1, challenge, clen) == 0))
		return true;
	if (len == 0 || body[start] != '{')
		return false;
	reply = pnstrdup(body + start, len);
	return json_echoes(reply, challenge);
}

/*
 * Judge a handshake's reply. status < 0: no response came back, error says
 * why. retry_ms: the retry policy's delay before the next try (-1: the
 * schedule is used up).
 */
HandshakeVerdict
WebhookJudgeHandshake(int status, const char *body, const char *error, const char *challenge,
				int64 retry_ms)
{
	HandshakeVerdict v = {"unverified", NULL, -1};

	if (status < 0 || status == 429 || status >= 500)
	{
		/* no answer, or a server in trouble: try again on the retry schedule */
		char	   *why = error ? pstrdup(error) : psprintf("HTTP %d", status);

		if (retry_ms < 0)
			v.reason = psprintf("handshake failed: %s", why);
		else
		{
			v.state = "pending";
			v.reason = psprintf("handshake failed, will retry: %s", why);
			v.next_ms = retry_ms;
		}
	}
	else if (status < 200 || status > 299)
		v.reason = psprintf("handshake answered HTTP %d", status);
	else if (body != NULL && echoes_challenge(body, challenge))
		v.state = "verified";
	else
		v.reason = pstrdup("handshake reply did not echo the challenge");
	return v;
}

/* Store a handshake's verdict (ignored if the endpoint changed meanwhile). */
void
WebhookStoreHandshake(int64 endpoint_id, const char *url, const char *token, HandshakeVerdict v)
{
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	if (plan_handshake == NULL)	/* in a backend: webhook._handshake_result() */
		WebhookHandshakePrepare();
	args[0] = Int64GetDatum(endpoint_id);
	args[1] = CStringGetTextDatum(url);
	args[2] = CStringGetTextDatum(token);
	args[3] = CStringGetTextDatum(v.state);
	args[4] = v.reason ? CStringGetTextDatum(v.reason) : (Datum) 0;
	if (v.reason == NULL)
		nulls[4] = 'n';
	args[5] = Int64GetDatum(v.next_ms);
	if (v.next_ms < 0)
		nulls[5] = 'n';
	if (SPI_execute_plan(plan_handshake, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record a handshake");
}

/*
 * webhook._handshake_result(endpoint_id, url, token, challenge, status, body,
 * error, retry_ms): judge and store a handshake's outcome as the worker does,
 * for the regression tests. status NULL: no response, error says why;
 * retry_ms < 0: no retries left.
 */
Datum
webhook_handshake_result(PG_FUNCTION_ARGS)
{
	int			status = PG_ARGISNULL(4) ? -1 : PG_GETARG_INT32(4);
	char	   *body = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));
	char	   *error = PG_ARGISNULL(6) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(6));
	HandshakeVerdict v;

	for (int i = 0; i < 8; i++)
		if (i != 4 && i != 5 && i != 6 && PG_ARGISNULL(i))
			PG_RETURN_VOID();
	v = WebhookJudgeHandshake(status, body, error, text_to_cstring(PG_GETARG_TEXT_PP(3)),
						PG_GETARG_INT64(7));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	WebhookStoreHandshake(PG_GETARG_INT64(0), text_to_cstring(PG_GETARG_TEXT_PP(1)),
					text_to_cstring(PG_GETARG_TEXT_PP(2)), v);
	SPI_finish();
	PG_RETURN_VOID();
}

