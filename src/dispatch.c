/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *		The worker's jobs between rounds: claimed for the verified endpoints
 *		(endpoints.c), made ready, and which starts next, within the
 *		concurrency and rate limits.
 *
 * Each endpoint has a ready list; jobs start up to webhook.max_concurrency
 * in flight, at most webhook.endpoint_concurrency per endpoint, one endpoint
 * in turn, so a slow endpoint only ever holds its own slots. An endpoint
 * takes more jobs into memory while it has fewer than half a batch ready
 * ("room"); deliveries for the others wait in the table as due retries.
 *
 * A job's life: claimed in a round (queue.c, or a handshake here), made
 * ready after that round commits, started, finished by the engine
 * (http.c), recorded by a later round (record.c), then freed. The jobs of
 * one claim share a memory context, deleted with the last of them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "guc.h"
#include "webhook.h"
#include "worker.h"

static SPIPlanPtr plan_handshakes;
static SPIPlanPtr plan_render_args;

static void job_finished(Job *job);

/* The endpoint a user's format function is called with (and the event). $1 endpoint. */
static const char *sql_render_args =
"SELECT e FROM webhook.endpoint e WHERE e.id = $1";

/* Endpoints due for a handshake, not already in flight. $1 in flight. */
static const char *sql_handshakes =
"SELECT e.id, e.url, e.token, e.secret, e.headers::text, e.format,"
"  pg_catalog.encode(webhook._random_bytes(16), 'hex') AS challenge,"
"  e.verify_attempts, e.previous_secret, e.previous_secret_until"
" FROM webhook.endpoint e"
" WHERE e.state = 'pending' AND e.verify AND e.verify_next_at <= pg_catalog.now()"
"   AND NOT e.id = ANY ($1)"
" ORDER BY e.verify_next_at LIMIT 100";

void
WebhookDispatchPrepare(void)
{
	Oid			t_ids[] = {INT8ARRAYOID};
	Oid			t_one[] = {INT8OID};

	WebhookPrepare(&plan_handshakes, sql_handshakes, 1, t_ids);
	WebhookPrepare(&plan_render_args, sql_render_args, 1, t_one);
}

/* A batch of jobs claimed together: its own context under the worker's. */
static JobBatch *
new_batch(void)
{
	/*
	 * Blocks of at most 64 kB: a batch holds its jobs' events and bodies
	 * until the last is recorded, and several batches live at once; blocks
	 * doubling up to megabytes left most of the last one unused.
	 */
	MemoryContext cxt = AllocSetContextCreate(sched.worker_ctx, "webhook jobs",
											  0, 8 * 1024, 64 * 1024);
	JobBatch   *batch = MemoryContextAlloc(cxt, sizeof(JobBatch));

	batch->cxt = cxt;
	batch->njobs = 0;
	return batch;
}

static Job *
new_job(JobBatch *batch, JobKind kind)
{
	Job		   *job = MemoryContextAllocZero(batch->cxt, sizeof(Job));

	job->batch = batch;
	job->kind = kind;
	batch->njobs++;
	return job;
}

/*
 * Render a delivery's body with its endpoint's format function. When the
 * function is gone, fails or returns NULL, nothing is sent: the job carries
 * the error, and is recorded as failed (DESIGN section 9).
 */
