/*-------------------------------------------------------------------------
 *
 * webhook.h
 *		Declarations shared by the webhook extension's modules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_H
#define WEBHOOK_H

#include "postgres.h"

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "compat.h"

/* WEBHOOK_VERSION comes from EXTVERSION in the Makefile */
#define WEBHOOK_USER_AGENT "webhook/" WEBHOOK_VERSION
#define WEBHOOK_WORKER_NAME "webhook worker"

#define WEBHOOK_LAUNCHER_NAME "webhook launcher"

/*
 * Workers one database's slot can hold: the most webhook.workers_per_database
 * allows. Worker k of a set of n sits in place k.
 */
#define WEBHOOK_SLOT_WORKERS 8

/* What the launcher tells a worker in bgw_extra: its number k in a set of n. */
typedef struct WebhookWorkerArg
{
	int			n;
	int			k;
} WebhookWorkerArg;

/* A running worker, as committing backends find it. */
typedef struct WebhookWorkerRef
{
	pid_t		pid;			/* 0: none */
	Latch	   *latch;
} WebhookWorkerRef;

/*
 * One database's slot in shared memory: its workers, its flags between the
 * launcher, the workers and the backends. Every field is read and written
 * under WebhookShared.lock, except changes (atomic).
 */
typedef struct WebhookDatabase
{
	Oid			database;		/* InvalidOid: the slot is free */
	WebhookWorkerRef workers[WEBHOOK_SLOT_WORKERS];
	int			nworkers;		/* how many the launcher started the running set
								 * with (0: none yet) */
	pg_atomic_uint64 changes;	/* bumped by every commit that changed
								 * endpoints, or made deliveries due by hand */
	bool		wanted;			/* CREATE EXTENSION committed: start a worker */
	bool		absent;			/* a worker found no extension and left */
	bool		no_slot;		/* no background worker slot was free for it */
	bool		dropped;		/* DROP DATABASE succeeded: never start again */
	pid_t		paused_by;		/* a backend that needs the database to
								 * itself (DROP, RENAME, ...): no worker */
} WebhookDatabase;

/* Shared state: the launcher's latch and the databases' slots. */
typedef struct WebhookShared
{
	LWLock	   *lock;
	Latch	   *launcher_latch; /* NULL when the launcher is not running */
	bool		rescan;			/* look at every database again */
	int			ndatabases;
	WebhookDatabase databases[FLEXIBLE_ARRAY_MEMBER];
} WebhookShared;

extern WebhookShared *webhook_shared;

/* webhook.c */
extern void WebhookWakeAtCommit(void);
extern void WebhookChangedAtCommit(void);
extern void WebhookLauncherAtCommit(void);
extern void WebhookRescanAtCommit(void);

/* databases.c: the slots, what a database is told, the utility hook */
extern Size WebhookShmemSize(void);
extern void WebhookShmemInit(void);
extern int	WebhookSlotFind(Oid database);
extern int	WebhookSlotGet(Oid database);
extern bool WebhookSlotJoin(int k, int *slot);
extern void WebhookSlotMark(bool absent);
extern uint64 WebhookChanges(void);
extern void WebhookWakeLauncher(void);
extern bool WebhookDatabaseListed(const char *name);
extern void WebhookInstallUtilityHook(void);
extern char *WebhookUnservedReason(const char **hint);
extern const char *WebhookNoSlotReason(const char *database);

/* limits.c: per-endpoint limits shared by a database's workers */
extern Size WebhookLimitsShmemSize(int nslots);
extern void WebhookLimitsShmemInit(int nslots);
extern void WebhookLimitsReset(int slot);

/* owner.c: running user code as its owner (DESIGN section 9) */
typedef struct WebhookUser
{
	Oid			userid;
	int			sec_context;
	int			nestlevel;
} WebhookUser;

extern void WebhookBecomeUser(Oid role, WebhookUser *save);
extern void WebhookRestoreUser(WebhookUser *save);
extern Oid	WebhookRelationOwner(Oid relid);
extern Oid	WebhookRowType(const char *table);
extern char *WebhookCallUserFunction(Oid fn, int nargs, const Oid *argtypes, Oid rettype,
									 Datum *args, char **error);

/* launcher.c */
extern void WebhookRegisterLauncher(void);
extern PGDLLEXPORT void WebhookLauncherMain(Datum main_arg);

/* worker.c */
extern PGDLLEXPORT void WebhookWorkerMain(Datum main_arg);

#endif							/* WEBHOOK_H */
