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
static SPIPlanPtr plan_record_once;
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
"  response_status = u.rs, response_headers = u.rh, response_body = u.rb,"
"  last_error = u.err,"
"  delivered_at = CASE WHEN u.status = 'delivered' THEN pg_catalog.now() END,"
"  attempted_at = pg_catalog.now(),"
"  duration = u.dur_us * interval '1 microsecond'"
" FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[]),"
"   pg_catalog.unnest($3::bigint[]), pg_catalog.unnest($4::integer[]), pg_catalog.unnest($5::jsonb[]),"
"   pg_catalog.unnest($6::text[]), pg_catalog.unnest($7::text[]), pg_catalog.unnest($8::bigint[]))"
"   AS u(id, status, delay_ms, rs, rh, rb, err, dur_us)"
" WHERE d.id = u.id AND d.id = ANY ($1)";

/*
 * Write the deliveries of held events (held.c), once, with their results,
 * and delete their events from the queue: their only record until now. An
 * attempt of 0 is a job not sent: dropped (a pending delivery, due now), or
 * still waiting or in flight (in_flight).
 */
static const char *sql_record_once =
"WITH r AS ("
"  INSERT INTO webhook.delivery (endpoint_id, event_id, event, status, attempts, next_attempt_at,"
"    response_status, response_headers, response_body, last_error, delivered_at, attempted_at,"
"    duration, in_flight)"
"  SELECT u.endpoint_id, u.event_id, u.event, u.status, u.attempts,"
"    pg_catalog.now() + coalesce(u.delay_ms, 0) * interval '1 millisecond',"
"    u.rs, u.rh, u.rb, u.err,"
"    CASE WHEN u.status = 'delivered' THEN pg_catalog.now() END,"
"    CASE WHEN u.attempts > 0 THEN pg_catalog.now() END,"
"    u.dur_us * interval '1 microsecond', u.in_flight"
"  FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::bigint[]),"
"    pg_catalog.unnest($3::jsonb[]), pg_catalog.unnest($4::text[]), pg_catalog.unnest($5::integer[]),"
"    pg_catalog.unnest($6::bigint[]), pg_catalog.unnest($7::integer[]), pg_catalog.unnest($8::jsonb[]),"
"    pg_catalog.unnest($9::text[]), pg_catalog.unnest($10::text[]), pg_catalog.unnest($11::bigint[]),"
"    pg_catalog.unnest($12::boolean[]))"
"    AS u(endpoint_id, event_id, event, status, attempts, delay_ms, rs, rh, rb, err, dur_us, in_flight)"
"  RETURNING id, event_id, endpoint_id),"
" q AS (DELETE FROM webhook.queue WHERE id = ANY ($2))"
" SELECT id, event_id, endpoint_id FROM r";

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
	JSONBARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	Oid			t_one[] = {INT8OID};
	Oid			t_ids[] = {INT8ARRAYOID};
	Oid			t_fail[] = {INT8ARRAYOID, INT4OID};

	Oid			t_once[] = {INT8ARRAYOID, INT8ARRAYOID, JSONBARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
	INT8ARRAYOID, INT4ARRAYOID, JSONBARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, BOOLARRAYOID};

	WebhookPrepare(&plan_record, sql_record, 8, t_record);
	WebhookPrepare(&plan_record_once, sql_record_once, lengthof(t_once), t_once);
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
call_on_response(Job *job, Oid fn, int status, Jsonb *headers, const char *body)
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
	args[2] = JsonbPGetDatum(headers);
	args[3] = CStringGetTextDatum(body);
	{
		Oid			argtypes[4] = {WebhookRowType("delivery"), INT4OID, JSONBOID, TEXTOID};

		(void) WebhookCallUserFunction(fn, 4, argtypes, InvalidOid, args, &error);
	}
	if (error == NULL)
		return NULL;
	return psprintf("on_response %s failed: %s", get_func_name(fn), error);
}

/*
 * Results to write, as the columns of the statement that writes them: the
 * UPDATE of delivery rows (id), or the INSERT of held events' deliveries
 * (endpoint, event_id, event, attempts).
 */
typedef struct Results
{
	int			n;
	Job		  **jobs;
	Datum	   *id,
			   *status,
			   *delay,
			   *rs,
			   *rh,
			   *rb,
			   *err,
			   *dur,
			   *endpoint,
			   *event_id,
			   *event,
			   *attempts,
			   *in_flight;
	bool	   *n_delay,
			   *n_rs,
			   *n_rh,
			   *n_rb,
			   *n_err,
			   *n_dur;
} Results;

