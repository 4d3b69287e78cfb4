/*-------------------------------------------------------------------------
 *
 * limits.c
 *		The per-endpoint limits when a database has several workers
 *		(webhook.workers_per_database above 1): webhook.endpoint_concurrency
 *		and an endpoint's rate_limit hold across all of them.
 *
 * Each database's slot has a table in shared memory, under its own LWLock:
 * per endpoint, the requests each worker has in flight to it (one column per
 * worker, so a worker that ends can only ever take its own away: it zeroes
 * its column when it exits and when it starts), and the time before which no
 * worker starts its next delivery (rate_limit). A worker starts a request
 * only when the sum over the workers is below endpoint_concurrency and that
 * time has passed. A worker held back by the others' requests marks itself
 * waiting on the entry, and the worker whose request ends next sets its
 * latch; one held back by the rate limit waits until the shared time.
 *
 * A worker keeps the index of an endpoint's entry (Endpoint.limit_idx) and
 * checks it by id. An entry with nothing in flight and no start ahead of it
 * is idle: it may be taken for another endpoint. When every entry is busy
 * (more endpoints busy at once in one database than the table holds), a
 * delivery that needs a new entry waits a little (FULL_RETRY_MS) and tries
 * again: the limits never give way, the delivery is only late.
 *
 * With one worker none of this runs: dispatch.c keeps its own counts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "webhook.h"
#include "worker.h"

#define SHARED_ENDPOINTS 1024	/* entries per database */
#define FULL_RETRY_MS 10		/* every entry busy: try again after */

typedef struct SharedEndpoint
{
	int64		id;				/* 0: never used */
	TimestampTz next_start;		/* rate_limit: no start before this */
	uint32		waiting;		/* workers (bits) held back by the others */
	uint16		inflight[WEBHOOK_SLOT_WORKERS];	/* by worker */
} SharedEndpoint;

typedef struct DatabaseLimits
{
	LWLock		lock;
	Latch	   *latches[WEBHOOK_SLOT_WORKERS];
	SharedEndpoint entries[SHARED_ENDPOINTS];
} DatabaseLimits;

static DatabaseLimits *limits = NULL;	/* one per database slot */
static int	limits_tranche = 0;

static DatabaseLimits *mine = NULL;	/* this worker's database's */
static int	my_k = -1;
static TimestampTz full_until = 0;	/* found full: no new entry is looked for before */
static bool full_logged = false;

Size
WebhookLimitsShmemSize(int nslots)
{
	return add_size(MAXALIGN(sizeof(int)), mul_size(nslots, sizeof(DatabaseLimits)));
}

/* Called under AddinShmemInitLock, with the slots' segment. */
void
WebhookLimitsShmemInit(int nslots)
{
	bool		found;
	int		   *tranche;

	tranche = ShmemInitStruct("webhook endpoint limits", WebhookLimitsShmemSize(nslots), &found);
	/* the tranche's id first, then the tables */
	limits = (DatabaseLimits *) ((char *) tranche + MAXALIGN(sizeof(int)));
	if (!found)
	{
		*tranche = LWLockNewTrancheId();
		for (int i = 0; i < nslots; i++)
		{
			memset(&limits[i], 0, sizeof(DatabaseLimits));
			LWLockInitialize(&limits[i].lock, *tranche);
		}
	}
	limits_tranche = *tranche;
	LWLockRegisterTranche(limits_tranche, "webhook endpoint limits");
}

/* A slot is taken for another database: its entries are of no endpoint. */
void
WebhookLimitsReset(int slot)
{
	DatabaseLimits *l = &limits[slot];

	LWLockAcquire(&l->lock, LW_EXCLUSIVE);
	memset(l->entries, 0, sizeof(l->entries));
	memset(l->latches, 0, sizeof(l->latches));
	LWLockRelease(&l->lock);
}

/*
 * Take this worker's requests away (it exits, or starts with none); the
 * workers held back by them are woken.
 */
static void
clear_column(bool latch)
{
	uint32		wake = 0;

	LWLockAcquire(&mine->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SHARED_ENDPOINTS; i++)
	{
		SharedEndpoint *e = &mine->entries[i];

		e->waiting &= ~((uint32) 1 << my_k);
		if (e->inflight[my_k] != 0)
		{
			wake |= e->waiting;
			e->waiting = 0;
			e->inflight[my_k] = 0;
		}
	}
	mine->latches[my_k] = latch ? MyLatch : NULL;
	for (int w = 0; w < WEBHOOK_SLOT_WORKERS; w++)
		if ((wake & ((uint32) 1 << w)) && mine->latches[w])
			SetLatch(mine->latches[w]);
	LWLockRelease(&mine->lock);
}

