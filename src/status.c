/*-------------------------------------------------------------------------
 *
 * status.c
 *		The delivery workers' counters, in shared memory of their own:
 *		what webhook.worker_status shows, for every worker of the server
 *		whatever database it serves.
 *
 * One slot per worker, as many slots as max_worker_processes allows
 * background workers. A worker takes a free slot when it starts and frees
 * it when it exits. The slot's identity (pid, database, start) changes only
 * then, under the segment's spinlock; its counters have one writer, the
 * worker, which keeps the totals in its own memory and stores them with
 * plain atomic writes: nothing is locked on the worker's path. A round's
 * results are counted when its transaction commits (a failed round records
 * them again in the next one, and counts them then).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "status.h"

typedef struct WorkerSlot
{
	/* set when a worker takes or frees the slot, under WorkerStatus.mutex */
	int			pid;			/* 0: free */
	Oid			database;
	TimestampTz started_at;
	/* written by the slot's worker only; read without a lock */
	pg_atomic_uint32 in_flight;
	pg_atomic_uint64 deliveries;
	pg_atomic_uint64 failures;
	pg_atomic_uint64 retries;
	pg_atomic_uint64 last_round_at; /* a TimestampTz; 0: none yet */
} WorkerSlot;

typedef struct WorkerStatus
{
	slock_t		mutex;
	int			nslots;
	WorkerSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} WorkerStatus;

static WorkerStatus *worker_status = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This worker's slot (NULL: not a worker, or no slot) and its totals. */
static WorkerSlot *my_slot = NULL;
static int	my_in_flight = 0;
static uint64 my_counts[3];		/* by WebhookResult: published */
static uint64 round_counts[3];	/* counted in the round not yet committed */

static Size
status_size(void)
{
	return add_size(offsetof(WorkerStatus, slots),
					mul_size(max_worker_processes, sizeof(WorkerSlot)));
}

static void
status_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(status_size()));
}

