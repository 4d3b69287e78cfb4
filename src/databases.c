/*-------------------------------------------------------------------------
 *
 * databases.c
 *		The databases' slots in shared memory, what a database no worker
 *		serves is told, and the utility hook that keeps workers out of the
 *		way of DROP DATABASE and its kin.
 *
 * Every database with a worker (or a request for one, or a reason it has
 * none) has a slot: the launcher, the workers and the backends meet there.
 * A backend that committed CREATE EXTENSION marks its database's slot
 * wanted and wakes the launcher; a worker that finds no extension marks it
 * absent and leaves; DROP DATABASE, ALTER DATABASE ... RENAME or SET
 * TABLESPACE and CREATE DATABASE ... TEMPLATE need the database to
 * themselves, so for their duration the slot is paused: its worker is
 * stopped and the launcher starts none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "guc.h"
#include "webhook.h"

/* How long a backend waits for a stopped worker to leave its database. */
#define PAUSE_WAIT_MS 10000

static ProcessUtility_hook_type prev_utility_hook = NULL;

/* Slots: one per possible worker, and room for requests and reasons. */
static int
slot_count(void)
{
	return max_worker_processes + 16;
}

static Size
slots_size(void)
{
	return add_size(offsetof(WebhookShared, databases),
					mul_size(slot_count(), sizeof(WebhookDatabase)));
}

/* The slots, and the endpoint limits of each (limits.c): two structures. */
Size
WebhookShmemSize(void)
{
	return add_size(slots_size(), WebhookLimitsShmemSize(slot_count()));
}

void
WebhookShmemInit(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	webhook_shared = ShmemInitStruct("webhook", slots_size(), &found);
	if (!found)
	{
		memset(webhook_shared, 0, slots_size());
		webhook_shared->lock = &(GetNamedLWLockTranche("webhook"))->lock;
		webhook_shared->ndatabases = slot_count();
		for (int i = 0; i < webhook_shared->ndatabases; i++)
			pg_atomic_init_u64(&webhook_shared->databases[i].changes, 0);
	}
	WebhookLimitsShmemInit(slot_count());
	LWLockRelease(AddinShmemInitLock);
}

/* The slot of a database, or -1; the caller holds the lock. */
int
WebhookSlotFind(Oid database)
{
	for (int i = 0; i < webhook_shared->ndatabases; i++)
		if (webhook_shared->databases[i].database == database)
			return i;
	return -1;
}

/*
 * The slot of a database, taking a free one if it has none; -1 when every
 * slot is taken. The caller holds the lock exclusively.
 */
int
WebhookSlotGet(Oid database)
{
	int			slot = WebhookSlotFind(database);

	if (slot >= 0)
		return slot;
	for (int i = 0; i < webhook_shared->ndatabases; i++)
	{
		WebhookDatabase *db = &webhook_shared->databases[i];

		if (OidIsValid(db->database))
			continue;
		db->database = database;
		memset(db->workers, 0, sizeof(db->workers));
		db->nworkers = 0;
		WebhookLimitsReset(i);
		db->wanted = db->absent = db->no_slot = db->dropped = false;
		db->paused_by = 0;
		/* changes keeps counting: a worker only compares it with itself */
		return i;
	}
	return -1;
}

/* This worker's database's slot, and its place in the slot. */
static int	my_slot = -1;
static int	my_place = -1;

/* How many commits changed endpoints (or made deliveries due) in this database. */
uint64
WebhookChanges(void)
{
	return pg_atomic_read_u64(&webhook_shared->databases[my_slot].changes);
}

/* Leave the slot and tell the launcher, which starts another if it must. */
static void
leave_slot(int code, Datum arg)
{
	WebhookDatabase *db = &webhook_shared->databases[my_slot];

	LWLockAcquire(webhook_shared->lock, LW_EXCLUSIVE);
	db->workers[my_place].pid = 0;
	db->workers[my_place].latch = NULL;
	LWLockRelease(webhook_shared->lock);
	WebhookWakeLauncher();
}