static void
leave_limits(int code, Datum arg)
{
	clear_column(false);
	mine = NULL;
}

/* Worker k of a set of several joins its database's (slot's) table. */
void
WebhookLimitsJoin(int slot, int k)
{
	mine = &limits[slot];
	my_k = k;
	clear_column(true);
	on_shmem_exit(leave_limits, 0);
}

/* The endpoint's entry, found or taken; -1 when every entry is busy. Under the lock. */
static int
find_entry(Endpoint *ep, TimestampTz now)
{
	int			idle = -1;

	if (ep->limit_idx >= 0 && mine->entries[ep->limit_idx].id == ep->id)
		return ep->limit_idx;
	if (now < full_until)
		return -1;				/* not a scan per endpoint per turn while full */
	for (int i = 0; i < SHARED_ENDPOINTS; i++)
	{
		SharedEndpoint *e = &mine->entries[i];

		if (e->id == ep->id)
			return ep->limit_idx = i;
		if (idle < 0 && e->next_start <= now && e->waiting == 0)
		{
			bool		busy = false;

			for (int w = 0; w < WEBHOOK_SLOT_WORKERS; w++)
				busy |= e->inflight[w] != 0;
			if (!busy)
				idle = i;
		}
	}
	if (idle >= 0)
	{
		memset(&mine->entries[idle], 0, sizeof(SharedEndpoint));
		mine->entries[idle].id = ep->id;
	}
	else
		full_until = now + (int64) FULL_RETRY_MS * 1000;
	return ep->limit_idx = idle;
}

/*
 * May this worker start a request to the endpoint now? If so it is counted
 * (and the rate limit's next start set). If not, *retry_at says when to look
 * again: the rate limit's time, a short wait when the table is full, or 0
 * when another worker's finished request will set this worker's latch.
 */
bool
WebhookLimitsTryStart(Endpoint *ep, TimestampTz now, TimestampTz *retry_at)
{
	SharedEndpoint *e;
	int			idx;
	int			sum = 0;
	bool		ok = false;

	*retry_at = 0;
	LWLockAcquire(&mine->lock, LW_EXCLUSIVE);
	idx = find_entry(ep, now);
	if (idx < 0)
		*retry_at = now + (int64) FULL_RETRY_MS * 1000;
	else
	{
		e = &mine->entries[idx];
		for (int w = 0; w < WEBHOOK_SLOT_WORKERS; w++)
			sum += e->inflight[w];
		if (sum >= webhook_endpoint_concurrency)
			e->waiting |= (uint32) 1 << my_k;
		else if (ep->rate_limit > 0 && now < e->next_start)
			*retry_at = e->next_start;
		else
		{
			/* rounded up: N intervals never fit in less than a second */
			if (ep->rate_limit > 0)
				e->next_start = now + (USECS_PER_SEC + ep->rate_limit - 1) / ep->rate_limit;
			e->inflight[my_k]++;
			ok = true;
		}
	}
	LWLockRelease(&mine->lock);
	if (idx < 0 && !full_logged)
	{
		ereport(LOG,
				(errmsg("webhook worker: more endpoints are busy at once than the limits shared by the database's workers can hold (%d)",
						SHARED_ENDPOINTS),
				 errdetail("Deliveries to other endpoints wait until some are idle; this is not logged again.")));
		full_logged = true;
	}
	return ok;
}

/* A request to the endpoint ended: the workers held back by it may start theirs. */
void
WebhookLimitsDone(Endpoint *ep)
{
	Latch	   *wake[WEBHOOK_SLOT_WORKERS];
	int			nwake = 0;
	int			idx = ep->limit_idx;

	LWLockAcquire(&mine->lock, LW_EXCLUSIVE);
	if (idx < 0 || mine->entries[idx].id != ep->id)
	{
		/* cannot happen: an entry with requests in flight is kept */
		for (idx = 0; idx < SHARED_ENDPOINTS; idx++)
			if (mine->entries[idx].id == ep->id)
				break;
	}
	if (idx < SHARED_ENDPOINTS)
	{
		SharedEndpoint *e = &mine->entries[idx];

		if (e->inflight[my_k] > 0)
			e->inflight[my_k]--;
		for (int w = 0; w < WEBHOOK_SLOT_WORKERS; w++)
			if ((e->waiting & ((uint32) 1 << w)) && mine->latches[w])
				wake[nwake++] = mine->latches[w];
		e->waiting = 0;
	}
	LWLockRelease(&mine->lock);
	for (int i = 0; i < nwake; i++)
		SetLatch(wake[i]);
}
