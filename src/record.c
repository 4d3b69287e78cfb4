/*-------------------------------------------------------------------------
 *
 * record.c
 *		What came of the worker's requests: delivery results written back in
 *		batches, the retry policy, handshake verdicts, endpoints' failure
 *		bookkeeping, and the on_response functions.
 *
 * Results are rows, not errors: a delivery that got a 2xx is delivered;
 * 410 Gone disables the endpoint; anything else (another status, a timeout,
 * a connection error) is retried on webhook.retry_schedule with jitter,
 * waiting at least what a 429 or 503 asked with Retry-After, and failed
 * when the schedule is used up.
 *
 * A handshake is judged by handshake.c, on the same schedule.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "guc.h"
#include "status.h"
#include "webhook.h"
#include "worker.h"

static SPIPlanPtr plan_record;
static SPIPlanPtr plan_response_args;
static SPIPlanPtr plan_endpoint_ok;
static SPIPlanPtr plan_endpoint_fail;
static SPIPlanPtr plan_endpoint_gone;

/* Write back a batch of delivery results. */
static const char *sql_record =
"UPDATE webhook.delivery d SET"
"  status = u.status, attempts = d.attempts + 1, in_flight = false,"
"  next_attempt_at = CASE WHEN u.delay_ms IS NULL THEN d.next_attempt_at"
"                    ELSE pg_catalog.now() + u.delay_ms * interval '1 millisecond' END,"
"  response_status = u.rs, response_headers = u.rh::jsonb, response_body = u.rb,"
"  last_error = u.err,"
"  delivered_at = CASE WHEN u.status = 'delivered' THEN pg_catalog.now() END,"
"  attempted_at = pg_catalog.now(),"
"  duration = u.dur_us * interval '1 microsecond'"
" FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[]),"
"   pg_catalog.unnest($3::bigint[]), pg_catalog.unnest($4::integer[]), pg_catalog.unnest($5::text[]),"
"   pg_catalog.unnest($6::text[]), pg_catalog.unnest($7::text[]), pg_catalog.unnest($8::bigint[]))"
"   AS u(id, status, delay_ms, rs, rh, rb, err, dur_us)"
" WHERE d.id = u.id AND d.id = ANY ($1)";

/* What an on_response function is called with. $1 delivery. */
static const char *sql_response_args =
"SELECT d FROM webhook.delivery d WHERE d.id = $1";

static const char *sql_endpoint_ok =
"UPDATE webhook.endpoint SET failing_since = NULL"
" WHERE id = ANY ($1) AND failing_since IS NOT NULL";

/* Note failures; disable endpoints failing with no success for too long. $2 seconds, 0 never. */
static const char *sql_endpoint_fail =
"UPDATE webhook.endpoint SET"
"  failing_since = coalesce(failing_since, pg_catalog.now()),"
"  state = CASE WHEN $2 > 0 AND state = 'verified'"
"               AND failing_since <= pg_catalog.now() - $2 * interval '1 second'"
"          THEN 'disabled' ELSE state END,"
"  state_reason = CASE WHEN $2 > 0 AND state = 'verified'"
"               AND failing_since <= pg_catalog.now() - $2 * interval '1 second'"
"          THEN 'failing with no success since ' || failing_since ELSE state_reason END,"
"  updated_at = pg_catalog.now()"
" WHERE id = ANY ($1) AND (failing_since IS NULL OR"
"   ($2 > 0 AND state = 'verified' AND failing_since <= pg_catalog.now() - $2 * interval '1 second'))";

static const char *sql_endpoint_gone =
"UPDATE webhook.endpoint SET state = 'disabled',"
"  state_reason = 'the endpoint answered 410 Gone', updated_at = pg_catalog.now()"
" WHERE id = ANY ($1) AND state = 'verified'";

