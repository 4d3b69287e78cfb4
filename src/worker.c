/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The delivery worker: turns queued events into HTTP deliveries.
 *
 * One loop, three phases that never overlap a transaction with HTTP:
 *
 *	1. A round, in one short transaction: record the results of finished
 *	   requests, claim due retries and handshakes, claim a batch of queued
 *	   events and fan them out into deliveries (FOR UPDATE SKIP LOCKED),
 *	   purge old deliveries. The claimed work is kept in memory.
 *	2. Start requests, up to webhook.max_concurrency in flight and
 *	   webhook.endpoint_concurrency per endpoint, so a slow endpoint only
 *	   ever holds its own slots.
 *	3. Wait on the latch, postmaster death and curl's sockets together.
 *
 * A delivery held in memory has in_flight = true in its row; the flag is
 * cleared when its result is recorded, and at start-up for whatever a crash
 * left behind, which is then sent again (at-least-once). Deliveries for an
 * endpoint that already has a full backlog in memory are written with
 * in_flight = false and picked up as retries when it has room.
 *
 * Every write of the worker only records progress, so its transactions
 * commit asynchronously: a crash that loses a commit loses progress, and the
 * work is done again, never lost.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "mb/pg_wchar.h"

#include "guc.h"
#include "http.h"
#include "signing.h"
#include "webhook.h"

#define SAFETY_POLL_MS 10000	/* idle re-check, in case a wake-up was missed */
#define PURGE_INTERVAL_MS 60000
#define PURGE_BATCH 1000
#define ERROR_BACKOFF_MS 1000
#define RECORD_BATCH 256		/* record results once this many are waiting */
#define RECORD_DELAY_MS 10		/* ... or once the oldest has waited this long */
#define ROUND_GAP_MS 5			/* under load, claims at most this often */
#define TRIM_INTERVAL_MS 10000	/* hand freed heap back to the system this often */

typedef enum JobKind
{
	JOB_DELIVERY,
	JOB_HANDSHAKE
} JobKind;

/* A verified (or handshaking) endpoint as the worker knows it. */
typedef struct Endpoint
{
	int64		id;				/* hash key */
	bool		live;			/* verified at the last reload */
	char	   *url;			/* with ?token= for the channel format */
	Oid			on_response;	/* InvalidOid: none */
	char	   *format;			/* the format's name */
	bool		user_format;	/* a user's function, not a built-in */
	Oid			format_fn;		/* that function; InvalidOid when it is gone */
	WebhookKey	key;
	int			nheaders;
	char	  **headers;		/* "Name: value" lines */
	dlist_head	ready;			/* jobs waiting for a slot */
	int			nready;
	int			inflight;
} Endpoint;

/* One request to make: a delivery attempt or a handshake. */
typedef struct Job
{
	dlist_node	node;
	JobKind		kind;
	int64		id;				/* delivery id, or endpoint id for a handshake */
	int64		endpoint_id;
	int64		event_id;
	int			attempts;		/* attempts made before this one */
	char	   *url;
	char	   *body;
	int			body_len;
	char	   *challenge;		/* handshake: what must come back */
	char	   *token;			/* handshake: the token it was sent with */
	char	   *endpoint_url;	/* handshake: the url it was sent to */
	WebhookKey *key;			/* handshake: the endpoint's signing key */
	int			nheaders;		/* handshake: the endpoint's headers */
	char	  **headers;
	char	   *render_error;	/* the format function failed: nothing is sent */
	WebhookRequest req;
} Job;

static MemoryContext worker_ctx;	/* lives as long as the worker */
static MemoryContext round_ctx;		/* reset after every round */
static MemoryContext endpoint_ctx;	/* endpoint strings, replaced on reload */

static HTAB *endpoints = NULL;
static dlist_head finished = DLIST_STATIC_INIT(finished);	/* to record */
static int	nfinished = 0;
static TimestampTz first_finished_at;
static int	nready_total = 0;
static List *handshakes_in_flight = NIL;	/* endpoint ids */
static List *pending_release = NIL;	/* delivery ids to hand back to the table */

static bool queue_hint = true;	/* the queue may have rows */

/*
 * Where claims start in the queue's index. The queue is a FIFO: its rows are
 * deleted from the low end, and their index entries stay until a vacuum.
 * Scanned from the start, every claim walked them all: after a backlog of
 * 85,000 events, 235 leaf pages and 0.4 ms a claim, until autovacuum came by.
 * Claims start at claim_floor instead: no row below it can still appear.
 *
 * Ids are handed out before commit, so a row can commit after rows with
 * higher ids were claimed. A mark says when the floor may pass an id: the
 * queue sequence's last value L, read before mark_xid, the next transaction
 * id. A transaction that took an id up to L had its own id already (the
 * queue is only written by transactions that wrote before: a tracked table's
 * change, or _enqueue, which asks for its id first), so below mark_xid. Once
 * no transaction below mark_xid runs, every row up to L is committed or
 * gone; a claim that then takes all it can see leaves none, and the floor
 * moves to L + 1, after that round commits. Full checks claim from the start.
 */
static int64 claim_floor = 0;
static int64 floor_after_commit = -1;	/* set by a round, applied at its commit */
static bool mark_set = false;
static int64 mark_last;			/* the sequence's last value ... */
static TransactionId mark_xid;	/* ... read before this was the next xid */
static Oid	queue_relid = InvalidOid;	/* webhook.queue, when the plans were made */
static Oid	queue_seq = InvalidOid;	/* the sequence of webhook.queue.id */
static Oid	seq_filenode = InvalidOid;	/* its file at the last mark */
static bool claim_from_start = true;	/* this round's claim ignores the floor */
static bool round_claimed;		/* the last round ran a claim (fan-out or retries) */
static bool retry_hint = true;	/* deliveries may wait in the table, due now */
static bool due_stale = true;	/* next_due must be read again */
static bool due_partial = false;	/* next_due was read without some endpoints */
static bool endpoints_loaded = false;
static uint64 changes_seen;		/* WebhookChanges() at the last reload */
static TimestampTz next_full_check = 0;	/* reload and look at everything */
static TimestampTz next_due = 0;	/* earliest retry or handshake due */
static TimestampTz next_purge = 0;
static TimestampTz backoff_until = 0;	/* no rounds before this, after an error */

static bool plans_ready = false;	/* prepared since the last failed round */
static SPIPlanPtr plan_fanout;
static SPIPlanPtr plan_queued;
static SPIPlanPtr plan_retry;
static SPIPlanPtr plan_record;
static SPIPlanPtr plan_handshakes;
static SPIPlanPtr plan_handshake_result;
static SPIPlanPtr plan_release;
static SPIPlanPtr plan_endpoints;
static SPIPlanPtr plan_endpoint_ok;
static SPIPlanPtr plan_endpoint_fail;
static SPIPlanPtr plan_endpoint_gone;
static SPIPlanPtr plan_next_due;
static SPIPlanPtr plan_purge;
static SPIPlanPtr plan_render_args;
static SPIPlanPtr plan_response_args;