static void
status_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	worker_status = ShmemInitStruct("webhook worker status", status_size(), &found);
	if (!found)
	{
		SpinLockInit(&worker_status->mutex);
		worker_status->nslots = max_worker_processes;
		for (int i = 0; i < worker_status->nslots; i++)
		{
			WorkerSlot *slot = &worker_status->slots[i];

			slot->pid = 0;
			pg_atomic_init_u32(&slot->in_flight, 0);
			pg_atomic_init_u64(&slot->deliveries, 0);
			pg_atomic_init_u64(&slot->failures, 0);
			pg_atomic_init_u64(&slot->retries, 0);
			pg_atomic_init_u64(&slot->last_round_at, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Ask for the segment; called from _PG_init while preloading. */
void
WebhookStatusShmemInit(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = status_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = status_shmem_startup;
}

static void
status_detach(int code, Datum arg)
{
	SpinLockAcquire(&worker_status->mutex);
	my_slot->pid = 0;
	SpinLockRelease(&worker_status->mutex);
	my_slot = NULL;
}

/*
 * Take a slot for this worker, connected to its database. Without one (more
 * workers than max_worker_processes allows cannot run) it is not shown.
 */
void
WebhookStatusAttach(void)
{
	if (worker_status == NULL || my_slot != NULL)
		return;
	SpinLockAcquire(&worker_status->mutex);
	for (int i = 0; i < worker_status->nslots; i++)
	{
		WorkerSlot *slot = &worker_status->slots[i];

		if (slot->pid != 0)
			continue;
		slot->pid = MyProcPid;
		slot->database = MyDatabaseId;
		slot->started_at = GetCurrentTimestamp();
		pg_atomic_write_u32(&slot->in_flight, 0);
		pg_atomic_write_u64(&slot->deliveries, 0);
		pg_atomic_write_u64(&slot->failures, 0);
		pg_atomic_write_u64(&slot->retries, 0);
		pg_atomic_write_u64(&slot->last_round_at, 0);
		my_slot = slot;
		break;
	}
	SpinLockRelease(&worker_status->mutex);
	if (my_slot)
		on_shmem_exit(status_detach, 0);
}

/* The requests this worker has in flight now; called before each wait. */
void
WebhookStatusInFlight(int n)
{
	if (my_slot == NULL || n == my_in_flight)
		return;
	my_in_flight = n;
	pg_atomic_write_u32(&my_slot->in_flight, (uint32) n);
}

/* Count one recorded attempt; shown once the round commits. */
void
WebhookStatusResult(WebhookResult result)
{
	round_counts[result]++;
}

/*
 * The round ended: its counts are published if it committed, dropped if
 * not (its results are recorded, and counted, again).
 */
void
WebhookStatusRoundEnd(bool committed)
{
	if (committed && my_slot != NULL)
	{
		for (int i = 0; i < (int) lengthof(my_counts); i++)
			my_counts[i] += round_counts[i];
		pg_atomic_write_u64(&my_slot->deliveries, my_counts[WEBHOOK_RESULT_DELIVERED]);
		pg_atomic_write_u64(&my_slot->failures, my_counts[WEBHOOK_RESULT_FAILED]);
		pg_atomic_write_u64(&my_slot->retries, my_counts[WEBHOOK_RESULT_RETRIED]);
		pg_atomic_write_u64(&my_slot->last_round_at, (uint64) GetCurrentTimestamp());
	}
	memset(round_counts, 0, sizeof(round_counts));
}

/*
 * webhook._worker_status(): one row per running delivery worker, in any
 * database; no rows when the library is not preloaded.
 */
PG_FUNCTION_INFO_V1(webhook_worker_status);
Datum
webhook_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			n = 0;
	struct
	{
		int			pid;
		Oid			database;
		TimestampTz started_at;
		uint32		in_flight;
		uint64		deliveries,
					failures,
					retries,
					last_round_at;
	}		   *rows;

	InitMaterializedSRF(fcinfo, 0);
	if (worker_status == NULL)
		return (Datum) 0;

	/* copied under the lock, names looked up after it */
	rows = palloc(sizeof(*rows) * worker_status->nslots);
	SpinLockAcquire(&worker_status->mutex);
	for (int i = 0; i < worker_status->nslots; i++)
	{
		WorkerSlot *slot = &worker_status->slots[i];

		if (slot->pid == 0)
			continue;
		rows[n].pid = slot->pid;
		rows[n].database = slot->database;
		rows[n].started_at = slot->started_at;
		rows[n].in_flight = pg_atomic_read_u32(&slot->in_flight);
		rows[n].deliveries = pg_atomic_read_u64(&slot->deliveries);
		rows[n].failures = pg_atomic_read_u64(&slot->failures);
		rows[n].retries = pg_atomic_read_u64(&slot->retries);
		rows[n].last_round_at = pg_atomic_read_u64(&slot->last_round_at);
		n++;
	}
	SpinLockRelease(&worker_status->mutex);

	for (int i = 0; i < n; i++)
	{
		Datum		values[8];
		bool		nulls[8] = {0};
		char	   *db = get_database_name(rows[i].database);

		if (db)
			values[0] = DirectFunctionCall1(namein, CStringGetDatum(db));
		else
			nulls[0] = true;	/* dropped while its worker runs */
		values[1] = Int32GetDatum(rows[i].pid);
		values[2] = TimestampTzGetDatum(rows[i].started_at);
		values[3] = Int32GetDatum((int32) rows[i].in_flight);
		values[4] = Int64GetDatum((int64) rows[i].deliveries);
		values[5] = Int64GetDatum((int64) rows[i].failures);
		values[6] = Int64GetDatum((int64) rows[i].retries);
		values[7] = TimestampTzGetDatum((TimestampTz) rows[i].last_round_at);
		nulls[7] = rows[i].last_round_at == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