void
WebhookRecordPrepare(void)
{
	Oid			t_record[] = {INT8ARRAYOID, TEXTARRAYOID, INT8ARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	Oid			t_one[] = {INT8OID};
	Oid			t_ids[] = {INT8ARRAYOID};
	Oid			t_fail[] = {INT8ARRAYOID, INT4OID};

	WebhookPrepare(&plan_record, sql_record, 8, t_record);
	WebhookHandshakePrepare();
	WebhookPrepare(&plan_response_args, sql_response_args, 1, t_one);
	WebhookPrepare(&plan_endpoint_ok, sql_endpoint_ok, 1, t_ids);
	WebhookPrepare(&plan_endpoint_fail, sql_endpoint_fail, 2, t_fail);
	WebhookPrepare(&plan_endpoint_gone, sql_endpoint_gone, 1, t_ids);
}

/* The endpoint's on_response function, if it has one. */
static Oid
on_response_of(int64 endpoint_id)
{
	Endpoint   *ep = WebhookEndpoint(endpoint_id);

	return ep ? ep->on_response : InvalidOid;
}

/*
 * The retry policy, of deliveries and handshakes: the delay before the next
 * attempt, at least at_least_ms, or -1 when the schedule is used up.
 */
int64
WebhookRetryDelay(int attempts_made, int64 at_least_ms)
{
	int64		ms;
	double		jitter;

	if (attempts_made > webhook_schedule.count)
		return -1;
	ms = webhook_schedule.delay_ms[attempts_made - 1];
	jitter = 0.8 + 0.4 * pg_prng_double(&pg_global_prng_state);
	ms = (int64) (ms * jitter);
	return Max(ms, at_least_ms);
}

/*
 * Call an on_response function as its owner (call_user_function), with the
 * delivery as recorded; the error text, or NULL.
 */
static char *
call_on_response(Job *job, Oid fn, int status, const char *headers, const char *body)
{
	Datum		arg = Int64GetDatum(job->id);
	Datum		args[4];
	bool		isnull;
	char	   *error;

	if (SPI_execute_plan(plan_response_args, &arg, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read delivery %lld", (long long) job->id);
	args[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	args[1] = Int32GetDatum(status);
	args[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(headers));
	args[3] = CStringGetTextDatum(body);
	{
		Oid			argtypes[4] = {WebhookRowType("delivery"), INT4OID, JSONBOID, TEXTOID};

		(void) WebhookCallUserFunction(fn, 4, argtypes, InvalidOid, args, &error);
	}
	if (error == NULL)
		return NULL;
	return psprintf("on_response %s failed: %s", get_func_name(fn), error);
}

/* Record the finished requests in the current transaction. */
void
WebhookRecordResults(dlist_head *done)
{
	int			n = 0;
	int			cap = 0;
	Datum	   *ids = NULL,
			   *status = NULL,
			   *delay = NULL,
			   *rs = NULL,
			   *rh = NULL,
			   *rb = NULL,
			   *err = NULL,
			   *dur = NULL;
	bool	   *n_delay = NULL,
			   *n_rs = NULL,
			   *n_rh = NULL,
			   *n_rb = NULL,
			   *n_err = NULL;
	List	   *ok_eps = NIL;
	List	   *fail_eps = NIL;
	List	   *gone_eps = NIL;
	dlist_iter	it;
	struct
	{
		Job		   *job;
		char	   *headers;
		char	   *body;
	}		   *calls;
	int			ncalls = 0;

	dlist_foreach(it, done)
		cap++;
	if (cap == 0)
		return;
	calls = palloc(sizeof(*calls) * cap);

#define ALLOC_COL(a) a = palloc0(sizeof(Datum) * cap)
#define ALLOC_NUL(a) a = palloc0(sizeof(bool) * cap)
	ALLOC_COL(ids);
	ALLOC_COL(status);
	ALLOC_COL(delay);
	ALLOC_COL(rs);
	ALLOC_COL(rh);
	ALLOC_COL(rb);
	ALLOC_COL(err);
	ALLOC_COL(dur);
	ALLOC_NUL(n_delay);
	ALLOC_NUL(n_rs);
	ALLOC_NUL(n_rh);
	ALLOC_NUL(n_rb);
	ALLOC_NUL(n_err);

	dlist_foreach(it, done)
	{
		Job		   *job = dlist_container(Job, node, it.cur);
		WebhookRequest *req = &job->req;
		bool		got_response = req->outcome == WEBHOOK_HTTP_RESPONSE;
		int64		retry_after = 0;
		char	   *hjson = got_response ? WebhookResponseHeaders(req, &retry_after) : NULL;
		char	   *body = got_response ? WebhookResponseBody(req) : NULL;
		char	   *error = NULL;

		if (job->kind == JOB_HANDSHAKE)
		{
			WebhookStoreHandshake(job->id, job->endpoint_url, job->token,
								  WebhookJudgeHandshake(got_response ? (int) req->status : -1, body,
														got_response ? NULL : WebhookHttpError(req),
														job->challenge,
														WebhookRetryDelay(job->attempts + 1, retry_after)));
			continue;
		}

		ids[n] = Int64GetDatum(job->id);
		dur[n] = Int64GetDatum(req->duration_us);
		if (job->render_error)
		{
			/* not sent: failed at once, not the endpoint's fault, redeliver once fixed */
			status[n] = CStringGetTextDatum("failed");
			n_delay[n] = n_rs[n] = n_rh[n] = n_rb[n] = true;
			err[n] = CStringGetTextDatum(job->render_error);
			WebhookStatusResult(WEBHOOK_RESULT_FAILED);
			n++;
			continue;
		}
		if (got_response)
		{
			rs[n] = Int32GetDatum((int32) req->status);
			rh[n] = CStringGetTextDatum(hjson);
			rb[n] = CStringGetTextDatum(body);
		}
		else
		{
			n_rs[n] = n_rh[n] = n_rb[n] = true;
			error = pstrdup(WebhookHttpError(req));
		}

		if (got_response && OidIsValid(on_response_of(job->endpoint_id)))
		{
			calls[ncalls].job = job;
			calls[ncalls].headers = hjson;
			calls[ncalls].body = body;
			ncalls++;
		}

		if (got_response && req->status >= 200 && req->status < 300)
		{
			status[n] = CStringGetTextDatum("delivered");
			n_delay[n] = true;
			WebhookStatusResult(WEBHOOK_RESULT_DELIVERED);
			ok_eps = WebhookIdAppend(ok_eps, job->endpoint_id);
		}
		else
		{
			int64		d = -1;

			if (got_response && req->status == 410)
				gone_eps = WebhookIdAppend(gone_eps, job->endpoint_id);
			else
			{
				d = WebhookRetryDelay(job->attempts + 1,
								(req->status == 429 || req->status == 503) ? retry_after : 0);
				fail_eps = WebhookIdAppend(fail_eps, job->endpoint_id);
			}
			if (got_response && error == NULL)
				error = psprintf("HTTP %ld", req->status);
			if (d < 0)
			{
				status[n] = CStringGetTextDatum("failed");
				n_delay[n] = true;
				WebhookStatusResult(WEBHOOK_RESULT_FAILED);
			}
			else
			{
				status[n] = CStringGetTextDatum("pending");
				delay[n] = Int64GetDatum(d);
				sched.due_stale = true;
				WebhookStatusResult(WEBHOOK_RESULT_RETRIED);
			}
		}
		if (error)
			err[n] = CStringGetTextDatum(error);
		else
			n_err[n] = true;
		n++;
	}

	if (n > 0)
	{
		Datum		v[8];

		v[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		v[1] = PointerGetDatum(construct_array(status, n, TEXTOID, -1, false, TYPALIGN_INT));
		v[2] = PointerGetDatum(construct_md_array(delay, n_delay, 1, &n, (int[]) {1}, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		v[3] = PointerGetDatum(construct_md_array(rs, n_rs, 1, &n, (int[]) {1}, INT4OID, 4, true, TYPALIGN_INT));
		v[4] = PointerGetDatum(construct_md_array(rh, n_rh, 1, &n, (int[]) {1}, TEXTOID, -1, false, TYPALIGN_INT));
		v[5] = PointerGetDatum(construct_md_array(rb, n_rb, 1, &n, (int[]) {1}, TEXTOID, -1, false, TYPALIGN_INT));
		v[6] = PointerGetDatum(construct_md_array(err, n_err, 1, &n, (int[]) {1}, TEXTOID, -1, false, TYPALIGN_INT));
		v[7] = PointerGetDatum(construct_array(dur, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (SPI_execute_plan(plan_record, v, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not record deliveries");
	}

	/* on_response sees the delivery as recorded; its errors are recorded too */
	if (ncalls > 0)
		WebhookAllowSeqscans(true);
	for (int i = 0; i < ncalls; i++)
	{
		Job		   *job = calls[i].job;
		char	   *error = call_on_response(job, on_response_of(job->endpoint_id),
											 (int) job->req.status, calls[i].headers,
											 calls[i].body);

		if (error)
		{
			Oid			types[] = {TEXTOID, INT8OID};
			Datum		ev[2] = {CStringGetTextDatum(error), Int64GetDatum(job->id)};

			if (SPI_execute_with_args("UPDATE webhook.delivery SET last_error = $1 WHERE id = $2",
									  2, types, ev, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "could not record an on_response error");
		}
	}
	if (ncalls > 0)
		WebhookAllowSeqscans(false);
	if (ok_eps)
	{
		Datum		v[1] = {WebhookIdArray(ok_eps)};

		SPI_execute_plan(plan_endpoint_ok, v, NULL, false, 0);
	}
	if (fail_eps)
	{
		Datum		v[2] = {WebhookIdArray(fail_eps), Int32GetDatum(webhook_disable_after)};

		SPI_execute_plan(plan_endpoint_fail, v, NULL, false, 0);
	}
	if (gone_eps)
	{
		Datum		v[1] = {WebhookIdArray(gone_eps)};

		SPI_execute_plan(plan_endpoint_gone, v, NULL, false, 0);
	}
}