/*
 * The body, per built-in format; NULL for a user's format function, which
 * render_user_format() calls as its owner.
 */
#define RENDER_SQL(ev, ep) \
	"CASE " ep ".format " \
	"WHEN 'slackchat' THEN webhook.format_slackchat(" ev ", " ep ")::text " \
	"WHEN 'channel' THEN webhook.format_channel(" ev ", " ep ")::text " \
	"WHEN 'phraseanet' THEN webhook.format_phraseanet(" ev ", " ep ")::text " \
	"WHEN 'supabase' THEN webhook.format_supabase(" ev ", " ep ")::text END"

/*
 * The claims below take ids with "= ANY (ARRAY (SELECT ... LIMIT n FOR UPDATE
 * SKIP LOCKED))", not "IN (SELECT ...)": kept plans follow the statistics of
 * the moment they were made, and with a nearly empty queue the IN form can
 * become a semi join that runs the locking subquery once per queued row.
 */

/*
 * Claim a batch of queued events, turn each into one delivery per verified
 * endpoint whose filters match, and return them with the bodies of those to
 * be held in memory ($2: endpoints with room), and how many queue rows were
 * claimed. The INSERT is the outer statement so that its rows are rendered
 * as they are returned, not stored once more for a join. $1 batch size,
 * $3 the claim floor.
 */
static const char *sql_fanout =
"WITH ev AS ("
"  DELETE FROM webhook.queue AS x WHERE x.id = ANY (ARRAY ("
"    SELECT id FROM webhook.queue WHERE id >= $3 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))"
"  RETURNING x.id, x.type, x.update_type, x.channel, webhook._event(x) AS event)"
" INSERT INTO webhook.delivery (endpoint_id, event_id, event, in_flight)"
" SELECT e.id, ev.id, ev.event, e.id = ANY ($2)"
" FROM ev JOIN webhook.endpoint e ON e.state = 'verified'"
"  AND (e.events IS NULL OR ev.type = ANY (e.events) OR ev.update_type = ANY (e.events))"
"  AND (e.channels IS NULL OR ev.channel = ANY (e.channels))"
"  AND (e.keywords IS NULL OR ev.event->'message' = 'null' OR EXISTS ("
"       SELECT 1 FROM pg_catalog.unnest(e.keywords) AS k"
"       WHERE pg_catalog.strpos(pg_catalog.lower(ev.event->'message'->>'content'),"
"                               pg_catalog.lower(k)) > 0))"
" ORDER BY ev.id, e.id"
" RETURNING id, endpoint_id, event_id, 0,"
"  CASE WHEN in_flight THEN (SELECT " RENDER_SQL("event", "e")
"    FROM webhook.endpoint e WHERE e.id = endpoint_id) END,"
"  (SELECT pg_catalog.count(*) FROM ev), in_flight";

/*
 * Is anything left to claim, and from which id? Asked when a fan-out made no
 * deliveries. $1 the claim floor.
 */
static const char *sql_queued =
"SELECT id FROM webhook.queue WHERE id >= $1 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED";

/* Claim due deliveries of endpoints with room. $1 limit, $2 endpoints. */
static const char *sql_retry =
"WITH c AS ("
"  UPDATE webhook.delivery d SET in_flight = true"
"  WHERE d.id = ANY (ARRAY ("
"    SELECT id FROM webhook.delivery"
"    WHERE status = 'pending' AND NOT in_flight AND next_attempt_at <= pg_catalog.now()"
"      AND endpoint_id = ANY ($2)"
"    ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED))"
"  RETURNING d.id, d.endpoint_id, d.event_id, d.attempts, d.event)"
" SELECT c.id, c.endpoint_id, c.event_id, c.attempts, " RENDER_SQL("c.event", "e")
" FROM c JOIN webhook.endpoint e ON e.id = c.endpoint_id";

/* Write back a batch of delivery results. */
static const char *sql_record =
"UPDATE webhook.delivery d SET"
"  status = u.status, attempts = d.attempts + 1, in_flight = false,"
"  next_attempt_at = CASE WHEN u.delay_ms IS NULL THEN d.next_attempt_at"
"                    ELSE pg_catalog.now() + u.delay_ms * interval '1 millisecond' END,"
"  response_status = u.rs, response_headers = u.rh::jsonb, response_body = u.rb,"
"  last_error = u.err,"
"  delivered_at = CASE WHEN u.status = 'delivered' THEN pg_catalog.now() END,"
"  duration = u.dur_us * interval '1 microsecond'"
" FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[]),"
"   pg_catalog.unnest($3::bigint[]), pg_catalog.unnest($4::integer[]), pg_catalog.unnest($5::text[]),"
"   pg_catalog.unnest($6::text[]), pg_catalog.unnest($7::text[]), pg_catalog.unnest($8::bigint[]))"
"   AS u(id, status, delay_ms, rs, rh, rb, err, dur_us)"
" WHERE d.id = u.id AND d.id = ANY ($1)";

/* Endpoints due for a handshake, not already in flight. $1 in flight. */
static const char *sql_handshakes =
"SELECT e.id, e.url, e.token, e.secret, e.headers::text, e.format,"
"  pg_catalog.encode(webhook._random_bytes(16), 'hex') AS challenge,"
"  e.verify_attempts"
" FROM webhook.endpoint e"
" WHERE e.state = 'pending' AND e.verify AND e.verify_next_at <= pg_catalog.now()"
"   AND NOT e.id = ANY ($1)"
" ORDER BY e.verify_next_at LIMIT 100";

static const char *sql_handshake_result =
"SELECT webhook._handshake_result($1, $2, $3, $4, $5, $6, $7, $8)";

static const char *sql_release =
"UPDATE webhook.delivery SET in_flight = false WHERE id = ANY ($1) AND in_flight";

/* The user's functions come as OIDs: NULL, or 0 when they no longer exist. */
static const char *sql_endpoints =
"SELECT id, url, format, token, secret, headers::text,"
"  pg_catalog.to_regprocedure(on_response)::oid,"
"  CASE WHEN format NOT IN ('slackchat', 'channel', 'phraseanet', 'supabase')"
"   THEN coalesce(pg_catalog.to_regprocedure(format || '(jsonb, webhook.endpoint)')::oid, 0) END"
" FROM webhook.endpoint WHERE state = 'verified'";

/* What a user's format function is called with. $1 delivery. */
static const char *sql_render_args =
"SELECT d.event, e FROM webhook.delivery d JOIN webhook.endpoint e ON e.id = d.endpoint_id"
" WHERE d.id = $1";

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