static void
results_init(Results *r, int cap)
{
#define ALLOC_COL(a) r->a = palloc0(sizeof(Datum) * cap)
#define ALLOC_NUL(a) r->a = palloc0(sizeof(bool) * cap)
	r->n = 0;
	r->jobs = palloc(sizeof(Job *) * cap);
	ALLOC_COL(id);
	ALLOC_COL(status);
	ALLOC_COL(delay);
	ALLOC_COL(rs);
	ALLOC_COL(rh);
	ALLOC_COL(rb);
	ALLOC_COL(err);
	ALLOC_COL(dur);
	ALLOC_COL(endpoint);
	ALLOC_COL(event_id);
	ALLOC_COL(event);
	ALLOC_COL(attempts);
	ALLOC_COL(in_flight);
	ALLOC_NUL(n_delay);
	ALLOC_NUL(n_rs);
	ALLOC_NUL(n_rh);
	ALLOC_NUL(n_rb);
	ALLOC_NUL(n_err);
	ALLOC_NUL(n_dur);
}

#define INT8_ARRAY(d, nulls, n) \
	PointerGetDatum(construct_md_array(d, nulls, 1, &(n), (int[]) {1}, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE))
#define INT4_ARRAY(d, nulls, n) \
	PointerGetDatum(construct_md_array(d, nulls, 1, &(n), (int[]) {1}, INT4OID, 4, true, TYPALIGN_INT))
#define TEXT_ARRAY(d, nulls, n) \
	PointerGetDatum(construct_md_array(d, nulls, 1, &(n), (int[]) {1}, TEXTOID, -1, false, TYPALIGN_INT))
#define JSONB_ARRAY(d, nulls, n) \
	PointerGetDatum(construct_md_array(d, nulls, 1, &(n), (int[]) {1}, JSONBOID, -1, false, TYPALIGN_INT))

