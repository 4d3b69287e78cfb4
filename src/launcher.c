/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The launcher: keeps webhook.workers_per_database delivery workers
 *		(one by default) running in every database where the extension is
 *		installed (webhook.databases restricting the set).
 *
 * It is registered by _PG_init while preloading, starts once recovery is
 * over (a standby runs none), connects to no database and reads
 * pg_database. A background worker connects to one database only, so the
 * launcher cannot look into a database for the extension: it starts a worker
 * in every database it does not know about, and that worker leaves at once,
 * marking its slot absent, when the extension is not there. The launcher
 * remembers the absence until CREATE EXTENSION commits in that database
 * (which marks the slot wanted and wakes it) or the server restarts.
 *
 * A database's workers are a set of n, each told its number k (bgw_extra):
 * worker k takes the k-th share of the work (queue.c). A worker that ends is
 * started again in its place, after the one before it has gone. When n
 * changes (a reload), the whole set is stopped, and the new one starts once
 * every worker of the old has gone: two workers never own one share.
 *
 * It sleeps on its latch, set by: a worker starting or ending (bgw_notify_pid
 * and the worker's exit), CREATE EXTENSION or CREATE DATABASE committing, the
 * end of a DROP or RENAME of a database, and a reload. Only while a worker
 * waits to be started again (it failed, or no background worker slot was
 * free) does it also wake on a timer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "webhook.h"

#define RESTART_DELAY_MS 1000	/* after a worker failed */
#define NO_SLOT_RETRY_MS 5000	/* after no background worker slot was free */

typedef enum DbState
{
	DB_UNKNOWN,					/* start a worker: it finds out */
	DB_RUNNING,					/* a worker runs (or is starting) */
	DB_ABSENT,					/* no extension: nothing until CREATE EXTENSION */
	DB_RESTART,					/* the worker ended: start another at retry_at */
	DB_NO_SLOT,					/* no background worker slot: try at retry_at */
	DB_UNLISTED					/* not in webhook.databases */
} DbState;

/* What the launcher knows of one database. */
typedef struct LauncherDb
{
	Oid			oid;			/* hash key */
	char		name[NAMEDATALEN];
	DbState		state;
	BackgroundWorkerHandle *handles[WEBHOOK_SLOT_WORKERS];	/* by worker number;
																 * NULL: none started
																 * by this launcher */
	TimestampTz retry_at;
	bool		has_extension;	/* known to have it: no slot is then worth a log */
	bool		logged;			/* that no slot was free has been logged */
	bool		seen;			/* in pg_database, servable, at the last scan */
} LauncherDb;

static HTAB *dbs = NULL;

/* Register the launcher; called from _PG_init while preloading. */
void
WebhookRegisterLauncher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "webhook", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "WebhookLauncherMain", BGW_MAXLEN);
	strlcpy(worker.bgw_name, WEBHOOK_LAUNCHER_NAME, BGW_MAXLEN);
	strlcpy(worker.bgw_type, WEBHOOK_LAUNCHER_NAME, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
clear_launcher_latch(int code, Datum arg)
{
	LWLockAcquire(webhook_shared->lock, LW_EXCLUSIVE);
	webhook_shared->launcher_latch = NULL;
	LWLockRelease(webhook_shared->lock);
}

/*
 * Mark every database in pg_database that a worker could serve as seen,
 * adding those not known yet; the others are left unseen.
 */
static void
scan_databases(void)
{
	HASH_SEQ_STATUS seq;
	LauncherDb *db;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext cxt = CurrentMemoryContext;

	hash_seq_init(&seq, dbs);
	while ((db = hash_seq_search(&seq)) != NULL)
		db->seen = false;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tup);
		bool		found;

		/*
		 * Templates are left alone (a worker connected to one would make
		 * CREATE DATABASE fail), and so are databases that allow no
		 * connections or that an interrupted DROP DATABASE left invalid.
		 */
		if (form->datistemplate || !form->datallowconn || form->datconnlimit < -1)
			continue;
		db = hash_search(dbs, &form->oid, HASH_ENTER, &found);
		if (!found)
		{
			db->state = DB_UNKNOWN;
			memset(db->handles, 0, sizeof(db->handles));
			db->retry_at = 0;
			db->has_extension = db->logged = false;
		}
		strlcpy(db->name, NameStr(form->datname), NAMEDATALEN);
		db->seen = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
}

