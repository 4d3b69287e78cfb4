/*-------------------------------------------------------------------------
 *
 * held.c
 *		Events held in memory, whose deliveries are written once.
 *
 * When every endpoint an event goes to has room, the claim leaves the event
 * in webhook.queue and writes nothing: its deliveries are jobs in memory
 * only (Job.once). When the last of them has finished, a round inserts
 * their webhook.delivery rows, with their outcomes, and deletes the queue
 * row, in one transaction (record.c). Until then the queue row is the
 * event's only record, so a crash loses nothing: the worker that starts
 * next claims the event again, from the start of the queue, and sends it
 * again with the same webhook-id.
 *
 * An event is written when the first of its jobs is recorded: with the
 * jobs that finished with it their rows carry their outcomes; the jobs still
 * waiting or in flight (a slow endpoint's) get rows in flight, as a fan-out
 * into rows would have made, and become jobs of those rows, recorded by an
 * UPDATE when they finish. So a slow endpoint never holds up the recording
 * of the others, and a crash after it sends nothing again that was recorded.
 * A job dropped from memory (its endpoint is no longer verified) finishes
 * unsent, and is written as a pending delivery that waits in the table.
 *
 * The claims skip the events held here (WebhookHeldIds): their queue rows
 * are not locked once the claim's round has committed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "webhook.h"
#include "worker.h"

typedef struct HeldEvent
{
	int64		id;				/* the event's queue id; hash key */
	List	   *jobs;			/* its jobs in memory (Job *), in worker_ctx */
} HeldEvent;

static HTAB *held;

void
WebhookHeldInit(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(HeldEvent);
	ctl.hcxt = sched.worker_ctx;
	held = hash_create("webhook held events", 256, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* How many events are held. */
long
WebhookHeldCount(void)
{
	return held ? hash_get_num_entries(held) : 0;
}

/* A claimed job of a held event enters memory (after its round's commit). */
void
WebhookHeldAdd(Job *job)
{
	bool		found;
	HeldEvent  *ev = hash_search(held, &job->event_id, HASH_ENTER, &found);
	MemoryContext old = MemoryContextSwitchTo(sched.worker_ctx);

	if (!found)
		ev->jobs = NIL;
	ev->jobs = lappend(ev->jobs, job);
	MemoryContextSwitchTo(old);
}

/*
 * The jobs of the event of this job that are not being recorded now (not
 * job->recording): they get rows in flight when the event is written.
 */
List *
WebhookHeldSiblings(Job *job)
{
	HeldEvent  *ev = hash_search(held, &job->event_id, HASH_FIND, NULL);
	List	   *out = NIL;
	ListCell   *lc;

	if (ev == NULL)
		elog(ERROR, "webhook worker: event %lld is not held", (long long) job->event_id);
	foreach(lc, ev->jobs)
	{
		Job		   *sibling = lfirst(lc);

		if (!sibling->recording)
			out = lappend(out, sibling);
	}
	return out;
}

/*
 * The event's deliveries are written and its queue row is gone (after
 * commit): its jobs not recorded yet are now jobs of the rows in flight
 * written for them (Job.row_id).
 */
void
WebhookHeldRecorded(int64 event_id)
{
	HeldEvent  *ev = hash_search(held, &event_id, HASH_FIND, NULL);
	ListCell   *lc;

	if (ev == NULL)
		return;
	foreach(lc, ev->jobs)
	{
		Job		   *job = lfirst(lc);

		if (!job->recording)
		{
			job->id = job->row_id;
			job->once = false;
			if (job->released)
			{
				/* dropped during the round that wrote its row: hand the row back */
				dlist_delete(&job->node);
				sched.nfinished--;
				WebhookReleaseJob(job);
			}
		}
	}
	list_free(ev->jobs);
	hash_search(held, &event_id, HASH_REMOVE, NULL);
}
/* The held events' ids, for the claims to skip. */
Datum
WebhookHeldIds(void)
{
	long		n = WebhookHeldCount();
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	HASH_SEQ_STATUS hs;
	HeldEvent  *ev;
	int			i = 0;

	if (n > 0)
	{
		hash_seq_init(&hs, held);
		while ((ev = hash_seq_search(&hs)) != NULL)
			d[i++] = Int64GetDatum(ev->id);
	}
	return PointerGetDatum(construct_array(d, i, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
