/*-------------------------------------------------------------------------
 *
 * queue.c
 *		Every statement of the worker on webhook.queue and on the deliveries
 *		waiting in webhook.delivery: the claim of queued events (held in
 *		memory, or fanned out into deliveries), the claim of due retries, the
 *		claim floor, the release of claimed rows, the next due time, and the
 *		purge.
 *
 * The claim floor. The queue is a FIFO: its rows are deleted from the low
 * end, and their index entries stay until a vacuum, so a claim scanned from
 * the start walks them all after a backlog, until autovacuum comes by.
 * Claims start at the floor instead: no row below it can still appear.
 *
 * Ids are handed out before commit, so a row can commit after rows with
 * higher ids were claimed. A mark says when the floor may pass an id: the
 * queue sequence's last value L, read before mark_xid, the next transaction
 * id. A transaction that took an id up to L had its own id already (the
 * queue is only written by transactions that wrote before: a tracked table's
 * change, or _enqueue, which asks for its id first), so below mark_xid. Once
 * no transaction below mark_xid runs, every row up to L is committed or
 * gone; a claim that then takes all it can see leaves none (but the events
 * the worker holds in memory, whose rows it deletes itself once their
 * deliveries are recorded: held.c), and the floor moves to L + 1, after that
 * round commits. Full checks claim from the start.
 *
 * webhook._claim() runs the same claim from SQL, with the floor of its own
 * session, so that isolation tests (specs/) can drive it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "guc.h"
#include "webhook.h"
#include "worker.h"

/* The claim floor (see above). */
static struct
{
	int64		claim_floor;
	int64		floor_after_commit; /* set by a round, applied at its commit */
	bool		mark_set;
	int64		mark_last;		/* the sequence's last value ... */
	TransactionId mark_xid;		/* ... read before this was the next xid */
	Oid			queue_relid;	/* webhook.queue, when the plans were made */
	Oid			queue_seq;		/* the sequence of webhook.queue.id */
	Oid			seq_filenode;	/* its file at the last mark */
}			fl = {0, -1, false, 0, InvalidTransactionId, InvalidOid, InvalidOid, InvalidOid};

static SPIPlanPtr plan_claim_events;
static SPIPlanPtr plan_fanout;
static SPIPlanPtr plan_retry;
static SPIPlanPtr plan_release;
static SPIPlanPtr plan_next_due;
static SPIPlanPtr plan_purge;
static SPIPlanPtr plan_claim;

/*
 * The claims that delete take ids with "= ANY (ARRAY (SELECT ... LIMIT n FOR
 * UPDATE SKIP LOCKED))", not "IN (SELECT ...)": kept plans follow the
 * statistics of the moment they were made, and with a nearly empty queue the
 * IN form can become a semi join that runs the locking subquery once per
 * queued row. The claim of events reads its rows in the locking scan itself.
 */

/*
 * With several workers in a database (webhook.workers_per_database), worker
 * k of n claims the queue rows, and owns the deliveries, whose event id is k
 * modulo n: the events it holds in memory (held.c) stay in the queue, and
 * only it may claim them. Every delivery has an owner: a fan-out's carry the
 * queue row's id as event_id, and redeliver() and redeliver_failed() keep
 * it. The statements that take or clear work have a %s where part_filter()
 * puts that condition, n and k given as two more parameters; with one worker
 * it puts nothing, and the statements are what they were before there could
 * be several.
 *
 * The claim floor stays each worker's own: the reasoning at the top holds
 * with "the rows" read as "the rows of the worker's share", since a claim
 * takes the lowest ids of its share it can see, and rows of the other shares
 * are not its concern.
 */
#define PART "%s"

/*
 * The share's condition on an event id column, n and k being parameters
 * $param and $param+1; "" with one worker. Written so that the planner
 * guesses it keeps most rows (its estimate for "id % n = k" is 0.5%, which
 * turned the due-retry claim's ordered index scan into a sort of all of an
 * endpoint's pending deliveries): a CASE tested for NULL.
 */
static char *
part_filter(const char *col, int param)
{
	if (sched.part_n <= 1)
		return "";
	return psprintf(" AND (CASE WHEN %s %% $%d = $%d THEN 1 END) IS NOT NULL",
					col, param, param + 1);
}

/*
 * The first n queue rows (cols of x) of the share from the floor that no one
 * else holds, locked, skipping the events held in memory (held.c).
 */
#define CLAIMABLE_SQL(cols, floor, n, held, part) \
	"SELECT " cols " FROM webhook.queue x WHERE x.id >= " floor " AND NOT x.id = ANY (" held ")" \
	part " ORDER BY x.id LIMIT " n " FOR UPDATE OF x SKIP LOCKED"