/* UPDATE the delivery rows of r. */
static void
write_rows(Results *r)
{
	Datum		v[8];

	v[0] = INT8_ARRAY(r->id, NULL, r->n);
	v[1] = TEXT_ARRAY(r->status, NULL, r->n);
	v[2] = INT8_ARRAY(r->delay, r->n_delay, r->n);
	v[3] = INT4_ARRAY(r->rs, r->n_rs, r->n);
	v[4] = JSONB_ARRAY(r->rh, r->n_rh, r->n);
	v[5] = TEXT_ARRAY(r->rb, r->n_rb, r->n);
	v[6] = TEXT_ARRAY(r->err, r->n_err, r->n);
	v[7] = INT8_ARRAY(r->dur, NULL, r->n);
	if (SPI_execute_plan(plan_record, v, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record deliveries");
}

/* INSERT the deliveries of r, held events' jobs, and note their ids. */
static void
write_once(Results *r)
{
	Datum		v[12];
	uint64		i;

	v[0] = INT8_ARRAY(r->endpoint, NULL, r->n);
	v[1] = INT8_ARRAY(r->event_id, NULL, r->n);
	v[2] = JSONB_ARRAY(r->event, NULL, r->n);
	v[3] = TEXT_ARRAY(r->status, NULL, r->n);
	v[4] = INT4_ARRAY(r->attempts, NULL, r->n);
	v[5] = INT8_ARRAY(r->delay, r->n_delay, r->n);
	v[6] = INT4_ARRAY(r->rs, r->n_rs, r->n);
	v[7] = JSONB_ARRAY(r->rh, r->n_rh, r->n);
	v[8] = TEXT_ARRAY(r->rb, r->n_rb, r->n);
	v[9] = TEXT_ARRAY(r->err, r->n_err, r->n);
	v[10] = INT8_ARRAY(r->dur, r->n_dur, r->n);
	v[11] = PointerGetDatum(construct_array(r->in_flight, r->n, BOOLOID, 1, true, TYPALIGN_CHAR));
	if (SPI_execute_plan(plan_record_once, v, NULL, false, 0) != SPI_OK_SELECT ||
		SPI_processed != (uint64) r->n)
		elog(ERROR, "could not record deliveries");
	/* the rows come back in the order given; matched by event and endpoint all the same */
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		event_id = WebhookGetInt(tup, desc, 2);
		int64		endpoint_id = WebhookGetInt(tup, desc, 3);
		int			j = (int) i;

		if (r->jobs[j]->event_id != event_id || r->jobs[j]->endpoint_id != endpoint_id)
		{
			for (j = 0; j < r->n; j++)
				if (r->jobs[j]->event_id == event_id && r->jobs[j]->endpoint_id == endpoint_id)
					break;
			if (j == r->n)
				elog(ERROR, "recorded a delivery of no job");
		}
		if (DatumGetBool(r->in_flight[j]))
			r->jobs[j]->row_id = WebhookGetInt(tup, desc, 1);
		else
			r->jobs[j]->id = WebhookGetInt(tup, desc, 1);
	}
}

/*
 * The jobs of held events in *done are recorded now; their events are
 * written at once, so their other jobs, still waiting or in flight, get rows
 * in flight: added to *once.
 */
static List *
held_siblings(dlist_head *done)
{
	dlist_iter	it;
	List	   *events = NIL;
	List	   *siblings = NIL;

	dlist_foreach(it, done)
	{
		Job		   *job = dlist_container(Job, node, it.cur);

		if (job->once)
			job->recording = true;
	}
	dlist_foreach(it, done)
	{
		Job		   *job = dlist_container(Job, node, it.cur);
		ListCell   *lc;
		bool		seen = false;

		if (!job->once)
			continue;
		foreach(lc, events)
			if (*(int64 *) lfirst(lc) == job->event_id)
				seen = true;
		if (seen)
			continue;
		events = WebhookIdAppend(events, job->event_id);
		siblings = list_concat(siblings, WebhookHeldSiblings(job));
	}
	return siblings;
}

/* Record the finished requests in the current transaction. */
void
WebhookRecordResults(dlist_head *done)
{
	Results		rows;
	Results		once;
	List	   *ok_eps = NIL;
	List	   *fail_eps = NIL;
	List	   *gone_eps = NIL;
	dlist_iter	it;
	struct
	{
		Job		   *job;
		Jsonb	   *headers;
		char	   *body;
	}		   *calls;
	int			ncalls = 0;
	int			cap = 0;
	List	   *siblings;
	ListCell   *lc;

	dlist_foreach(it, done)
		cap++;
	if (cap == 0)
		return;
	siblings = held_siblings(done);
	cap += list_length(siblings);
	calls = palloc(sizeof(*calls) * cap);
	results_init(&rows, cap);
	results_init(&once, cap);
	foreach(lc, siblings)
	{
		Job		   *job = lfirst(lc);
		int			n = once.n++;

		once.jobs[n] = job;
		once.endpoint[n] = Int64GetDatum(job->endpoint_id);
		once.event_id[n] = Int64GetDatum(job->event_id);
		once.event[n] = JsonbPGetDatum(job->event);
		once.status[n] = CStringGetTextDatum("pending");
		once.in_flight[n] = BoolGetDatum(true);
		once.n_delay[n] = once.n_rs[n] = once.n_rh[n] = once.n_rb[n] = once.n_err[n] =
			once.n_dur[n] = true;
	}

	dlist_foreach(it, done)
	{
		Job		   *job = dlist_container(Job, node, it.cur);
		WebhookRequest *req = &job->req;
		bool		got_response = req->outcome == WEBHOOK_HTTP_RESPONSE;
		int64		retry_after = 0;
		Jsonb	   *hjson = got_response ? WebhookResponseHeaders(req, &retry_after) : NULL;
		char	   *body = got_response ? WebhookResponseBody(req) : NULL;
		char	   *error = NULL;
		Results    *r = job->once ? &once : &rows;
		int			n = r->n;

		if (job->kind == JOB_HANDSHAKE)
		{
			WebhookStoreHandshake(job->id, job->endpoint_url, job->token,
								  WebhookJudgeHandshake(got_response ? (int) req->status : -1, body,
														got_response ? NULL : WebhookHttpError(req),
														job->challenge,
														WebhookRetryDelay(job->attempts + 1, retry_after)));
			continue;
		}

		r->jobs[n] = job;
		r->id[n] = Int64GetDatum(job->id);
		r->endpoint[n] = Int64GetDatum(job->endpoint_id);
		r->event_id[n] = Int64GetDatum(job->event_id);
		r->event[n] = JsonbPGetDatum(job->event);
		r->attempts[n] = Int32GetDatum(job->attempts + 1);
		r->dur[n] = Int64GetDatum(req->duration_us);
		r->n++;
		if (job->released)
		{
			/* a held event's job dropped unsent: pending, in the table */
			r->status[n] = CStringGetTextDatum("pending");
			r->attempts[n] = Int32GetDatum(0);
			r->n_delay[n] = r->n_rs[n] = r->n_rh[n] = r->n_rb[n] = r->n_err[n] = r->n_dur[n] = true;
			sched.retry_hint = sched.due_stale = true;
			continue;
		}
		if (job->render_error)
		{
			/* not sent: failed at once, not the endpoint's fault, redeliver once fixed */
			r->status[n] = CStringGetTextDatum("failed");
			r->n_delay[n] = r->n_rs[n] = r->n_rh[n] = r->n_rb[n] = true;
			r->err[n] = CStringGetTextDatum(job->render_error);
			WebhookStatusResult(WEBHOOK_RESULT_FAILED);
			continue;
		}
		if (got_response)
		{
			r->rs[n] = Int32GetDatum((int32) req->status);
			r->rh[n] = JsonbPGetDatum(hjson);
			r->rb[n] = CStringGetTextDatum(body);
		}
		else
		{
			r->n_rs[n] = r->n_rh[n] = r->n_rb[n] = true;
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
			r->status[n] = CStringGetTextDatum("delivered");
			r->n_delay[n] = true;
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
				r->status[n] = CStringGetTextDatum("failed");
				r->n_delay[n] = true;
				WebhookStatusResult(WEBHOOK_RESULT_FAILED);
			}
			else
			{
				r->status[n] = CStringGetTextDatum("pending");
				r->delay[n] = Int64GetDatum(d);
				sched.due_stale = true;
				WebhookStatusResult(WEBHOOK_RESULT_RETRIED);
			}
		}
		if (error)
			r->err[n] = CStringGetTextDatum(error);
		else
			r->n_err[n] = true;
	}

	if (rows.n > 0)
		write_rows(&rows);
	if (once.n > 0)
		write_once(&once);

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