/*
 * Take place k (the worker's number in its set) in this database's slot,
 * where committing backends find the latch; false when the worker must not
 * run: the database is paused (DROP DATABASE and its kin) or dropped, or the
 * place is taken (by a worker of an earlier set, not gone yet). Returns the
 * slot's index in *slot.
 */
bool
WebhookSlotJoin(int k, int *slot)
{
	bool		ok = false;

	LWLockAcquire(webhook_shared->lock, LW_EXCLUSIVE);
	my_slot = WebhookSlotGet(MyDatabaseId);
	if (my_slot >= 0 && k >= 0 && k < WEBHOOK_SLOT_WORKERS)
	{
		WebhookDatabase *db = &webhook_shared->databases[my_slot];

		if (db->paused_by == 0 && !db->dropped && db->workers[k].pid == 0)
		{
			db->workers[k].pid = MyProcPid;
			db->workers[k].latch = MyLatch;
			my_place = k;
			ok = true;
		}
	}
	LWLockRelease(webhook_shared->lock);
	if (ok)
		on_shmem_exit(leave_slot, 0);
	*slot = my_slot;
	return ok;
}

/*
 * Mark this worker's slot: absent (the extension is not installed, for the
 * launcher), or not wanted any more (the extension was found: a request to
 * start a worker here is answered).
 */
void
WebhookSlotMark(bool absent)
{
	LWLockAcquire(webhook_shared->lock, LW_EXCLUSIVE);
	if (absent)
		webhook_shared->databases[my_slot].absent = true;
	else
		webhook_shared->databases[my_slot].wanted = false;
	LWLockRelease(webhook_shared->lock);
}

/* Set the launcher's latch, if it runs. */
void
WebhookWakeLauncher(void)
{
	Latch	   *latch;

	LWLockAcquire(webhook_shared->lock, LW_SHARED);
	latch = webhook_shared->launcher_latch;
	LWLockRelease(webhook_shared->lock);
	if (latch)
		SetLatch(latch);
}

/* Whether webhook.databases lets a worker serve this database. */
bool
WebhookDatabaseListed(const char *name)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	bool		listed = false;

	if (webhook_databases == NULL || webhook_databases[0] == '\0')
		return true;
	copy = pstrdup(webhook_databases);
	if (!SplitIdentifierString(copy, ',', &names))
		return false;			/* the check hook refused this already */
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), name) == 0)
			listed = true;
	list_free(names);
	pfree(copy);
	return listed;
}

/* The reason given when no background worker slot was free. */
const char *
WebhookNoSlotReason(const char *database)
{
	return psprintf("no background worker slot is free to serve database \"%s\" (max_worker_processes is %d)",
					database, max_worker_processes);
}

/*
 * Whether every background worker slot looks taken: as many background
 * workers run as max_worker_processes allows. An estimate (a worker that is
 * starting or just ended is missed), good enough to warn.
 */
static bool
worker_slots_full(void)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			workers = 0;

	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *entry = pgstat_fetch_stat_local_beentry(i);

		if (entry && entry->backendStatus.st_backendType == B_BG_WORKER)
			workers++;
	}
	return workers >= max_worker_processes;
}

/*
 * Why no worker delivers this database's events, or NULL when one does (or
 * is about to: the launcher starts it once CREATE EXTENSION commits). *hint
 * gets what to do about it.
 */