/*
 * Whether worker k of a database runs there (or is starting): one of this
 * launcher's, or one left by an earlier launcher.
 */
static bool
worker_running(LauncherDb *db, int slot, int k)
{
	if (db->handles[k])
	{
		pid_t		pid;

		if (GetBackgroundWorkerPid(db->handles[k], &pid) != BGWH_STOPPED)
			return true;
		pfree(db->handles[k]);
		db->handles[k] = NULL;
	}
	return slot >= 0 && webhook_shared->databases[slot].workers[k].pid != 0;
}

/* How many of a database's workers run; the caller holds the lock. */
static int
workers_running(LauncherDb *db, int slot)
{
	int			n = 0;

	for (int k = 0; k < WEBHOOK_SLOT_WORKERS; k++)
		n += worker_running(db, slot, k) ? 1 : 0;
	return n;
}

/* Stop a database's workers; the caller holds the lock. */
static void
stop_worker(LauncherDb *db, int slot)
{
	for (int k = 0; k < WEBHOOK_SLOT_WORKERS; k++)
	{
		if (db->handles[k])
			TerminateBackgroundWorker(db->handles[k]);
		if (slot >= 0 && webhook_shared->databases[slot].workers[k].pid != 0)
			kill(webhook_shared->databases[slot].workers[k].pid, SIGTERM);
	}
}

/*
 * Start a database's workers, those of its n that do not run; the caller
 * holds the lock exclusively. When no background worker slot is free the
 * reason is kept in the database's slot (webhook._served() shows it) and
 * logged once.
 */
static void
start_worker(LauncherDb *db, TimestampTz now, int n)
{
	int			slot = WebhookSlotGet(db->oid);
	bool		ok = slot >= 0;

	if (slot >= 0)
		webhook_shared->databases[slot].nworkers = n;
	for (int k = 0; k < n && ok; k++)
	{
		BackgroundWorker worker;
		WebhookWorkerArg arg = {n, k};
		MemoryContext old;

		if (worker_running(db, slot, k))
			continue;
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = BGW_NEVER_RESTART;
		strlcpy(worker.bgw_library_name, "webhook", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "WebhookWorkerMain", BGW_MAXLEN);
		strlcpy(worker.bgw_name, WEBHOOK_WORKER_NAME, BGW_MAXLEN);
		strlcpy(worker.bgw_type, WEBHOOK_WORKER_NAME, BGW_MAXLEN);
		worker.bgw_main_arg = ObjectIdGetDatum(db->oid);
		memcpy(worker.bgw_extra, &arg, sizeof(arg));
		worker.bgw_notify_pid = MyProcPid;
		/* the handle outlives the loop's context */
		old = MemoryContextSwitchTo(TopMemoryContext);
		ok = RegisterDynamicBackgroundWorker(&worker, &db->handles[k]);
		MemoryContextSwitchTo(old);
		if (!ok)
			db->handles[k] = NULL;
	}
	if (slot >= 0)
	{
		webhook_shared->databases[slot].no_slot = !ok;
		webhook_shared->databases[slot].absent = false;
	}
	if (ok)
	{
		db->state = DB_RUNNING;
		db->logged = false;
		return;
	}
	db->state = DB_NO_SLOT;
	db->retry_at = now + (int64) NO_SLOT_RETRY_MS * 1000;
	if (db->has_extension && !db->logged)
	{
		ereport(LOG,
				(errmsg("webhook launcher: %s", WebhookNoSlotReason(db->name)),
				 errdetail("Its events are queued but not delivered until one is free; this is not logged again."),
				 errhint("Raise max_worker_processes and restart the server.")));
		db->logged = true;
	}
}

/*
 * Bring the workers in line with pg_database, webhook.databases and the
 * slots' flags; returns how long to sleep at most (-1: until woken).
 */