/* When is the next retry or handshake due? $1 endpoints with room, $2 handshakes in flight. */
static const char *sql_next_due =
"SELECT least("
"  (SELECT next_attempt_at FROM webhook.delivery"
"    WHERE status = 'pending' AND NOT in_flight AND endpoint_id = ANY ($1)"
"    ORDER BY next_attempt_at LIMIT 1),"
"  (SELECT pg_catalog.min(verify_next_at) FROM webhook.endpoint"
"    WHERE state = 'pending' AND verify AND NOT id = ANY ($2)))";

static const char *sql_purge =
"DELETE FROM webhook.delivery WHERE id = ANY (ARRAY ("
"  SELECT id FROM webhook.delivery"
"  WHERE status <> 'pending' AND created_at < pg_catalog.now() - $1 * interval '1 second'"
"  LIMIT $2))";

static void start_handshakes(dlist_head *claimed);
static void release_job(Job *job);

/* Register the worker; called from _PG_init while preloading. */
void
WebhookRegisterWorker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "webhook", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "WebhookWorkerMain", BGW_MAXLEN);
	strlcpy(worker.bgw_name, WEBHOOK_WORKER_NAME, BGW_MAXLEN);
	strlcpy(worker.bgw_type, WEBHOOK_WORKER_NAME, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
clear_shared_latch(int code, Datum arg)
{
	SpinLockAcquire(&webhook_shared->mutex);
	webhook_shared->latch = NULL;
	webhook_shared->database = InvalidOid;
	SpinLockRelease(&webhook_shared->mutex);
}

/*
 * Prepare one of the worker's statements into *slot, freeing the plan it held
 * (plans are prepared again after a failed round: kept plans are not freed by
 * the rollback).
 *
 * The plans are generic, made once and kept until a table they read changes
 * (a vacuum or analyze replans them). Left to choose, the plan cache switched
 * to a custom plan per execution once the statistics moved: planning every
 * statement of every round, SQL functions parsed again for inlining, and the
 * queue's index probed past its dead entries for the planner's estimates. That
 * was a fifth of the worker's time under live load, and grew with the churn.
 */
static void
prepare(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan;

	if (*slot)
	{
		SPI_freeplan(*slot);
		*slot = NULL;
	}
	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare worker statement: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	*slot = plan;
}

/*
 * Prepare the worker's statements: in its first round, again after a failed
 * one, and when webhook.queue is a new table (the extension was dropped and
 * created again between two rounds). queue: webhook.queue as it is now.
 */
static void
prepare_plans(Oid queue)
{
	Oid			t_fanout[] = {INT4OID, INT8ARRAYOID, INT8OID};
	Oid			t_queued[] = {INT8OID};
	Oid			t_record[] = {INT8ARRAYOID, TEXTARRAYOID, INT8ARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	Oid			t_ids[] = {INT8ARRAYOID};
	Oid			t_fail[] = {INT8ARRAYOID, INT4OID};
	Oid			t_due[] = {INT8ARRAYOID, INT8ARRAYOID};
	Oid			t_hs[] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, INT8OID};
	Oid			t_purge[] = {INT4OID, INT4OID};

	if (plans_ready && queue == queue_relid)
		return;
	prepare(&plan_fanout, sql_fanout, 3, t_fanout);
	prepare(&plan_retry, sql_retry, 2, t_fanout);
	prepare(&plan_record, sql_record, 8, t_record);
	prepare(&plan_handshakes, sql_handshakes, 1, t_ids);
	prepare(&plan_handshake_result, sql_handshake_result, 8, t_hs);
	prepare(&plan_release, sql_release, 1, t_ids);
	prepare(&plan_endpoints, sql_endpoints, 0, NULL);
	prepare(&plan_endpoint_ok, sql_endpoint_ok, 1, t_ids);
	prepare(&plan_endpoint_fail, sql_endpoint_fail, 2, t_fail);
	prepare(&plan_endpoint_gone, sql_endpoint_gone, 1, t_ids);
	prepare(&plan_next_due, sql_next_due, 2, t_due);
	prepare(&plan_purge, sql_purge, 2, t_purge);
	prepare(&plan_render_args, sql_render_args, 1, t_queued);
	prepare(&plan_response_args, sql_response_args, 1, t_queued);
	prepare(&plan_queued, sql_queued, 1, t_queued);

	/* the queue may be a new one: claims start over from its first row */
	queue_relid = queue;
	queue_seq = WebhookIdentitySequence(queue, get_attnum(queue, "id"));
	claim_floor = 0;
	mark_set = false;
	seq_filenode = InvalidOid;
	plans_ready = true;
}

/*
 * Read the queue sequence's last value, then the next transaction id (see
 * claim_floor). None with a sequence that hands out ids from a cache (CACHE
 * above 1): a session takes a cached id later, whatever the last value says.
 */
static void
set_mark(void)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		last;
	HeapTuple	tup;
	int64		cache;
	Oid			filenode;

	if (!OidIsValid(queue_seq))
		return;
	tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(queue_seq));
	if (!HeapTupleIsValid(tup))
		return;
	cache = ((Form_pg_sequence) GETSTRUCT(tup))->seqcache;
	ReleaseSysCache(tup);
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(queue_seq));
	if (!HeapTupleIsValid(tup))
		return;
	filenode = ((Form_pg_class) GETSTRUCT(tup))->relfilenode;
	ReleaseSysCache(tup);
	if (cache > 1)
	{
		mark_set = false;
		claim_floor = 0;
		floor_after_commit = -1;
		return;
	}
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(queue_seq);
	fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(fcinfo);
	mark_last = fcinfo->isnull ? 0 : DatumGetInt64(last);
	mark_xid = XidFromFullTransactionId(ReadNextFullTransactionId());
	mark_set = true;
	if ((OidIsValid(seq_filenode) && filenode != seq_filenode) ||
		mark_last + 1 < Max(claim_floor, floor_after_commit))
	{
		/*
		 * The sequence was set back (ALTER SEQUENCE ... RESTART gives it a new
		 * file; setval a lower value): start over. Ids set back by setval and
		 * already past the floor are found by the next full check.
		 */
		claim_floor = 0;
		floor_after_commit = -1;
		queue_hint = true;
	}
	seq_filenode = filenode;
}

/* Has every transaction that could have taken an id up to mark_last ended? */
static bool
mark_ripe(void)
{
	return mark_set && TransactionIdPrecedesOrEquals(mark_xid, GetLatestSnapshot()->xmin);
}

static Datum
int8_array(List *ids)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(list_length(ids), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, ids)
		d[n++] = Int64GetDatum(*(int64 *) lfirst(lc));
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static List *
lappend_id(List *l, int64 id)
{
	int64	   *p = palloc(sizeof(int64));

	*p = id;
	return lappend(l, p);
}

/* A column as text (NULL for null), in the current memory context. */
static char *
getstr(HeapTuple tup, TupleDesc desc, int col)
{
	return SPI_getvalue(tup, desc, col);
}