char *
WebhookUnservedReason(const char **hint)
{
	HeapTuple	tup;
	Form_pg_database dbform;
	char	   *name;
	bool		template;
	bool		allowconn;
	int			slot;
	bool		running = false;
	bool		no_slot = false;

	if (webhook_shared == NULL)
	{
		*hint = "Add webhook to shared_preload_libraries and restart the server.";
		return pstrdup("webhook is not in shared_preload_libraries, so no worker runs");
	}
	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for database %u", MyDatabaseId);
	dbform = (Form_pg_database) GETSTRUCT(tup);
	name = pstrdup(NameStr(dbform->datname));
	template = dbform->datistemplate;
	allowconn = dbform->datallowconn;
	ReleaseSysCache(tup);

	if (!WebhookDatabaseListed(name))
	{
		*hint = psprintf("Add %s to webhook.databases (or empty it) and reload the configuration.",
						 quote_identifier(name));
		return psprintf("database \"%s\" is not in webhook.databases, so no worker serves it", name);
	}
	if (template || !allowconn)
	{
		*hint = "A worker would keep CREATE DATABASE from copying a template, and needs to connect.";
		return psprintf("database \"%s\" is a template or does not allow connections, so no worker serves it",
						name);
	}

	LWLockAcquire(webhook_shared->lock, LW_SHARED);
	slot = WebhookSlotFind(MyDatabaseId);
	if (slot >= 0)
	{
		WebhookDatabase *db = &webhook_shared->databases[slot];

		for (int i = 0; i < WEBHOOK_SLOT_WORKERS; i++)
			if (db->workers[i].pid != 0)
				running = true;
		no_slot = db->no_slot;
	}
	LWLockRelease(webhook_shared->lock);

	/* some of the database's workers may run, not all of them */
	if (running && !no_slot)
		return NULL;
	if (no_slot || worker_slots_full())
	{
		*hint = "Raise max_worker_processes (the launcher and webhook.workers_per_database workers per "
			"served database, beside parallel and other workers) and restart the server.";
		return pstrdup(WebhookNoSlotReason(name));
	}
	return NULL;
}

/* webhook._served(): why no worker serves this database, or NULL. */
PG_FUNCTION_INFO_V1(webhook_served);
Datum
webhook_served(PG_FUNCTION_ARGS)
{
	const char *hint;
	char	   *reason = WebhookUnservedReason(&hint);

	if (reason == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(reason));
}

/*
 * webhook._serve(), run by CREATE EXTENSION: the launcher is told at commit
 * to start this database's worker, and the user is warned now if none can.
 */
PG_FUNCTION_INFO_V1(webhook_serve);
Datum
webhook_serve(PG_FUNCTION_ARGS)
{
	const char *hint;
	char	   *reason = WebhookUnservedReason(&hint);

	WebhookLauncherAtCommit();
	if (webhook_shared == NULL)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("webhook is not in shared_preload_libraries: events are queued but not delivered"),
				 errhint("%s", hint)));
	else if (reason != NULL)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s: events are queued but not delivered", reason),
				 errhint("%s", hint)));
	PG_RETURN_VOID();
}

/*
 * Pause a database: no worker may run in it until resume(). Its workers are
 * told to stop, and waited for (a bounded wait: the statement itself waits
 * a little more for other sessions to leave, and fails if they do not).
 */
static int
pause_database(Oid database)
{
	pid_t		pids[WEBHOOK_SLOT_WORKERS];
	int			npids = 0;
	int			slot;
	int			waited = 0;

	LWLockAcquire(webhook_shared->lock, LW_EXCLUSIVE);
	slot = WebhookSlotGet(database);
	if (slot >= 0)
	{
		WebhookDatabase *db = &webhook_shared->databases[slot];

		db->paused_by = MyProcPid;
		for (int i = 0; i < WEBHOOK_SLOT_WORKERS; i++)
			if (db->workers[i].pid != 0)
				pids[npids++] = db->workers[i].pid;
	}
	LWLockRelease(webhook_shared->lock);
	if (slot < 0)
		return -1;

	for (int i = 0; i < npids; i++)
		kill(pids[i], SIGTERM);
	while (npids > 0 && waited < PAUSE_WAIT_MS)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		waited += 20;
		npids = 0;
		LWLockAcquire(webhook_shared->lock, LW_SHARED);
		for (int i = 0; i < WEBHOOK_SLOT_WORKERS; i++)
			if (webhook_shared->databases[slot].workers[i].pid != 0)
				npids++;
		LWLockRelease(webhook_shared->lock);
	}
	return slot;
}