/* Does the event ev go to the endpoint e: its filters. */
#define MATCHES_SQL \
	"(e.events IS NULL OR ev.type = ANY (e.events) OR ev.update_type = ANY (e.events))" \
	"  AND (e.channels IS NULL OR ev.channel = ANY (e.channels))" \
	"  AND (e.keywords IS NULL OR ev.event->'message' = 'null' OR EXISTS (" \
	"       SELECT 1 FROM pg_catalog.unnest(e.keywords) AS k" \
	"       WHERE pg_catalog.strpos(pg_catalog.lower(ev.event->'message'->>'content')," \
	"                               pg_catalog.lower(k)) > 0))"

/*
 * Claim a batch of queued events and pair each with the verified endpoints
 * whose filters match: one row per pair (event id, endpoint id, event,
 * whether the endpoint has room), an event with none once with a NULL
 * endpoint, and how many events were claimed. Nothing is written: the
 * events whose endpoints all have room are held in memory (held.c), the
 * others fanned out into rows by sql_fanout. $1 how many events, $2
 * endpoints with room, $3 the claim floor, $4 the events held, $5 and $6
 * the share (n, k).
 */
static const char *sql_claim_events =
"WITH ev AS (" CLAIMABLE_SQL("x.id, x.type, x.update_type, x.channel, webhook._event(x) AS event",
							 "$3", "$1", "$4", PART) ")"
" SELECT ev.id, e.id, ev.event, e.id = ANY ($2), (SELECT pg_catalog.count(*) FROM ev)"
" FROM ev LEFT JOIN webhook.endpoint e ON e.state = 'verified' AND " MATCHES_SQL
" ORDER BY ev.id, e.id";

/*
 * Fan claimed events ($1) out into deliveries: their queue rows are deleted,
 * and one webhook.delivery row inserted per verified endpoint whose filters
 * match; returned with the event for those to be held in memory ($2:
 * endpoints with room), whose rows are in flight.
 */
static const char *sql_fanout =
"WITH ev AS (DELETE FROM webhook.queue AS x WHERE x.id = ANY ($1)"
"  RETURNING x.id, x.type, x.update_type, x.channel, webhook._event(x) AS event)"
" INSERT INTO webhook.delivery (endpoint_id, event_id, event, in_flight)"
" SELECT e.id, ev.id, ev.event, e.id = ANY ($2)"
" FROM ev JOIN webhook.endpoint e ON e.state = 'verified' AND " MATCHES_SQL
" ORDER BY ev.id, e.id"
" RETURNING id, endpoint_id, event_id, 0, CASE WHEN in_flight THEN event END, in_flight";

/*
 * webhook._claim(): the worker's claim from SQL, its ids in order; the rows
 * are deleted, as once their deliveries are recorded. $1 how many, $2 the
 * floor.
 */
static const char *sql_claim =
"WITH ev AS (DELETE FROM webhook.queue AS x WHERE x.id = ANY (ARRAY ("
CLAIMABLE_SQL("x.id", "$2", "$1", "'{}'", "") ")) RETURNING x.id) SELECT id FROM ev ORDER BY id";

/* Claim due deliveries of endpoints with room. $1 limit, $2 endpoints, $3 and $4 the share. */
static const char *sql_retry =
"WITH c AS ("
"  UPDATE webhook.delivery d SET in_flight = true"
"  WHERE d.id = ANY (ARRAY ("
"    SELECT id FROM webhook.delivery"
"    WHERE status = 'pending' AND NOT in_flight AND next_attempt_at <= pg_catalog.now()"
"      AND endpoint_id = ANY ($2)" PART
"    ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED))"
"  RETURNING d.id, d.endpoint_id, d.event_id, d.attempts, d.event)"
" SELECT id, endpoint_id, event_id, attempts, event FROM c";

static const char *sql_release =
"UPDATE webhook.delivery SET in_flight = false WHERE id = ANY ($1) AND in_flight";

/*
 * When is the next retry or handshake due? $1 endpoints with room, $2
 * handshakes in flight, $3 and $4 the share; the second %s is " AND false"
 * for workers other than 0 (handshakes are worker 0's).
 */
static const char *sql_next_due =
"SELECT least("
"  (SELECT next_attempt_at FROM webhook.delivery"
"    WHERE status = 'pending' AND NOT in_flight AND endpoint_id = ANY ($1)" PART
"    ORDER BY next_attempt_at LIMIT 1),"
"  (SELECT pg_catalog.min(verify_next_at) FROM webhook.endpoint"
"    WHERE state = 'pending' AND verify AND NOT id = ANY ($2)%s))";