static void
render_user_format(Job *job, Endpoint *ep, Datum event)
{
	Datum		arg = Int64GetDatum(job->endpoint_id);
	char	   *error = NULL;
	char	   *body = NULL;

	if (!OidIsValid(ep->format_fn))
		error = psprintf("format function %s(jsonb, webhook.endpoint) returning jsonb does not exist",
						 ep->format);
	else
	{
		Datum		args[2];
		Oid			argtypes[2] = {JSONBOID, WebhookRowType("endpoint")};
		bool		isnull;

		if (SPI_execute_plan(plan_render_args, &arg, NULL, false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "could not read endpoint %lld", (long long) job->endpoint_id);
		args[0] = event;
		args[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		body = WebhookCallUserFunction(ep->format_fn, 2, argtypes, JSONBOID, args, &error);
		if (error)
			error = psprintf("format function %s failed: %s", ep->format, error);
		else if (body == NULL)
			error = psprintf("format function %s returned NULL", ep->format);
	}
	if (error)
		job->render_error = MemoryContextStrdup(job->batch->cxt, error);
	else
	{
		job->body = MemoryContextStrdup(job->batch->cxt, body);
		job->body_len = strlen(body);
	}
}

/*
 * A claimed delivery's job, its body rendered (built-in formats) or to be
 * rendered by the user's function once SPI_tuptable is read (*unrendered).
 */
static Job *
add_job(JobBatch *batch, dlist_head *claimed, List **unrendered, int64 endpoint_id,
		int64 event_id, Datum event, bool isnull, bool once)
{
	Job		   *job = new_job(batch, JOB_DELIVERY);
	Endpoint   *ep = WebhookEndpoint(endpoint_id);
	bool		builtin = ep && ep->live && !ep->user_format;
	char	   *body = NULL;

	job->endpoint_id = endpoint_id;
	job->event_id = event_id;
	job->once = once;
	/* kept for the row of a held event, and for a user's format function */
	if (!isnull && (once || !builtin))
		job->event = DatumGetJsonbPCopy(event);
	if (builtin && !isnull)
		body = WebhookRenderBuiltin(ep->format, DatumGetJsonbP(event), ep->token);
	job->body = body;
	job->body_len = body ? strlen(body) : 0;
	if (body == NULL)
		*unrendered = lappend(*unrendered, job);
	dlist_push_tail(claimed, &job->node);
	return job;
}

/* Render the bodies add_job left to the users' format functions. */
static void
render_users(JobBatch *batch, List *unrendered)
{
	ListCell   *lc;

	foreach(lc, unrendered)
	{
		Job		   *job = lfirst(lc);
		Endpoint   *ep = WebhookEndpoint(job->endpoint_id);

		if (ep && ep->live && ep->user_format && job->event)
			render_user_format(job, ep, JsonbPGetDatum(job->event));
		else
			job->render_error = MemoryContextStrdup(batch->cxt, "no body was rendered");
		if (!job->once && job->event)
		{
			pfree(job->event);
			job->event = NULL;
		}
	}
	list_free(unrendered);
}

/*
 * The end of a claim's jobs: back to the caller's context (old); a batch of
 * no jobs is deleted, the others' users' formats rendered. Returns n.
 */
static int
batch_done(JobBatch *batch, MemoryContext old, int n, List *unrendered)
{
	MemoryContextSwitchTo(old);
	if (n == 0)
		MemoryContextDelete(batch->cxt);
	else
		render_users(batch, unrendered);
	return n;
}

/*
 * Make jobs from claimed delivery rows, with their bodies (column 5 is the
 * event: rendered here for a built-in format, by the user's function as its
 * owner otherwise); they join ready lists after commit. A fan-out's rows
 * also say whether the delivery is held in memory (column 6): the others
 * wait in the table, as due retries, for their endpoint to have room.
 */
int
WebhookCollectJobs(dlist_head *claimed)
{
	uint64		i;
	int			n = 0;
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		fanout = desc->natts >= 6;
	List	   *unrendered = NIL;
	JobBatch   *batch = new_batch();
	MemoryContext old = MemoryContextSwitchTo(batch->cxt);

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		Job		   *job;
		Datum		event;
		bool		isnull;

		if (fanout && !DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull)))
			continue;
		event = SPI_getbinval(tup, desc, 5, &isnull);
		job = add_job(batch, claimed, &unrendered, WebhookGetInt(tup, desc, 2),
					  WebhookGetInt(tup, desc, 3), event, isnull, false);
		job->id = WebhookGetInt(tup, desc, 1);
		job->attempts = (int) WebhookGetInt(tup, desc, 4);
		n++;
	}
	return batch_done(batch, old, n, unrendered);
}

