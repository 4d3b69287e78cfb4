/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The delivery worker: its registration, its loop and waits, and the
 *		transaction skeleton of a round.
 *
 * The files, each owning one thing, in the order one event meets them:
 *
 *	capture.c	the trigger: a statement's rows become queue rows, as the
 *				tracked table's owner; the worker is woken at commit (webhook.c)
 *	queue.c		every worker statement on the queue and the waiting
 *				deliveries: the claim and fan-out, the claim floor, due
 *				retries, releases, the next due time, the purge
 *	endpoints.c	the verified endpoints in memory, and which have room
 *	held.c		events held in memory, their deliveries written once
 *	dispatch.c	the jobs and their batches, fairness
 *				between endpoints, starting requests
 *	render.c	the bodies of the built-in formats, in C from the event
 *	http_message.c	what a request and a response are: URLs, form fields,
 *				headers and signatures (signing.c: the HMAC), the blocked
 *				networks, the decoding of responses
 *	http.c		the engines: the worker's async one (curl's multi handle
 *				waited on with the latch) and the backends' sync one
 *	record.c	results, the retry policy, on_response (handshake.c: the
 *				verdict of a handshake)
 *	worker.c	this file: the loop, the waits, the round's transaction
 *
 * and beside them: webhook.c (entry point, shared memory, wake at commit),
 * launcher.c (the workers of each database), databases.c (the databases'
 * slots in shared memory, why one is not served, DROP DATABASE), limits.c
 * (the per-endpoint limits across a database's workers), status.c (the
 * workers' counters, webhook.worker_status), guc.c (settings), owner.c (user
 * code as its owner), plans.c (the triggers' kept plans), moderate.c (the
 * synchronous hooks), util.c.
 *
 * The walk of one event, from trigger to recorded result:
 *
 *	1. An INSERT on a tracked table fires webhook._capture (capture.c) at
 *	   the end of the statement: the source's SELECT runs over the
 *	   transition table as the table's owner, its rows are inserted into
 *	   webhook.queue, and WebhookWakeAtCommit() arms the wake-up.
 *	2. At commit the backend sets the latches of its database's workers
 *	   (webhook.c, through the database's slot in databases.c): one, or
 *	   webhook.workers_per_database of them.
 *	3. The worker's wait (http.c, WebhookHttpWait) returns; the loop below
 *	   runs a round: one transaction in which queue.c claims the event
 *	   (FOR UPDATE SKIP LOCKED, from the claim floor, skipping the events
 *	   held in memory; with n workers, the worker whose number is the
 *	   event's id modulo n) and pairs it with each matching verified endpoint.
 *	   When they all have room the event is held in memory (held.c): its
 *	   deliveries are jobs with no row yet, and its queue row stays.
 *	   Otherwise it is fanned out: its queue row is deleted and one
 *	   webhook.delivery row inserted per endpoint, in flight for those with
 *	   room. dispatch.c makes the jobs, with their bodies rendered by
 *	   render.c (a user's format function is called as its owner).
 *	4. After the commit the jobs join their endpoints' ready lists
 *	   (dispatch.c) and start within the concurrency limits (counted across
 *	   the database's workers by limits.c when there are several): http.c hands
 *	   each request to libcurl with the headers http_message.c makes and
 *	   signs.
 *	5. The wait sees curl's sockets; finished requests come back to the
 *	   loop, which frees their slots and keeps them to record.
 *	6. A later round records them (record.c): a held event's deliveries
 *	   are inserted once, with their outcomes (its jobs still running get
 *	   rows in flight), and its queue row deleted; rows already written
 *	   get one UPDATE of the batch with status, response, error and next
 *	   attempt. Then the endpoints' failure bookkeeping and on_response
 *	   calls; after its commit the jobs are freed, and with the last of
 *	   them their batch's memory.
 *
 * A round never overlaps HTTP: claim and record in one short transaction,
 * send with none open, wait on the latch, postmaster death and curl's
 * sockets together. A delivery held in memory is either an event still in
 * the queue (held.c) or a row with in_flight = true; the flag is cleared
 * when its result is recorded, and at start-up for whatever a crash left
 * behind, which is then sent again (at-least-once), as are the events left
 * in the queue. With several workers each clears only its own share's, and
 * claims only its own share's events (held ones included), which no other
 * worker can hold; handshakes and the purge are worker 0's. Every write of
 * the worker only records progress, so its transactions commit
 * asynchronously: a crash that loses a commit loses progress, and the work
 * is done again, never lost.
 *
 * Memory: the loop's context is reset at every turn; a round works in its
 * own context, entered again after the commit (which leaves the transaction
 * in TopMemoryContext) and reset at its end; jobs live in their batch's
 * context; endpoints in a context replaced at each reload.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "guc.h"
#include "http.h"
#include "status.h"
#include "webhook.h"
#include "worker.h"

Scheduler	sched = {
	.part_n = 1,
	.queue_hint = true,
	.retry_hint = true,
	.due_stale = true,
	.finished = DLIST_STATIC_INIT(sched.finished),
};

static bool plans_ready = false;	/* prepared since the last failed round */
static Oid	plans_queue = InvalidOid;	/* webhook.queue when they were */

static char my_database[NAMEDATALEN];

/*
 * The extension is not (or no longer) installed: say so in the slot, for
 * the launcher, and leave. A worker that never served leaves quietly: the
 * launcher starts one in every database it knows nothing about.
 */
static void
leave_absent(bool served)
{
	WebhookSlotMark(true);
	ereport(served ? LOG : DEBUG1,
			(errmsg("webhook worker for database \"%s\" exits: the extension is not installed",
					my_database)));
	proc_exit(0);
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
 * queue's index probed past its dead entries for the planner's estimates,
 * a cost that grew with the churn (test/bench/README.md).
 */
void
WebhookPrepare(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
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

Datum
WebhookIdArray(List *ids)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(list_length(ids), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, ids)
		d[n++] = Int64GetDatum(*(int64 *) lfirst(lc));
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

List *
WebhookIdAppend(List *l, int64 id)
{
	int64	   *p = palloc(sizeof(int64));

	*p = id;
	return lappend(l, p);
}

/* An integer column (int4 or int8) as int64; 0 for null. */
int64
WebhookGetInt(HeapTuple tup, TupleDesc desc, int col)
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

/*
 * The worker's statements keep their plans for its whole life, and a plan
 * follows the table sizes of the moment it was made: planned while the queue
 * or the delivery table was nearly empty, "id = ANY (...)" became a full scan
 * of the table, run in every round as the table grew. Every statement of the
 * worker has an index path, so sequential scans are off for the round
 * (SET LOCAL), and on again for the user's on_response functions.
 */
void
WebhookAllowSeqscans(bool on)
{
	(void) set_config_option("enable_seqscan", on ? "on" : "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * Prepare the worker's statements: in its first round, again after a failed
 * one, and when webhook.queue is a new table (the extension was dropped and
 * created again between two rounds). queue: webhook.queue as it is now.
 */
static void
prepare_plans(Oid queue)
{
	if (plans_ready && queue == plans_queue)
		return;
	WebhookQueuePrepare(queue);
	WebhookEndpointsPrepare();
	WebhookDispatchPrepare();
	WebhookRecordPrepare();
	plans_queue = queue;
	plans_ready = true;
}

/* Move every node of *from to the end of *to. */
static void
move_all(dlist_head *to, dlist_head *from)
{
	while (!dlist_is_empty(from))
		dlist_push_tail(to, dlist_pop_head_node(from));
}

/* The round's work inside its transaction; false when the extension is absent. */
static bool
round_body(dlist_head *recording, dlist_head *claimed, dlist_head *handshakes,
		   bool *recovered)
{
	List	   *room;
	TimestampTz now = GetCurrentTimestamp();
	bool		more = false;
	Oid			queue = WebhookQueueReady(!plans_ready || now >= sched.next_full_check);

	if (!OidIsValid(queue))
		return false;
	prepare_plans(queue);
	if (!*recovered)
	{
		WebhookQueueRecover();
		/* reasons the API stored while no worker served the database */
		if (sched.part_k == 0 &&
			SPI_execute("SELECT webhook._now_served()", false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not clear the reasons of an unserved database");
		*recovered = true;
	}

	WebhookRecordResults(recording);

	/*
	 * Rounds under load skip what cannot have changed: the endpoints are
	 * reloaded when a commit changed them (or a delivery was made due by
	 * redeliver), handshakes and retries are looked for when due or when
	 * this worker made some, and next_due is read again only then. Every
	 * SAFETY_POLL_MS a round looks at everything, for what no signal
	 * reports: rows changed by hand, prepared transactions, triggers off.
	 */
	now = GetCurrentTimestamp();
	sched.claim_from_start = false;
	if (now >= sched.next_full_check)
	{
		sched.endpoints_loaded = false;
		/* a claim from the first row: events no wake-up announced */
		sched.queue_hint = true;
		sched.claim_from_start = true;
		sched.next_full_check = now + (int64) SAFETY_POLL_MS * 1000;
	}
	{
		uint64		changes = WebhookChanges();

		if (!sched.endpoints_loaded || changes != sched.changes_seen)
		{
			WebhookReloadEndpoints();
			sched.changes_seen = changes;
			sched.endpoints_loaded = true;
			sched.retry_hint = sched.due_stale = true;
		}
	}
	if (now >= sched.next_due || sched.due_partial)
		sched.retry_hint = sched.due_stale = true;
	if (sched.pending_release)
	{
		WebhookQueueRelease(sched.pending_release);
		sched.retry_hint = true;
	}
	/* what is done once per database is worker 0's */
	if (sched.due_stale && sched.part_k == 0)
		WebhookClaimHandshakes(handshakes);

	room = WebhookEndpointsWithRoom();
	if (room || WebhookWantEvents())
	{
		if (sched.retry_hint)
			more = WebhookQueueClaimDue(room, claimed);
		if (sched.queue_hint)
			WebhookQueueClaimEvents(room, claimed);
	}

	now = GetCurrentTimestamp();
	if (sched.part_k == 0)
		WebhookQueuePurge(now);
	else
		sched.next_purge = now + (int64) PURGE_INTERVAL_MS * 1000;
	if (sched.due_stale)
		WebhookQueueReadNextDue(room, now);
	if (more || sched.next_purge <= now)
		sched.next_due = now;
	return true;
}

/*
 * One round in one short transaction: record, claim, fan out, purge. Claimed
 * work is used only after the commit; if the round fails it is dropped (the
 * rollback unclaimed it) and the results wait for the next round. The work
 * runs in the round's context, SPI's own results aside, and so does what
 * follows the commit; the context is reset at the end. A round that finds
 * no extension ends the worker. *served: a round has found it.
 */
static void
do_round(bool *recovered, bool *served)
{
	dlist_head	claimed;
	dlist_head	handshakes;
	dlist_head	recording;
	MemoryContext caller = CurrentMemoryContext;
	volatile bool ready = true;

	dlist_init(&claimed);
	dlist_init(&handshakes);
	dlist_init(&recording);
	sched.round_claimed = false;
	move_all(&recording, &sched.finished);
	sched.nfinished = 0;

	PG_TRY();
	{
		/* before any lock is taken: "idle" means holding none */
		pgstat_report_activity(STATE_RUNNING, "webhook worker round");
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		WebhookAllowSeqscans(false);
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		MemoryContextSwitchTo(sched.round_ctx);
		ready = round_body(&recording, &claimed, &handshakes, recovered);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(sched.round_ctx);
		WebhookQueueRoundEnd(true);
		WebhookStatusRoundEnd(true);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(sched.round_ctx);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		WebhookQueueRoundEnd(false);
		WebhookStatusRoundEnd(false);
		ereport(LOG,
				(errmsg("webhook worker: round failed, retrying in %d ms: %s",
						ERROR_BACKOFF_MS, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		WebhookFreeJobs(&claimed);
		WebhookFreeJobs(&handshakes);
		/* nothing was recorded: the results wait for the next round */
		move_all(&sched.finished, &recording);
		{
			dlist_iter	it;

			dlist_foreach(it, &sched.finished)
				sched.nfinished++;
		}
		sched.next_due = sched.backoff_until =
			GetCurrentTimestamp() + (int64) ERROR_BACKOFF_MS * 1000;
		sched.endpoints_loaded = false;
		sched.retry_hint = sched.due_stale = true;
		/* plans may be stale (an ALTER or DROP EXTENSION); prepare them again */
		plans_ready = false;
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(caller);
		MemoryContextReset(sched.round_ctx);
		return;
	}
	PG_END_TRY();

	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (!ready)
	{
		/* no extension (any more): in flight or not, nothing can be recorded */
		leave_absent(*served);
	}
	if (!*served)
	{
		/* a request to start a worker here is answered */
		WebhookSlotMark(false);
		*served = true;
		WebhookStatusAttach();
		if (sched.part_n > 1)
			ereport(LOG,
					(errmsg("webhook worker %d of %d started for database \"%s\"",
							sched.part_k + 1, sched.part_n, my_database)));
		else
			ereport(LOG,
					(errmsg("webhook worker started for database \"%s\"",
							my_database)));
	}
	list_free_deep(sched.pending_release);
	sched.pending_release = NIL;
	WebhookReleaseRecorded(&recording);
	WebhookEnqueueJobs(&claimed);
	WebhookStartHandshakes(&handshakes);
	MemoryContextSwitchTo(caller);
	MemoryContextReset(sched.round_ctx);
}

/*
 * Nothing in flight, nothing to wait for before recording: the results
 * waiting are recorded at once. With several workers, jobs held back by
 * the others' requests to their endpoints (limits.c) will start soon: their
 * results join a batch, or a round each would record a handful (four times
 * the rounds, measured on a drain with two workers).
 */
static bool
nothing_in_flight(void)
{
	return WebhookHttpInFlight() == 0 && (sched.part_n == 1 || sched.nready == 0);
}

/* The worker's entry point. */
void
WebhookWorkerMain(Datum main_arg)
{
	bool		recovered = false;
	bool		served = false;
	bool		woken = true;
	bool		want_round;
	TimestampTz last_round = 0;
	WebhookWorkerArg arg;
	int			slot;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* the launcher gives the database; it is never a template */
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg), InvalidOid, 0);
	pgstat_report_appname(WEBHOOK_WORKER_NAME);
	/* its share of the database's work: fixed for its life (queue.c) */
	memcpy(&arg, MyBgworkerEntry->bgw_extra, sizeof(arg));
	if (arg.n < 1 || arg.k < 0 || arg.k >= arg.n)
	{
		arg.n = 1;
		arg.k = 0;
	}
	sched.part_n = arg.n;
	sched.part_k = arg.k;
	if (!WebhookSlotJoin(arg.k, &slot))
		proc_exit(0);
	if (sched.part_n > 1)
		WebhookLimitsJoin(slot, sched.part_k);
	StartTransactionCommand();
	strlcpy(my_database, get_database_name(MyDatabaseId), NAMEDATALEN);
	CommitTransactionCommand();

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

	sched.worker_ctx = AllocSetContextCreate(TopMemoryContext, "webhook worker",
											 ALLOCSET_DEFAULT_SIZES);
	sched.loop_ctx = AllocSetContextCreate(sched.worker_ctx, "webhook loop",
										   ALLOCSET_DEFAULT_SIZES);
	sched.round_ctx = AllocSetContextCreate(sched.worker_ctx, "webhook round",
											ALLOCSET_DEFAULT_SIZES);
	WebhookEndpointsInit();
	WebhookHeldInit();

	WebhookHttpInit();


	for (;;)
	{
		dlist_head	done;
		int			events;
		long		timeout;
		TimestampTz now;

		MemoryContextSwitchTo(sched.loop_ctx);
		MemoryContextReset(sched.loop_ctx);
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
		 * its own (test/bench/README.md has what each gap cost). Under load
		 * one round records and claims hundreds of deliveries; after a quiet
		 * spell, a wake-up is served at once: only rounds that claimed start
		 * the gap, not those that only recorded results, or a trickle of
		 * messages would wait for the gap each time.
		 */
		now = GetCurrentTimestamp();
		if (woken)
			sched.queue_hint = true;
		woken = false;
		want_round = now >= sched.backoff_until &&
			((sched.queue_hint && WebhookWantEvents()) ||
			 now >= sched.next_due ||
			 (sched.nfinished > 0 &&
			  (sched.nfinished >= RECORD_BATCH || nothing_in_flight() ||
			   now >= sched.first_finished_at + RECORD_DELAY_MS * 1000)));
		if (last_round > now)
			last_round = now;	/* the clock went back: the gap stays a gap */
		if (want_round && now >= last_round + ROUND_GAP_MS * 1000)
		{
			do_round(&recovered, &served);
			/* a round that only records does not hold back the next claim */
			if (sched.round_claimed)
				last_round = now;

			/*
			 * More to claim (a full batch taken, a batch no endpoint wanted,
			 * a queue set back) is claimed after the gap: no wake-up may be
			 * coming, with nothing in flight and no commit to announce it.
			 */
			want_round = sched.queue_hint && WebhookWantEvents() &&
				GetCurrentTimestamp() >= sched.backoff_until;
		}

		WebhookStartReadyJobs();

		now = GetCurrentTimestamp();
		if (want_round)
			timeout = (long) Min(Max((last_round + ROUND_GAP_MS * 1000 - now + 999) / 1000, 0),
								 ROUND_GAP_MS);
		else if (now < sched.backoff_until)
			timeout = (long) ((sched.backoff_until - now + 999) / 1000);
		else if (sched.next_due <= now ||
				 (sched.nfinished > 0 && nothing_in_flight()))
			timeout = 0;
		else
		{
			TimestampTz wake_at = sched.next_due;

			if (sched.nfinished > 0)
				wake_at = Min(wake_at, sched.first_finished_at + RECORD_DELAY_MS * 1000);
			/*
			 * Not below 0, which would wait for ever: starting jobs above
			 * can take longer than the oldest result had left to wait.
			 */
			timeout = (long) Min(Max((wake_at - now + 999) / 1000, 0), (int64) SAFETY_POLL_MS);
		}
		/* a rate-limited endpoint's next delivery may start then (dispatch.c) */
		if (sched.next_start > 0)
			timeout = Min(timeout, (long) Max((sched.next_start - now + 999) / 1000, 0));

		dlist_init(&done);
		WebhookStatusInFlight(WebhookHttpInFlight());
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

			WebhookJobDone((Job *) req->owner);
		}
	}
}