static const char *sql_purge =
"DELETE FROM webhook.delivery WHERE id = ANY (ARRAY ("
"  SELECT id FROM webhook.delivery"
"  WHERE status <> 'pending' AND created_at < pg_catalog.now() - $1 * interval '1 second'"
"  LIMIT $2))";


/*
 * Prepare the queue's statements, for webhook.queue as it is now: a new
 * table (the extension dropped and created again) starts the floor over.
 */
void
WebhookQueuePrepare(Oid queue)
{
	Oid			t_events[] = {INT4OID, INT8ARRAYOID, INT8OID, INT8ARRAYOID, INT8OID, INT8OID};
	Oid			t_fanout[] = {INT8ARRAYOID, INT8ARRAYOID};
	Oid			t_retry[] = {INT4OID, INT8ARRAYOID, INT8OID, INT8OID};
	Oid			t_ids[] = {INT8ARRAYOID};
	Oid			t_due[] = {INT8ARRAYOID, INT8ARRAYOID, INT8OID, INT8OID};
	Oid			t_purge[] = {INT4OID, INT4OID};
	Oid			t_claim[] = {INT4OID, INT8OID};

	WebhookPrepare(&plan_claim_events, psprintf(sql_claim_events, part_filter("x.id", 5)), 6, t_events);
	WebhookPrepare(&plan_fanout, sql_fanout, 2, t_fanout);
	WebhookPrepare(&plan_retry, psprintf(sql_retry, part_filter("event_id", 3)), 4, t_retry);
	WebhookPrepare(&plan_release, sql_release, 1, t_ids);
	WebhookPrepare(&plan_next_due, psprintf(sql_next_due, part_filter("event_id", 3),
											sched.part_k == 0 ? "" : " AND false"), 4, t_due);
	WebhookPrepare(&plan_purge, sql_purge, 2, t_purge);
	WebhookPrepare(&plan_claim, sql_claim, 2, t_claim);

	fl.queue_relid = queue;
	fl.queue_seq = WebhookIdentitySequence(queue, get_attnum(queue, "id"));
	fl.claim_floor = 0;
	fl.mark_set = false;
	fl.seq_filenode = InvalidOid;
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

	if (!OidIsValid(fl.queue_seq))
		return;
	tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(fl.queue_seq));
	if (!HeapTupleIsValid(tup))
		return;
	cache = ((Form_pg_sequence) GETSTRUCT(tup))->seqcache;
	ReleaseSysCache(tup);
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(fl.queue_seq));
	if (!HeapTupleIsValid(tup))
		return;
	filenode = ((Form_pg_class) GETSTRUCT(tup))->relfilenode;
	ReleaseSysCache(tup);
	if (cache > 1)
	{
		fl.mark_set = false;
		fl.claim_floor = 0;
		fl.floor_after_commit = -1;
		return;
	}
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(fl.queue_seq);
	fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(fcinfo);
	fl.mark_last = fcinfo->isnull ? 0 : DatumGetInt64(last);
	fl.mark_xid = XidFromFullTransactionId(ReadNextFullTransactionId());
	fl.mark_set = true;
	if ((OidIsValid(fl.seq_filenode) && filenode != fl.seq_filenode) ||
		fl.mark_last + 1 < Max(fl.claim_floor, fl.floor_after_commit))
	{
		/*
		 * The sequence was set back (ALTER SEQUENCE ... RESTART gives it a new
		 * file; setval a lower value): start over. Ids set back by setval and
		 * already past the floor are found by the next full check.
		 */
		fl.claim_floor = 0;
		fl.floor_after_commit = -1;
		sched.queue_hint = true;
	}
	fl.seq_filenode = filenode;
}

/* Has every transaction that could have taken an id up to mark_last ended? */
static bool
mark_ripe(void)
{
	return fl.mark_set && TransactionIdPrecedesOrEquals(fl.mark_xid, GetLatestSnapshot()->xmin);
}

/*
 * Is the extension installed here, and not being created? Returns its
 * webhook.queue, or InvalidOid. extension: look for the extension's own
 * row too (an index scan of pg_extension, where the rest are cache
 * lookups); its tables go with it, so the worker does only at its full
 * checks.
 */