/*
 * Make jobs of the events a claim holds in memory (held.c), from its rows
 * (event id, endpoint id, event, endpoint has room), grouped by event: an
 * event whose endpoints all have room becomes one job per endpoint, with no
 * row; the others (some endpoint without room, or none at all) are listed
 * in *fan_out, to be fanned out into rows. *max_event: the highest event id.
 */
int
WebhookCollectHeld(dlist_head *claimed, List **fan_out, int64 *max_event)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;
	uint64		nrows = SPI_processed;
	uint64		i = 0;
	int			n = 0;
	List	   *unrendered = NIL;
	JobBatch   *batch = new_batch();
	MemoryContext old = MemoryContextSwitchTo(batch->cxt);

	while (i < nrows)
	{
		int64		event_id = WebhookGetInt(SPI_tuptable->vals[i], desc, 1);
		uint64		end = i;
		bool		all_room = true;

		/* the event's rows, and whether each has an endpoint with room */
		for (; end < nrows && WebhookGetInt(SPI_tuptable->vals[end], desc, 1) == event_id; end++)
		{
			bool		isnull;
			Datum		room = SPI_getbinval(SPI_tuptable->vals[end], desc, 4, &isnull);

			if (isnull || !DatumGetBool(room))
				all_room = false;
		}
		*max_event = Max(*max_event, event_id);
		if (!all_room)
		{
			MemoryContextSwitchTo(old);
			*fan_out = WebhookIdAppend(*fan_out, event_id);
			MemoryContextSwitchTo(batch->cxt);
			i = end;
			continue;
		}
		for (; i < end; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			bool		isnull;
			Datum		event = SPI_getbinval(tup, desc, 3, &isnull);

			(void) add_job(batch, claimed, &unrendered, WebhookGetInt(tup, desc, 2),
						   event_id, event, isnull, true);
			n++;
		}
	}
	return batch_done(batch, old, n, unrendered);
}

/*
 * Add claimed jobs to their endpoints' ready lists; after commit. The jobs
 * of held events join their events first, all of them, so that none is
 * recorded before its siblings are known.
 */
void
WebhookEnqueueJobs(dlist_head *claimed)
{
	dlist_iter	it;

	dlist_foreach(it, claimed)
	{
		Job		   *job = dlist_container(Job, node, it.cur);

		if (job->once)
			WebhookHeldAdd(job);
	}
	while (!dlist_is_empty(claimed))
	{
		Job		   *job = dlist_container(Job, node, dlist_pop_head_node(claimed));
		Endpoint   *ep = WebhookEndpoint(job->endpoint_id);

		if (job->render_error)
		{
			/* nothing to send: recorded as failed by the next round */
			job_finished(job);
			continue;
		}
		if (ep == NULL || !ep->live)
		{
			/* cannot happen: the claim joined the endpoints of this round */
			WebhookReleaseJob(job);
			continue;
		}
		dlist_push_tail(&ep->ready, &job->node);
		ep->nready++;
		sched.nready++;
	}
}

/*
 * Free a job (started or not): what libcurl allocated for it, and its batch
 * once it was the batch's last job.
 */
static void
free_job(Job *job)
{
	JobBatch   *batch = job->batch;

	WebhookHttpRelease(&job->req);
	if (--batch->njobs == 0)
		MemoryContextDelete(batch->cxt);
}

/*
 * Drop a claimed delivery from memory; its row is handed back to the table
 * (in_flight = false) by the next round that commits. A held event's job
 * has no row: it finishes unsent, and is written as a pending delivery.
 */
void
WebhookReleaseJob(Job *job)
{
	MemoryContext old;

	if (job->once)
	{
		job->released = true;
		job_finished(job);
		return;
	}
	old = MemoryContextSwitchTo(sched.worker_ctx);
	sched.pending_release = WebhookIdAppend(sched.pending_release, job->id);
	MemoryContextSwitchTo(old);
	free_job(job);
}

void
WebhookFreeJobs(dlist_head *jobs)
{
	while (!dlist_is_empty(jobs))
		free_job(dlist_container(Job, node, dlist_pop_head_node(jobs)));
}