/* An integer column (int4 or int8) as int64; 0 for null. */
static int64
getint8(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (isnull)
		return 0;
	switch (TupleDescAttr(desc, col - 1)->atttypid)
	{
		case INT4OID:
			return DatumGetInt32(d);
		case OIDOID:
			return DatumGetObjectId(d);
		default:
			return DatumGetInt64(d);
	}
}

/* The URL to post to: the channel format carries the token as ?token=. */
static char *
delivery_url(const char *url, const char *format, const char *token)
{
	if (strcmp(format, "channel") != 0)
		return pstrdup(url);
	return WebhookUrlWithToken(url, token);
}

/*
 * Reload the verified endpoints. Jobs waiting for an endpoint that is no
 * longer verified are dropped from memory and their ids kept in
 * pending_release, to be handed back to the table (until that commits).
 */
static void
reload_endpoints(void)
{
	MemoryContext newctx;
	MemoryContext old;
	HASH_SEQ_STATUS hs;
	Endpoint   *ep;
	uint64		i;

	if (SPI_execute_plan(plan_endpoints, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read webhook.endpoint");

	hash_seq_init(&hs, endpoints);
	while ((ep = hash_seq_search(&hs)) != NULL)
		ep->live = false;

	newctx = AllocSetContextCreate(worker_ctx, "webhook endpoints", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(newctx);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		id = getint8(tup, desc, 1);
		bool		found;
		char	   *secret = getstr(tup, desc, 5);

		ep = hash_search(endpoints, &id, HASH_ENTER, &found);
		if (!found)
		{
			dlist_init(&ep->ready);
			ep->nready = 0;
			ep->inflight = 0;
		}
		ep->live = true;
		ep->url = delivery_url(getstr(tup, desc, 2), getstr(tup, desc, 3), getstr(tup, desc, 4));
		ep->on_response = (Oid) getint8(tup, desc, 7);
		ep->format = getstr(tup, desc, 3);
		ep->user_format = getstr(tup, desc, 8) != NULL;
		ep->format_fn = (Oid) getint8(tup, desc, 8);
		if (!WebhookDecodeSecret(secret, &ep->key))
			ep->live = false;	/* create_endpoint refuses such secrets */
		WebhookParseHeaders(getstr(tup, desc, 6), &ep->nheaders, &ep->headers);
	}
	MemoryContextSwitchTo(old);
	if (endpoint_ctx)
		MemoryContextDelete(endpoint_ctx);
	endpoint_ctx = newctx;

	hash_seq_init(&hs, endpoints);
	while ((ep = hash_seq_search(&hs)) != NULL)
	{
		if (ep->live)
			continue;
		while (!dlist_is_empty(&ep->ready))
		{
			nready_total--;
			release_job(dlist_container(Job, node, dlist_pop_head_node(&ep->ready)));
		}
		ep->nready = 0;
		ep->url = NULL;
		ep->on_response = InvalidOid;
		ep->format = NULL;
		ep->headers = NULL;
		ep->nheaders = 0;
		if (ep->inflight == 0)
			hash_search(endpoints, &ep->id, HASH_REMOVE, NULL);
	}
}

/*
 * Does the endpoint want more jobs in memory? Below half a batch: so it is
 * refilled a batch at a time, not a few jobs every round.
 */
static bool
has_room(Endpoint *ep)
{
	return ep->live && ep->nready < Max(webhook_batch_size / 2, 1);
}

/* Endpoints that can take more jobs into memory. */
static List *
endpoints_with_room(void)
{
	HASH_SEQ_STATUS hs;
	Endpoint   *ep;
	List	   *room = NIL;

	hash_seq_init(&hs, endpoints);
	while ((ep = hash_seq_search(&hs)) != NULL)
		if (has_room(ep))
			room = lappend_id(room, ep->id);
	return room;
}

/* How many endpoints are verified. */
static int
live_endpoints(void)
{
	HASH_SEQ_STATUS hs;
	Endpoint   *ep;
	int			n = 0;

	hash_seq_init(&hs, endpoints);
	while ((ep = hash_seq_search(&hs)) != NULL)
		n += ep->live ? 1 : 0;
	return n;
}

/*
 * Is claiming from the queue worth a round: some endpoint has room, or
 * there is no verified endpoint at all (the queue is then drained: an event
 * goes to the endpoints verified when it is fanned out).
 */
static bool
want_events(void)
{
	HASH_SEQ_STATUS hs;
	Endpoint   *ep;
	bool		any_live = false;

	hash_seq_init(&hs, endpoints);
	while ((ep = hash_seq_search(&hs)) != NULL)
	{
		if (has_room(ep))
		{
			hash_seq_term(&hs);
			return true;
		}
		any_live |= ep->live;
	}
	return !any_live;
}

/*
 * Call a user's function (a format or on_response function) as its owner,
 * restricted (owner.c), in a subtransaction: its result, or NULL with
 * *error set to what it raised. The result is in the caller's memory
 * context; jsonb results come as text.
 */
static char *
call_user_function(Oid fn, int nargs, Datum *args, char **error)
{
	MemoryContext old = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile result = NULL;

	*error = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(old);
	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 4);
		FmgrInfo	flinfo;
		WebhookUser save;
		HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
		Oid			fn_owner;
		Datum		d;

		if (!HeapTupleIsValid(tup))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("function with OID %u does not exist", fn)));
		fn_owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
		ReleaseSysCache(tup);

		Assert(nargs <= 4);
		WebhookBecomeUser(fn_owner, &save);
		fmgr_info(fn, &flinfo);
		InitFunctionCallInfoData(*fcinfo, &flinfo, nargs, InvalidOid, NULL, NULL);
		for (int i = 0; i < nargs; i++)
		{
			fcinfo->args[i].value = args[i];
			fcinfo->args[i].isnull = false;
		}
		d = FunctionCallInvoke(fcinfo);
		if (!fcinfo->isnull && get_func_rettype(fn) == JSONBOID)
			result = JsonbToCString(NULL, &DatumGetJsonbP(d)->root, -1);
		else if (!fcinfo->isnull)
			result = "";
		WebhookRestoreUser(&save);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(old);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(old);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(old);
		CurrentResourceOwner = owner;
		*error = pstrdup(edata->message);
		FreeErrorData(edata);
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

/*
 * Render a delivery's body with its endpoint's format function. When the
 * function is gone, fails or returns NULL, nothing is sent: the job carries
 * the error, and is recorded as failed (DESIGN section 9).
 */