static long
reconcile(void)
{
	HASH_SEQ_STATUS seq;
	LauncherDb *db;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake_at = 0;
	bool		rescan;

	scan_databases();

	LWLockAcquire(webhook_shared->lock, LW_EXCLUSIVE);
	rescan = webhook_shared->rescan;
	webhook_shared->rescan = false;

	hash_seq_init(&seq, dbs);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		int			slot = WebhookSlotFind(db->oid);
		WebhookDatabase *shared = slot >= 0 ? &webhook_shared->databases[slot] : NULL;
		int			want = webhook_workers_per_database;
		int			nrunning = workers_running(db, slot);
		bool		running = nrunning > 0;

		if (shared && shared->paused_by != 0 && BackendPidGetProc(shared->paused_by) == NULL)
			shared->paused_by = 0;	/* its backend went away mid-statement */
		if (!db->seen || (shared && shared->dropped))
		{
			/* gone, or no longer servable: the slot goes once the worker has */
			if (running)
			{
				stop_worker(db, slot);
				continue;
			}
			if (shared && shared->paused_by == 0)
				shared->database = InvalidOid;
			hash_search(dbs, &db->oid, HASH_REMOVE, NULL);
			continue;
		}
		if (shared && shared->paused_by != 0)
			continue;			/* the pausing backend stops the worker */

		if (running && shared && shared->nworkers != want)
		{
			/* a new number of workers: the old set goes first, all of it */
			stop_worker(db, slot);
			if (db->state == DB_RUNNING || db->state == DB_RESTART)
				db->state = DB_UNKNOWN;
			continue;
		}
		if (db->state == DB_RUNNING && nrunning < want)
		{
			/* a worker ended: no extension, or it failed */
			if (shared && shared->absent && !shared->wanted)
				db->state = DB_ABSENT;
			else
			{
				db->state = DB_RESTART;
				db->has_extension = true;
				db->retry_at = shared && shared->wanted ? now :
					now + (int64) RESTART_DELAY_MS * 1000;
			}
		}
		if (!WebhookDatabaseListed(db->name))
		{
			if (running)
				stop_worker(db, slot);
			db->state = DB_UNLISTED;
			if (shared)
				shared->wanted = shared->no_slot = false;
			continue;
		}
		if (db->state == DB_UNLISTED || (rescan && db->state == DB_ABSENT))
			db->state = DB_UNKNOWN;
		if (shared && shared->wanted && nrunning < want)
		{
			shared->wanted = false;
			db->has_extension = true;
			if (db->state != DB_NO_SLOT)
				db->state = DB_UNKNOWN;
			db->retry_at = now;
		}
		if (nrunning >= want)
			db->state = DB_RUNNING;
		else if (db->state == DB_UNKNOWN ||
				 ((db->state == DB_RESTART || db->state == DB_NO_SLOT) && now >= db->retry_at))
			start_worker(db, now, want);
		if (db->state == DB_RESTART || db->state == DB_NO_SLOT)
			wake_at = wake_at == 0 ? db->retry_at : Min(wake_at, db->retry_at);
	}

	/* slots of databases that need none: absent, unlisted, not known */
	for (int i = 0; i < webhook_shared->ndatabases; i++)
	{
		WebhookDatabase *shared = &webhook_shared->databases[i];
		bool		idle = !shared->wanted && shared->paused_by == 0;

		if (!OidIsValid(shared->database))
			continue;
		for (int j = 0; j < WEBHOOK_SLOT_WORKERS; j++)
			if (shared->workers[j].pid != 0)
				idle = false;
		db = hash_search(dbs, &shared->database, HASH_FIND, NULL);
		if (idle && (db == NULL ||
					 ((db->state == DB_ABSENT || db->state == DB_UNLISTED) && !shared->no_slot)))
			shared->database = InvalidOid;
	}
	LWLockRelease(webhook_shared->lock);

	if (wake_at == 0)
		return -1;
	return (long) Max((wake_at - now + 999) / 1000, 1);
}

/* The launcher's entry point. */
void
WebhookLauncherMain(Datum main_arg)
{
	HASHCTL		ctl;
	MemoryContext loop_ctx;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname(WEBHOOK_LAUNCHER_NAME);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(LauncherDb);
	dbs = hash_create("webhook launcher databases", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	loop_ctx = AllocSetContextCreate(TopMemoryContext, "webhook launcher loop",
									 ALLOCSET_DEFAULT_SIZES);

	LWLockAcquire(webhook_shared->lock, LW_EXCLUSIVE);
	webhook_shared->launcher_latch = MyLatch;
	LWLockRelease(webhook_shared->lock);
	on_shmem_exit(clear_launcher_latch, 0);

	ereport(LOG, (errmsg("webhook launcher started")));

	for (;;)
	{
		long		timeout;

		MemoryContextSwitchTo(loop_ctx);
		MemoryContextReset(loop_ctx);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ereport(LOG, (errmsg("webhook launcher reloaded its settings")));
		}
		timeout = reconcile();
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (timeout >= 0 ? WL_TIMEOUT : 0),
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