/* Claim handshakes that are due; they are started after commit. */
void
WebhookClaimHandshakes(dlist_head *claimed)
{
	Datum		v[1];
	uint64		i;
	JobBatch   *batch;
	MemoryContext old;

	v[0] = WebhookIdArray(sched.handshakes_in_flight);
	if (SPI_execute_plan(plan_handshakes, v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read endpoints due for a handshake");
	if (SPI_processed == 0)
		return;
	batch = new_batch();
	old = MemoryContextSwitchTo(batch->cxt);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Job		   *job = new_job(batch, JOB_HANDSHAKE);
		StringInfoData body;
		Datum		previous_until;
		bool		isnull;

		job->id = job->endpoint_id = WebhookGetInt(tup, desc, 1);
		job->endpoint_url = SPI_getvalue(tup, desc, 2);
		job->token = SPI_getvalue(tup, desc, 3);
		job->url = WebhookDeliveryUrl(job->endpoint_url, SPI_getvalue(tup, desc, 6), job->token);
		job->challenge = SPI_getvalue(tup, desc, 7);
		job->attempts = (int) WebhookGetInt(tup, desc, 8);
		job->keys = palloc0(sizeof(WebhookKeys));
		previous_until = SPI_getbinval(tup, desc, 10, &isnull);
		WebhookDecodeKeys(SPI_getvalue(tup, desc, 4), SPI_getvalue(tup, desc, 9),
						  isnull ? 0 : DatumGetTimestampTz(previous_until), job->keys);
		WebhookParseHeaders(SPI_getvalue(tup, desc, 5), &job->nheaders, &job->headers);
		initStringInfo(&body);
		appendStringInfoString(&body, "{\"token\": ");
		escape_json(&body, job->token);
		appendStringInfoString(&body, ", \"type\": \"url_verification\", \"challenge\": ");
		escape_json(&body, job->challenge);
		appendStringInfoChar(&body, '}');
		job->body = body.data;
		job->body_len = body.len;
		dlist_push_tail(claimed, &job->node);
	}
	MemoryContextSwitchTo(old);
}

/* Build the request of a job (signed headers included) and start it. */
static void
start_job(Job *job, Endpoint *ep)
{
	WebhookRequest *req = &job->req;
	bool		hs = job->kind == JOB_HANDSHAKE;
	const WebhookKeys *keys = hs ? job->keys : &ep->keys;
	int			nheaders = hs ? job->nheaders : ep->nheaders;
	char	  **headers = hs ? job->headers : ep->headers;

	if (hs)
		snprintf(job->webhook_id, sizeof(job->webhook_id), "vfy_%lld_%.8s", (long long) job->endpoint_id, job->challenge);
	else
		snprintf(job->webhook_id, sizeof(job->webhook_id), "msg_%lld_%lld", (long long) job->event_id, (long long) job->endpoint_id);
	req->url = hs ? job->url : ep->url;
	req->content_type = "application/json";
	req->body = job->body;
	req->body_len = job->body_len;
	req->id = job->webhook_id;
	req->keys = keys;
	req->nheaders = nheaders;
	req->headers = headers;
	req->timeout_ms = webhook_timeout;
	/* a delivery keeps what the setting says; a handshake's reply is judged */
	req->max_body = hs ? WEBHOOK_REPLY_CAP : (size_t) webhook_max_response_size;
	req->owner = job;
	WebhookHttpStart(req);
}

/*
 * Start as many ready jobs as the limits allow, one per endpoint in turn, so
 * every endpoint gets its share of webhook.max_concurrency.
 *
 * An endpoint with a rate_limit of N starts its deliveries at least 1/N s
 * apart, so no second holds more than N starts; its jobs wait in its ready
 * list meanwhile, holding no slot, and sched.next_start tells the worker's
 * wait when the first of them may go. With several workers in the database,
 * limits.c holds both limits across them.
 */
void
WebhookStartReadyJobs(void)
{
	bool		progress = true;

	sched.next_start = 0;
	while (progress && sched.nready > 0 && WebhookHttpInFlight() < webhook_max_concurrency)
	{
		HASH_SEQ_STATUS hs;
		Endpoint   *ep;

		progress = false;
		hash_seq_init(&hs, sched.endpoints);
		while ((ep = hash_seq_search(&hs)) != NULL)
		{
			Job		   *job;

			if (ep->nready == 0 || ep->inflight >= webhook_endpoint_concurrency)
				continue;
			if (WebhookHttpInFlight() >= webhook_max_concurrency)
			{
				hash_seq_term(&hs);
				break;
			}
			if (sched.part_n > 1)
			{
				/* the limits across the database's workers (limits.c) */
				TimestampTz retry_at;

				if (!WebhookLimitsTryStart(ep, GetCurrentTimestamp(), &retry_at))
				{
					if (retry_at > 0 && (sched.next_start == 0 || retry_at < sched.next_start))
						sched.next_start = retry_at;
					continue;
				}
			}
			else if (ep->rate_limit > 0)
			{
				TimestampTz now = GetCurrentTimestamp();

				if (now < ep->next_start)
				{
					if (sched.next_start == 0 || ep->next_start < sched.next_start)
						sched.next_start = ep->next_start;
					continue;
				}
				/* rounded up: N intervals never fit in less than a second */
				ep->next_start = now + (USECS_PER_SEC + ep->rate_limit - 1) / ep->rate_limit;
			}
			job = dlist_container(Job, node, dlist_pop_head_node(&ep->ready));
			ep->nready--;
			sched.nready--;
			ep->inflight++;
			start_job(job, ep);
			progress = true;
		}
	}
}

/* Free recorded jobs. */
void
WebhookReleaseRecorded(dlist_head *recorded)
{
	while (!dlist_is_empty(recorded))
	{
		Job		   *job = dlist_container(Job, node, dlist_pop_head_node(recorded));

		if (job->kind == JOB_DELIVERY)
		{
			Endpoint   *ep = WebhookEndpoint(job->endpoint_id);

			if (job->once)
				WebhookHeldRecorded(job->event_id);

			if (ep && !ep->live && ep->inflight == 0 && ep->nready == 0)
				hash_search(sched.endpoints, &job->endpoint_id, HASH_REMOVE, NULL);
		}
		free_job(job);
	}
}

/* A handshake finished: the endpoint may be claimed again once its result is recorded. */
static void
handshake_done(int64 endpoint_id)
{
	ListCell   *lc;

	foreach(lc, sched.handshakes_in_flight)
	{
		if (*(int64 *) lfirst(lc) == endpoint_id)
		{
			pfree(lfirst(lc));
			sched.handshakes_in_flight = foreach_delete_current(sched.handshakes_in_flight, lc);
			return;
		}
	}
}

/* Start the claimed handshakes. */
void
WebhookStartHandshakes(dlist_head *claimed)
{
	while (!dlist_is_empty(claimed))
	{
		Job		   *job = dlist_container(Job, node, dlist_pop_head_node(claimed));
		MemoryContext old = MemoryContextSwitchTo(sched.worker_ctx);

		sched.handshakes_in_flight = WebhookIdAppend(sched.handshakes_in_flight, job->endpoint_id);
		MemoryContextSwitchTo(old);
		start_job(job, NULL);
	}
}

/*
 * A job's request finished: its slot is free, and it waits to be recorded
 * (a handshake's endpoint may be claimed again once it is).
 */
void
WebhookJobDone(Job *job)
{
	if (job->kind == JOB_DELIVERY)
	{
		Endpoint   *ep = WebhookEndpoint(job->endpoint_id);

		if (ep)
		{
			ep->inflight--;
			if (sched.part_n > 1)
				WebhookLimitsDone(ep);
		}
	}
	else
		handshake_done(job->endpoint_id);
	job_finished(job);
}

/* A job is done with (sent, not sendable, or dropped from a held event): it waits to be recorded. */
static void
job_finished(Job *job)
{
	if (sched.nfinished++ == 0)
		sched.first_finished_at = GetCurrentTimestamp();
	dlist_push_tail(&sched.finished, &job->node);
}