Oid
WebhookQueueReady(bool extension)
{
	Oid			nsp;

	if (extension && !OidIsValid(get_extension_oid("webhook", true)))
		return InvalidOid;
	nsp = get_namespace_oid("webhook", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("delivery", nsp)))
		return InvalidOid;
	return get_relname_relid("queue", nsp);
}

/*
 * Clear the in_flight marks a previous worker left in this worker's share:
 * their requests died with it. (The launcher starts a worker only once the
 * one before it in its place has gone, and a new set of workers only once
 * the whole old set has: the shares' union is every delivery.)
 */
void
WebhookQueueRecover(void)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		v[2] = {Int64GetDatum(sched.part_n), Int64GetDatum(sched.part_k)};

	if (SPI_execute_with_args(psprintf("UPDATE webhook.delivery SET in_flight = false"
									   " WHERE in_flight AND status = 'pending'%s",
									   part_filter("event_id", 1)),
							  2, types, v, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not recover in-flight deliveries");
	if (SPI_processed > 0)
		elog(LOG, "webhook worker: %llu deliveries that were in flight will be sent again",
			 (unsigned long long) SPI_processed);
}

/*
 * Claim due deliveries of the endpoints with room, as jobs into *claimed;
 * true when a full batch was taken (more may be due).
 */
bool
WebhookQueueClaimDue(List *room, dlist_head *claimed)
{
	Datum		v[4];
	bool		more;
	int			n;

	v[0] = Int32GetDatum(webhook_batch_size);
	v[1] = WebhookIdArray(room);
	v[2] = Int64GetDatum(sched.part_n);
	v[3] = Int64GetDatum(sched.part_k);
	sched.round_claimed = true;
	if (SPI_execute_plan(plan_retry, v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim due deliveries");
	n = WebhookCollectJobs(claimed);
	more = n >= webhook_batch_size;
	/* all due deliveries are claimed only if every endpoint had room */
	sched.retry_hint = more || list_length(room) < WebhookLiveEndpoints();
	sched.due_stale |= sched.retry_hint;
	return more;
}

/*
 * After a claim from the floor: where the floor may move when the claim's
 * transaction commits, and a new mark. ripe: mark_ripe() before the claim's
 * snapshot; more: rows may be left that the claim could take;
 * max_claimed: the highest id it claimed, or -1.
 */
static void
claim_done(bool ripe, bool more, int64 max_claimed)
{
	/*
	 * With a ripe mark, no row up to mark_last can still appear: what is
	 * left of them after this claim is what it could not take or the worker
	 * holds (and deletes once it has recorded their deliveries), and it took
	 * the lowest ids it saw (all, or all up to max_claimed).
	 */
	if (ripe && !more)
		fl.floor_after_commit = Max(fl.claim_floor, fl.mark_last + 1);
	else if (ripe && max_claimed >= 0)
		fl.floor_after_commit = Max(fl.claim_floor, Min(fl.mark_last, max_claimed) + 1);
	/* a new mark; also after an empty claim, to see a sequence set back */
	if (ripe || !fl.mark_set || !more)
		set_mark();
}

/*
 * Claim a batch of queued events: those whose endpoints all have room are
 * held in memory, their jobs into *claimed, with nothing written; the others
 * are fanned out into delivery rows, those for endpoints with room as jobs
 * into *claimed too. Move the floor's mark.
 */
void
WebhookQueueClaimEvents(List *room, dlist_head *claimed)
{
	/* about batch_size deliveries, however many endpoints an event goes to */
	int			events = Max(webhook_batch_size / Max(WebhookLiveEndpoints(), 1), 1);
	bool		ripe = mark_ripe();	/* before the claim's snapshot */
	int64		max_event = -1;	/* the highest claimed event */
	int64		nclaimed = 0;
	List	   *fan_out = NIL;	/* events to fan out into rows */
	Datum		v[6];

	v[0] = Int32GetDatum(events);
	v[1] = WebhookIdArray(room);
	v[2] = Int64GetDatum(sched.claim_from_start ? 0 : fl.claim_floor);
	v[3] = WebhookHeldIds();
	v[4] = Int64GetDatum(sched.part_n);
	v[5] = Int64GetDatum(sched.part_k);
	sched.round_claimed = true;
	if (SPI_execute_plan(plan_claim_events, v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim queued events");
	if (SPI_processed > 0)
	{
		nclaimed = WebhookGetInt(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
		WebhookCollectHeld(claimed, &fan_out, &max_event);
	}
	if (fan_out)
	{
		Datum		fv[2] = {WebhookIdArray(fan_out), v[1]};
		uint64		made;
		int			held;

		if (SPI_execute_plan(plan_fanout, fv, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "could not fan out queued events");
		made = SPI_processed;
		held = made > 0 ? WebhookCollectJobs(claimed) : 0;
		/* deliveries for endpoints without room wait in the table */
		if ((uint64) held < made)
			sched.retry_hint = sched.due_stale = true;
	}
	sched.queue_hint = nclaimed >= events;
	claim_done(ripe, sched.queue_hint, max_event);
}

/* At the end of a transaction that called webhook._claim(): as a round's end. */
static void
claim_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT)
		WebhookQueueRoundEnd(true);
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE)
		WebhookQueueRoundEnd(false);
}

/* A rolled back subtransaction may have given claimed rows back. */
static void
claim_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		fl.floor_after_commit = -1;
}

/*
 * webhook._claim(n): claim up to n queued rows with the worker's claim, from
 * this session's own claim floor, which moves when the transaction commits
 * as the worker's does when its round commits. The rows are deleted, as the
 * fan-out deletes them; returns their ids in order. For the isolation tests
 * (specs/claim.spec): no delivery is made.
 */
PG_FUNCTION_INFO_V1(webhook_claim);
Datum
webhook_claim(PG_FUNCTION_ARGS)
{
	static bool callbacks = false;
	int32		n = PG_GETARG_INT32(0);
	Oid			queue = WebhookQueueReady(true);
	MemoryContext caller = CurrentMemoryContext;
	bool		ripe;
	Datum		v[2];
	Datum	   *ids;
	uint64		i;
	uint64		count;

	if (!OidIsValid(queue))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the webhook extension's queue is not there"),
				 errdetail("The extension is being dropped or created in this transaction.")));
	if (!callbacks)
	{
		RegisterXactCallback(claim_xact_callback, NULL);
		RegisterSubXactCallback(claim_subxact_callback, NULL);
		callbacks = true;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (queue != fl.queue_relid)
		WebhookQueuePrepare(queue);
	ripe = mark_ripe();			/* before the claim's snapshot */
	v[0] = Int32GetDatum(n);
	v[1] = Int64GetDatum(fl.claim_floor);
	if (SPI_execute_plan(plan_claim, v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim queued events");
	count = SPI_processed;
	ids = MemoryContextAlloc(caller, sizeof(Datum) * Max(count, 1));
	for (i = 0; i < count; i++)
		ids[i] = Int64GetDatum(WebhookGetInt(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	claim_done(ripe, count >= (uint64) n, count > 0 ? DatumGetInt64(ids[count - 1]) : -1);
	SPI_finish();
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, (int) count, INT8OID, 8, FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE));
}

/* Hand deliveries dropped from memory back to the table. */
void
WebhookQueueRelease(List *ids)
{
	Datum		v[1] = {WebhookIdArray(ids)};

	SPI_execute_plan(plan_release, v, NULL, false, 0);
}

/* Read when the next retry or handshake is due. */
void
WebhookQueueReadNextDue(List *room, TimestampTz now)
{
	Datum		v[4];
	Datum		d;
	bool		isnull;

	v[0] = WebhookIdArray(room);
	v[1] = WebhookIdArray(sched.handshakes_in_flight);
	v[2] = Int64GetDatum(sched.part_n);
	v[3] = Int64GetDatum(sched.part_k);
	if (SPI_execute_plan(plan_next_due, v, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the next due time");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	sched.next_due = isnull ? sched.next_full_check : Min(DatumGetTimestampTz(d), sched.next_full_check);
	if (sched.next_due <= now)
		sched.next_due = now + 50 * 1000;	/* due but locked or no room: look again soon */
	/* an endpoint without room now may have due deliveries when it has room */
	sched.due_partial = list_length(room) < WebhookLiveEndpoints();
	sched.due_stale = false;
}

/* Delete a batch of finished deliveries past webhook.retention, when due. */
void
WebhookQueuePurge(TimestampTz now)
{
	Datum		v[2];

	if (now < sched.next_purge)
		return;
	v[0] = Int32GetDatum(webhook_retention);
	v[1] = Int32GetDatum(PURGE_BATCH);
	SPI_execute_plan(plan_purge, v, NULL, false, 0);
	sched.next_purge = now + (SPI_processed >= PURGE_BATCH ? 0 : (int64) PURGE_INTERVAL_MS * 1000);
}

/* A round ends: a committed one moves the floor where its claim allowed. */
void
WebhookQueueRoundEnd(bool committed)
{
	if (committed && fl.floor_after_commit >= 0)
		fl.claim_floor = fl.floor_after_commit;
	fl.floor_after_commit = -1;
}