static void
render_user_format(Job *job, Endpoint *ep)
{
	Datum		arg = Int64GetDatum(job->id);
	char	   *error = NULL;
	char	   *body = NULL;

	if (!OidIsValid(ep->format_fn))
		error = psprintf("format function %s(jsonb, webhook.endpoint) does not exist", ep->format);
	else
	{
		Datum		args[2];
		bool		isnull;

		if (SPI_execute_plan(plan_render_args, &arg, NULL, false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "could not read delivery %lld", (long long) job->id);
		args[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		args[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		body = call_user_function(ep->format_fn, 2, args, &error);
		if (error)
			error = psprintf("format function %s failed: %s", ep->format, error);
		else if (body == NULL)
			error = psprintf("format function %s returned NULL", ep->format);
	}
	if (error)
		job->render_error = MemoryContextStrdup(worker_ctx, error);
	else
	{
		job->body = MemoryContextStrdup(worker_ctx, body);
		job->body_len = strlen(body);
	}
}

/*
 * Make jobs from claimed delivery rows; they join ready lists after commit.
 * A fan-out's rows also say how many queue rows it claimed (column 6), and
 * whether the delivery is held in memory (column 7): the others wait in the
 * table, as due retries, for their endpoint to have room. For a fan-out,
 * *max_event is raised to the highest event id among its rows.
 */
static int
collect_jobs(dlist_head *claimed, int64 *queue_rows, int64 *max_event)
{
	uint64		i;
	int			n = 0;
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		fanout = desc->natts >= 7;
	List	   *unrendered = NIL;
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(worker_ctx);

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		Job		   *job;
		char	   *body;
		bool		isnull;

		if (fanout)
		{
			*queue_rows = getint8(tup, desc, 6);
			*max_event = Max(*max_event, getint8(tup, desc, 3));
			if (!DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull)))
				continue;
		}
		job = palloc0(sizeof(Job));
		job->kind = JOB_DELIVERY;
		job->id = getint8(tup, desc, 1);
		job->endpoint_id = getint8(tup, desc, 2);
		job->event_id = getint8(tup, desc, 3);
		job->attempts = (int) getint8(tup, desc, 4);
		body = SPI_getvalue(tup, desc, 5);
		job->body = body;
		job->body_len = body ? strlen(body) : 0;
		if (body == NULL)
			unrendered = lappend(unrendered, job);
		dlist_push_tail(claimed, &job->node);
		n++;
	}
	MemoryContextSwitchTo(old);

	/* bodies of users' formats, once SPI_tuptable is read */
	foreach(lc, unrendered)
	{
		Job		   *job = lfirst(lc);
		Endpoint   *ep = hash_search(endpoints, &job->endpoint_id, HASH_FIND, NULL);

		if (ep && ep->live && ep->user_format)
			render_user_format(job, ep);
		else
			job->render_error = MemoryContextStrdup(worker_ctx, "no body was rendered");
	}
	list_free(unrendered);
	return n;
}

/* Add claimed jobs to their endpoints' ready lists; after commit. */
static void
enqueue_jobs(dlist_head *claimed)
{
	while (!dlist_is_empty(claimed))
	{
		Job		   *job = dlist_container(Job, node, dlist_pop_head_node(claimed));
		Endpoint   *ep = hash_search(endpoints, &job->endpoint_id, HASH_FIND, NULL);

		if (job->render_error)
		{
			/* nothing to send: recorded as failed by the next round */
			if (nfinished++ == 0)
				first_finished_at = GetCurrentTimestamp();
			dlist_push_tail(&finished, &job->node);
			continue;
		}
		if (ep == NULL || !ep->live)
		{
			/* cannot happen: the claim joined the endpoints of this round */
			release_job(job);
			continue;
		}
		dlist_push_tail(&ep->ready, &job->node);
		ep->nready++;
		nready_total++;
	}
}

/* Free a job and what it owns (started or not). */
static void
free_job(Job *job)
{
	if (job->kind == JOB_HANDSHAKE)
	{
		for (int i = 0; i < job->nheaders; i++)
			pfree(job->headers[i]);
		pfree(job->headers);
		pfree(job->key);
		pfree(job->url);
		pfree(job->endpoint_url);
		pfree(job->token);
		pfree(job->challenge);
	}
	WebhookHttpRelease(&job->req);
	if (job->body)
		pfree(job->body);
	if (job->render_error)
		pfree(job->render_error);
	pfree(job);
}

/*
 * Drop a claimed delivery from memory; its row is handed back to the table
 * (in_flight = false) by the next round that commits.
 */
static void
release_job(Job *job)
{
	MemoryContext old = MemoryContextSwitchTo(worker_ctx);

	pending_release = lappend_id(pending_release, job->id);
	MemoryContextSwitchTo(old);
	free_job(job);
}

static void
free_jobs(dlist_head *jobs)
{
	while (!dlist_is_empty(jobs))
		free_job(dlist_container(Job, node, dlist_pop_head_node(jobs)));
}

/* The delay before the next attempt, or -1 when the schedule is used up. */
static int64
retry_delay(int attempts_made, int64 at_least_ms)
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
 * The worker's statements keep their plans for its whole life, and a plan
 * follows the table sizes of the moment it was made: planned while the queue
 * or the delivery table was nearly empty, "id = ANY (...)" became a full scan
 * of the table, run in every round as the table grew. Every statement of the
 * worker has an index path, so sequential scans are off for the round
 * (SET LOCAL), and on again for the user's on_response functions.
 */