/* End a pause; a dropped database is never served again. */
static void
resume_database(int slot, Oid database, bool dropped)
{
	if (slot < 0)
		return;
	LWLockAcquire(webhook_shared->lock, LW_EXCLUSIVE);
	if (webhook_shared->databases[slot].database == database &&
		webhook_shared->databases[slot].paused_by == MyProcPid)
	{
		webhook_shared->databases[slot].paused_by = 0;
		if (dropped)
			webhook_shared->databases[slot].dropped = true;
	}
	LWLockRelease(webhook_shared->lock);
	WebhookWakeLauncher();
}

/* A pause (slot and database) as one Datum, for pause_cleanup. */
static Datum
pause_datum(int slot, Oid database)
{
	return Int64GetDatum((int64) (((uint64) (uint32) slot << 32) | (uint64) database));
}

/*
 * The statement failed, or the backend exits (FATAL) during it: end the
 * pause; the database was not dropped.
 */
static void
pause_cleanup(int code, Datum arg)
{
	uint64		v = (uint64) DatumGetInt64(arg);

	resume_database((int) (int32) (uint32) (v >> 32), (Oid) (v & 0xFFFFFFFF), false);
}

/* Whether a list of DefElem options has this one. */
static char *
option_value(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0)
			return def->arg ? defGetString(def) : NULL;
	}
	return NULL;
}

/*
 * The database a statement needs to itself (no other session connected), or
 * NULL. *drop: the statement drops it; *created: a database is created.
 */
static const char *
exclusive_database(Node *stmt, bool *drop, bool *created)
{
	*drop = *created = false;
	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			*drop = true;
			return ((DropdbStmt *) stmt)->dbname;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				return ((RenameStmt *) stmt)->subname;
			return NULL;
		case T_AlterDatabaseStmt:
			if (option_value(((AlterDatabaseStmt *) stmt)->options, "tablespace"))
				return ((AlterDatabaseStmt *) stmt)->dbname;
			return NULL;
		case T_CreatedbStmt:
			*created = true;
			return option_value(((CreatedbStmt *) stmt)->options, "template");
		default:
			return NULL;
	}
}

/* Whether a statement drops the webhook extension. */
static bool
drops_extension(Node *stmt)
{
	ListCell   *lc;

	if (!IsA(stmt, DropStmt) || ((DropStmt *) stmt)->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, ((DropStmt *) stmt)->objects)
		if (strcmp(strVal(lfirst(lc)), "webhook") == 0)
			return true;
	return false;
}

static void
run_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			ProcessUtilityContext context, ParamListInfo params,
			QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
						  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

static void
webhook_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				ProcessUtilityContext context, ParamListInfo params,
				QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		drop;
	bool		created;
	const char *name = exclusive_database(stmt, &drop, &created);
	Oid			database = name ? get_database_oid(name, true) : InvalidOid;
	volatile bool dropping;
	volatile int slot;

	/* at commit the worker wakes, finds no extension and leaves */
	if (drops_extension(stmt))
		WebhookChangedAtCommit();
	/* a copy of a template with the extension is served too */
	if (created)
		WebhookRescanAtCommit();
	/*
	 * Only its owner (or a superuser) stops a database's worker: anyone else
	 * is refused by the statement itself, and must not interrupt deliveries
	 * on the way.
	 */
	if (OidIsValid(database) && !WebhookDatabaseOwner(database, GetUserId()))
		database = InvalidOid;
	if (!OidIsValid(database))
	{
		run_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		return;
	}

	dropping = drop;
	slot = pause_database(database);
	/*
	 * Not PG_TRY: a FATAL (pg_terminate_backend while the statement waits for
	 * other sessions to leave) must end the pause too, or the launcher would
	 * never serve the database again.
	 */
	PG_ENSURE_ERROR_CLEANUP(pause_cleanup, pause_datum(slot, database));
	{
		run_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_END_ENSURE_ERROR_CLEANUP(pause_cleanup, pause_datum(slot, database));
	resume_database(slot, database, dropping);
}

/* Install the utility hook; called from _PG_init while preloading. */
void
WebhookInstallUtilityHook(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = webhook_utility;
}