static void
allow_seqscans(bool on)
{
	(void) set_config_option("enable_seqscan", on ? "on" : "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
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
	(void) call_user_function(fn, 4, args, &error);
	if (error == NULL)
		return NULL;
	return psprintf("on_response %s failed: %s", get_func_name(fn), error);
}

/* The endpoint's on_response function, if it has one. */
static Oid
ep_on_response(int64 endpoint_id)
{
	Endpoint   *ep = hash_search(endpoints, &endpoint_id, HASH_FIND, NULL);

	return ep ? ep->on_response : InvalidOid;
}

/* Record the finished requests in the current transaction. */
static void
record_results(dlist_head *done)
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
			Datum		v[8];
			char		nl[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
			int64		d = retry_delay(job->attempts + 1, retry_after);

			v[0] = Int64GetDatum(job->id);
			v[1] = CStringGetTextDatum(job->endpoint_url);
			v[2] = CStringGetTextDatum(job->token);
			v[3] = CStringGetTextDatum(job->challenge);
			v[4] = Int32GetDatum((int32) req->status);
			if (!got_response)
				nl[4] = 'n';
			v[5] = body ? CStringGetTextDatum(body) : (Datum) 0;
			if (!body)
				nl[5] = 'n';
			v[6] = got_response ? (Datum) 0 : CStringGetTextDatum(WebhookHttpError(req));
			if (got_response)
				nl[6] = 'n';
			v[7] = Int64GetDatum(d);
			if (SPI_execute_plan(plan_handshake_result, v, nl, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "could not record a handshake");
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

		if (got_response && OidIsValid(ep_on_response(job->endpoint_id)))
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
			ok_eps = lappend_id(ok_eps, job->endpoint_id);
		}
		else
		{
			int64		d = -1;

			if (got_response && req->status == 410)
				gone_eps = lappend_id(gone_eps, job->endpoint_id);
			else
			{
				d = retry_delay(job->attempts + 1,
								(req->status == 429 || req->status == 503) ? retry_after : 0);
				fail_eps = lappend_id(fail_eps, job->endpoint_id);
			}
			if (got_response && error == NULL)
				error = psprintf("HTTP %ld", req->status);
			if (d < 0)
			{
				status[n] = CStringGetTextDatum("failed");
				n_delay[n] = true;
			}
			else
			{
				status[n] = CStringGetTextDatum("pending");
				delay[n] = Int64GetDatum(d);
				due_stale = true;
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
		allow_seqscans(true);
	for (int i = 0; i < ncalls; i++)
	{
		Job		   *job = calls[i].job;
		char	   *error = call_on_response(job, ep_on_response(job->endpoint_id),
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
		allow_seqscans(false);
	if (ok_eps)
	{
		Datum		v[1] = {int8_array(ok_eps)};

		SPI_execute_plan(plan_endpoint_ok, v, NULL, false, 0);
	}
	if (fail_eps)
	{
		Datum		v[2] = {int8_array(fail_eps), Int32GetDatum(webhook_disable_after)};

		SPI_execute_plan(plan_endpoint_fail, v, NULL, false, 0);
	}
	if (gone_eps)
	{
		Datum		v[1] = {int8_array(gone_eps)};

		SPI_execute_plan(plan_endpoint_gone, v, NULL, false, 0);
	}
}


/* Claim handshakes that are due; they are started after commit. */
static void
claim_handshakes(dlist_head *claimed)
{
	Datum		v[1];
	uint64		i;
	MemoryContext old;

	v[0] = int8_array(handshakes_in_flight);
	if (SPI_execute_plan(plan_handshakes, v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read endpoints due for a handshake");
	old = MemoryContextSwitchTo(worker_ctx);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Job		   *job = palloc0(sizeof(Job));
		StringInfoData body;

		job->kind = JOB_HANDSHAKE;
		job->id = job->endpoint_id = getint8(tup, desc, 1);
		job->endpoint_url = getstr(tup, desc, 2);
		job->token = getstr(tup, desc, 3);
		job->url = delivery_url(job->endpoint_url, getstr(tup, desc, 6), job->token);
		job->challenge = getstr(tup, desc, 7);
		job->attempts = (int) getint8(tup, desc, 8);
		job->key = palloc0(sizeof(WebhookKey));
		if (!WebhookDecodeSecret(getstr(tup, desc, 4), job->key))
			job->key->len = 0;
		WebhookParseHeaders(getstr(tup, desc, 5), &job->nheaders, &job->headers);
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
	char		id[64];			/* read while the request starts */
	bool		hs = job->kind == JOB_HANDSHAKE;
	const WebhookKey *key = hs ? job->key : &ep->key;
	int			nheaders = hs ? job->nheaders : ep->nheaders;
	char	  **headers = hs ? job->headers : ep->headers;

	if (hs)
		snprintf(id, sizeof(id), "vfy_%lld_%.8s", (long long) job->endpoint_id, job->challenge);
	else
		snprintf(id, sizeof(id), "msg_%lld_%lld", (long long) job->event_id, (long long) job->endpoint_id);
	req->url = hs ? job->url : ep->url;
	req->content_type = "application/json";
	req->body = job->body;
	req->body_len = job->body_len;
	req->id = id;
	req->key = key;
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
 */
static void
start_ready_jobs(void)
{
	bool		progress = true;

	while (progress && nready_total > 0 && WebhookHttpInFlight() < webhook_max_concurrency)
	{
		HASH_SEQ_STATUS hs;
		Endpoint   *ep;

		progress = false;
		hash_seq_init(&hs, endpoints);
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
			job = dlist_container(Job, node, dlist_pop_head_node(&ep->ready));
			ep->nready--;
			nready_total--;
			ep->inflight++;
			start_job(job, ep);
			progress = true;
		}
	}
}

/* Move every node of *from to the end of *to. */
static void
move_all(dlist_head *to, dlist_head *from)
{
	while (!dlist_is_empty(from))
		dlist_push_tail(to, dlist_pop_head_node(from));
}

/* Free recorded jobs. */
static void
release_recorded(dlist_head *recorded)
{
	while (!dlist_is_empty(recorded))
	{
		Job		   *job = dlist_container(Job, node, dlist_pop_head_node(recorded));

		if (job->kind == JOB_DELIVERY)
		{
			Endpoint   *ep = hash_search(endpoints, &job->endpoint_id, HASH_FIND, NULL);

			if (ep && !ep->live && ep->inflight == 0 && ep->nready == 0)
				hash_search(endpoints, &job->endpoint_id, HASH_REMOVE, NULL);
		}
		free_job(job);
	}
}

/*
 * Is the extension installed here, and not being created? Returns its
 * webhook.queue, or InvalidOid.
 */
static Oid
extension_ready(void)
{
	Oid			nsp;

	if (!OidIsValid(get_extension_oid("webhook", true)))
		return InvalidOid;
	nsp = get_namespace_oid("webhook", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("delivery", nsp)))
		return InvalidOid;
	return get_relname_relid("queue", nsp);
}

/* Clear the in_flight marks a previous worker left: their requests died with it. */
static void
recover_in_flight(void)
{
	if (SPI_execute("UPDATE webhook.delivery SET in_flight = false"
					" WHERE in_flight AND status = 'pending'", false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not recover in-flight deliveries");
	if (SPI_processed > 0)
		elog(LOG, "webhook worker: %llu deliveries that were in flight will be sent again",
			 (unsigned long long) SPI_processed);
}

/* The round's work inside its transaction; false when the extension is absent. */
static bool
round_body(dlist_head *recording, dlist_head *claimed, dlist_head *handshakes,
		   bool *recovered)
{
	List	   *room;
	TimestampTz now;
	bool		more = false;
	bool		isnull;
	Datum		d;
	Datum		v[2];
	Oid			queue = extension_ready();

	if (!OidIsValid(queue))
		return false;
	prepare_plans(queue);
	if (!*recovered)
	{
		recover_in_flight();
		*recovered = true;
	}

	record_results(recording);

	/*
	 * Rounds under load skip what cannot have changed: the endpoints are
	 * reloaded when a commit changed them (or a delivery was made due by
	 * redeliver), handshakes and retries are looked for when due or when
	 * this worker made some, and next_due is read again only then. Every
	 * SAFETY_POLL_MS a round looks at everything, for what no signal
	 * reports: rows changed by hand, prepared transactions, triggers off.
	 */
	now = GetCurrentTimestamp();
	claim_from_start = false;
	if (now >= next_full_check)
	{
		endpoints_loaded = false;
		/* a claim from the first row: events no wake-up announced */
		queue_hint = true;
		claim_from_start = true;
		next_full_check = now + (int64) SAFETY_POLL_MS * 1000;
	}
	{
		uint64		changes = WebhookChanges();

		if (!endpoints_loaded || changes != changes_seen)
		{
			reload_endpoints();
			changes_seen = changes;
			endpoints_loaded = true;
			retry_hint = due_stale = true;
		}
	}
	if (now >= next_due || due_partial)
		retry_hint = due_stale = true;
	if (pending_release)
	{
		v[0] = int8_array(pending_release);
		SPI_execute_plan(plan_release, v, NULL, false, 0);
		retry_hint = true;
	}
	if (due_stale)
		claim_handshakes(handshakes);

	room = endpoints_with_room();
	if (room || want_events())
	{
		int64		queue_rows = 0;

		if (retry_hint)
		{
			int			n;

			v[0] = Int32GetDatum(webhook_batch_size);
			v[1] = int8_array(room);
			round_claimed = true;
			if (SPI_execute_plan(plan_retry, v, NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "could not claim due deliveries");
			n = collect_jobs(claimed, &queue_rows, NULL);
			more = n >= webhook_batch_size;
			/* all due deliveries are claimed only if every endpoint had room */
			retry_hint = more || list_length(room) < live_endpoints();
			due_stale |= retry_hint;
		}
		if (queue_hint)
		{
			/* about batch_size deliveries, however many endpoints an event goes to */
			int			events = Max(webhook_batch_size / Max(live_endpoints(), 1), 1);
			bool		ripe = mark_ripe();	/* before the claim's snapshot */
			int64		max_event = -1;	/* the highest claimed event with deliveries */
			int64		next_row = -1;	/* the lowest row left, after a claim with none */
			Datum		fv[3];

			fv[0] = Int32GetDatum(events);
			fv[1] = int8_array(room);
			fv[2] = Int64GetDatum(claim_from_start ? 0 : claim_floor);
			round_claimed = true;
			if (SPI_execute_plan(plan_fanout, fv, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
				elog(ERROR, "could not fan out queued events");
			if (SPI_processed > 0)
			{
				uint64		made = SPI_processed;
				int			held = collect_jobs(claimed, &queue_rows, &max_event);

				queue_hint = queue_rows >= events;
				/* deliveries for endpoints without room wait in the table */
				if ((uint64) held < made)
					retry_hint = due_stale = true;
			}
			else
			{
				/* no deliveries: an empty queue, or events no endpoint wants */
				if (SPI_execute_plan(plan_queued, &fv[2], NULL, false, 1) != SPI_OK_SELECT)
					elog(ERROR, "could not look at the queue");
				queue_hint = SPI_processed > 0;
				if (queue_hint)
					next_row = getint8(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			}
			/*
			 * With a ripe mark, no row up to mark_last can still appear: what
			 * is left of them after this claim is what it could not take,
			 * and it took the lowest ids it saw (all, all up to max_event, or
			 * all below next_row when none of them was for an endpoint).
			 */
			if (ripe && !queue_hint)
				floor_after_commit = Max(claim_floor, mark_last + 1);
			else if (ripe && max_event >= 0)
				floor_after_commit = Max(claim_floor, Min(mark_last, max_event) + 1);
			else if (ripe && next_row >= 0)
				floor_after_commit = Max(claim_floor, Min(mark_last + 1, next_row));
			/* a new mark; also after an empty claim, to see a sequence set back */
			if (ripe || !mark_set || !queue_hint)
				set_mark();
		}
	}

	now = GetCurrentTimestamp();
	if (now >= next_purge)
	{
		v[0] = Int32GetDatum(webhook_retention);
		v[1] = Int32GetDatum(PURGE_BATCH);
		SPI_execute_plan(plan_purge, v, NULL, false, 0);
		next_purge = now + (SPI_processed >= PURGE_BATCH ? 0 : (int64) PURGE_INTERVAL_MS * 1000);
	}

	if (due_stale)
	{
		v[0] = int8_array(room);
		v[1] = int8_array(handshakes_in_flight);
		if (SPI_execute_plan(plan_next_due, v, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the next due time");
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		next_due = isnull ? next_full_check : Min(DatumGetTimestampTz(d), next_full_check);
		if (next_due <= now)
			next_due = now + 50 * 1000;	/* due but locked or no room: look again soon */
		/* an endpoint without room now may have due deliveries when it has room */
		due_partial = list_length(room) < live_endpoints();
		due_stale = false;
	}
	if (more || next_purge <= now)
		next_due = now;
	return true;
}

/*
 * One round in one short transaction: record, claim, fan out, purge. Claimed
 * work is used only after the commit; if the round fails it is dropped (the
 * rollback unclaimed it) and the results wait for the next round.
 */
static void
do_round(bool *recovered)
{
	dlist_head	claimed;
	dlist_head	handshakes;
	dlist_head	recording;
	MemoryContext old = MemoryContextSwitchTo(round_ctx);
	volatile bool ready = true;

	dlist_init(&claimed);
	dlist_init(&handshakes);
	dlist_init(&recording);
	round_claimed = false;
	floor_after_commit = -1;
	move_all(&recording, &finished);
	nfinished = 0;

	PG_TRY();
	{
		/* before any lock is taken: "idle" means holding none */
		pgstat_report_activity(STATE_RUNNING, "webhook worker round");
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		allow_seqscans(false);
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ready = round_body(&recording, &claimed, &handshakes, recovered);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		if (floor_after_commit >= 0)
			claim_floor = floor_after_commit;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(worker_ctx);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		ereport(LOG,
				(errmsg("webhook worker: round failed, retrying in %d ms: %s",
						ERROR_BACKOFF_MS, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		FreeErrorData(edata);
		free_jobs(&claimed);
		free_jobs(&handshakes);
		/* nothing was recorded: the results wait for the next round */
		move_all(&finished, &recording);
		{
			dlist_iter	it;

			dlist_foreach(it, &finished)
				nfinished++;
		}
		next_due = backoff_until = GetCurrentTimestamp() + (int64) ERROR_BACKOFF_MS * 1000;
		endpoints_loaded = false;
		retry_hint = due_stale = true;
		/* plans may be stale (an ALTER or DROP EXTENSION); prepare them again */
		plans_ready = false;
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(old);
		MemoryContextReset(round_ctx);
		return;
	}
	PG_END_TRY();

	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (!ready)
	{
		/* no extension (yet, or any more): nothing to record or claim */
		queue_hint = false;
		*recovered = false;
		endpoints_loaded = false;
		plans_ready = false;
		next_due = GetCurrentTimestamp() + (int64) SAFETY_POLL_MS * 1000;
	}
	else
	{
		list_free_deep(pending_release);
		pending_release = NIL;
	}
	release_recorded(&recording);
	enqueue_jobs(&claimed);
	start_handshakes(&handshakes);
	MemoryContextSwitchTo(old);
	MemoryContextReset(round_ctx);

	/*
	 * A burst leaves freed blocks in malloc's heap (SPI results, transaction
	 * memory); give them back now and then so the worker's footprint follows
	 * its load, not its history.
	 */
	{
		static TimestampTz next_trim = 0;
		TimestampTz now = GetCurrentTimestamp();

		if (now >= next_trim)
		{
			malloc_trim(0);
			next_trim = now + (int64) TRIM_INTERVAL_MS * 1000;
		}
	}
}

/* A handshake finished: the endpoint may be claimed again once its result is recorded. */
static void
handshake_done(int64 endpoint_id)
{
	ListCell   *lc;

	foreach(lc, handshakes_in_flight)
	{
		if (*(int64 *) lfirst(lc) == endpoint_id)
		{
			pfree(lfirst(lc));
			handshakes_in_flight = foreach_delete_current(handshakes_in_flight, lc);
			return;
		}
	}
}

/* Start the claimed handshakes. */
static void
start_handshakes(dlist_head *claimed)
{
	while (!dlist_is_empty(claimed))
	{
		Job		   *job = dlist_container(Job, node, dlist_pop_head_node(claimed));
		MemoryContext old = MemoryContextSwitchTo(worker_ctx);

		handshakes_in_flight = lappend_id(handshakes_in_flight, job->endpoint_id);
		MemoryContextSwitchTo(old);
		start_job(job, NULL);
	}
}

/* The worker's entry point. */
void
WebhookWorkerMain(Datum main_arg)
{
	bool		recovered = false;
	bool		woken = true;
	bool		want_round;
	TimestampTz last_round = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(webhook_database_name, NULL, 0);
	pgstat_report_appname(WEBHOOK_WORKER_NAME);

	/* Event times in UTC whatever the server's zone; progress marks commit asynchronously. */
	SetConfigOption("TimeZone", "UTC", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* its statements touch a batch of rows each: compiling them never pays */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* each statement must see what committed before it: claims, reloads */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	/*
	 * Its own statements name everything with its schema: no object a user
	 * creates may stand in for one of them (a user's function runs with
	 * this path too, or with its own SET search_path).
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);

	/*
	 * Every round allocates and frees blocks of a megabyte or more (SPI
	 * results, tuplestores). Above glibc's mmap threshold each would be a
	 * fresh mmap, page-faulted in and unmapped again: keep them in the heap,
	 * which is handed back to the system every TRIM_INTERVAL_MS instead.
	 */
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);

	worker_ctx = AllocSetContextCreate(TopMemoryContext, "webhook worker", ALLOCSET_DEFAULT_SIZES);
	round_ctx = AllocSetContextCreate(worker_ctx, "webhook round", ALLOCSET_DEFAULT_SIZES);
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(Endpoint);
		ctl.hcxt = worker_ctx;
		endpoints = hash_create("webhook endpoints", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	WebhookHttpInit();

	SpinLockAcquire(&webhook_shared->mutex);
	webhook_shared->latch = MyLatch;
	webhook_shared->database = MyDatabaseId;
	SpinLockRelease(&webhook_shared->mutex);
	on_shmem_exit(clear_shared_latch, 0);

	ereport(LOG,
			(errmsg("webhook worker started for database \"%s\"", webhook_database_name)));

	for (;;)
	{
		dlist_head	done;
		int			events;
		long		timeout;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			WebhookHttpConfigure();
			ereport(LOG, (errmsg("webhook worker reloaded its settings")));
			woken = true;
		}

		/*
		 * A round costs a transaction and a handful of queries, so it is run
		 * when it pays: when work runs short and more may be waiting, when
		 * enough results wait to be recorded (or the oldest has waited
		 * RECORD_DELAY_MS, or nothing else is in flight), or when a retry,
		 * handshake or purge is due. And at most every ROUND_GAP_MS: under
		 * a stream of one-row commits, each would otherwise wake a round of
		 * its own (at 2 ms the worker spent 160 us a delivery keeping up with
		 * 4 inserting clients, at 5 ms 120). Under load one round records
		 * and claims hundreds of deliveries; after a quiet spell, a wake-up
		 * is served at once: only rounds that claimed start the gap, not
		 * those that only recorded results, or a message every 10 ms would
		 * wait for the gap each time.
		 */
		now = GetCurrentTimestamp();
		if (woken)
			queue_hint = true;
		woken = false;
		want_round = now >= backoff_until &&
			((queue_hint && want_events()) ||
			 now >= next_due ||
			 (nfinished > 0 &&
			  (nfinished >= RECORD_BATCH || WebhookHttpInFlight() == 0 ||
			   now >= first_finished_at + RECORD_DELAY_MS * 1000)));
		if (last_round > now)
			last_round = now;	/* the clock went back: the gap stays a gap */
		if (want_round && now >= last_round + ROUND_GAP_MS * 1000)
		{
			do_round(&recovered);
			/* a round that only records does not hold back the next claim */
			if (round_claimed)
				last_round = now;

			/*
			 * More to claim (a full batch taken, a batch no endpoint wanted,
			 * a queue set back) is claimed after the gap: no wake-up may be
			 * coming, with nothing in flight and no commit to announce it.
			 */
			want_round = queue_hint && want_events() &&
				GetCurrentTimestamp() >= backoff_until;
		}

		start_ready_jobs();

		now = GetCurrentTimestamp();
		if (want_round)
			timeout = (long) Min(Max((last_round + ROUND_GAP_MS * 1000 - now + 999) / 1000, 0),
								 ROUND_GAP_MS);
		else if (now < backoff_until)
			timeout = (long) ((backoff_until - now + 999) / 1000);
		else if (next_due <= now ||
				 (nfinished > 0 && WebhookHttpInFlight() == 0))
			timeout = 0;
		else
		{
			TimestampTz wake_at = next_due;

			if (nfinished > 0)
				wake_at = Min(wake_at, first_finished_at + RECORD_DELAY_MS * 1000);
			timeout = (long) Min((wake_at - now + 999) / 1000, (int64) SAFETY_POLL_MS);
		}

		dlist_init(&done);
		/*
		 * Waiting out the gap before a round that will run anyway, a commit
		 * has nothing to tell: its SetLatch then costs neither it a signal
		 * nor this worker a wake-up (it is seen when the wait ends).
		 */
		events = WebhookHttpWait(timeout, &done, !want_round);
		if (events & WL_LATCH_SET)
			woken = true;
		while (!dlist_is_empty(&done))
		{
			WebhookRequest *req = dlist_container(WebhookRequest, node, dlist_pop_head_node(&done));
			Job		   *job = (Job *) req->owner;

			if (job->kind == JOB_DELIVERY)
			{
				Endpoint   *ep = hash_search(endpoints, &job->endpoint_id, HASH_FIND, NULL);

				if (ep)
					ep->inflight--;
			}
			else
				handshake_done(job->endpoint_id);
			if (nfinished++ == 0)
				first_finished_at = GetCurrentTimestamp();
			dlist_push_tail(&finished, &job->node);
		}
	}
}
