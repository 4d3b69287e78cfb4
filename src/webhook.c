/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		Module entry point: settings, shared memory, the launcher and the
 *		wake-at-commit path that tells a database's worker new events are
 *		queued (and the launcher that a database wants one).
 *
 * The settings are defined in every backend that loads the library, so the
 * SQL API works without preloading; the shared memory, the launcher and the
 * workers need shared_preload_libraries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "guc.h"
#include "status.h"
#include "webhook.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

WebhookShared *webhook_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Set when this transaction queued events; read at commit. */
static bool wake_pending = false;

/*
 * Set when this transaction changed webhook.endpoint, or made a delivery due
 * (redeliver); read at commit.
 */
static bool changes_pending = false;

/* Set when this transaction created the extension: the launcher is told. */
static bool launch_pending = false;

/* Set when this transaction created a database: the launcher looks at it. */
static bool rescan_pending = false;

/* This backend's database's slot, as last found (checked before use). */
static int	my_slot = -1;

static void webhook_shmem_request(void);
static void webhook_shmem_startup(void);
static void webhook_xact_callback(XactEvent event, void *arg);

/* Define the settings and, when preloaded, shared memory and the launcher. */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	WebhookDefineSettings();
	RegisterXactCallback(webhook_xact_callback, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = webhook_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = webhook_shmem_startup;
	WebhookStatusShmemInit();

	WebhookInstallUtilityHook();
	WebhookRegisterLauncher();
}

static void
webhook_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(WebhookShmemSize());
	RequestNamedLWLockTranche("webhook", 1);
}

static void
webhook_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	WebhookShmemInit();
}

/*
 * Ask for the worker to be woken when the current transaction commits.
 * Cheap enough to call once per statement: it only sets a flag.
 */
void
WebhookWakeAtCommit(void)
{
	wake_pending = true;
}

/* Ask for the launcher to start this database's worker at commit. */
void
WebhookLauncherAtCommit(void)
{
	launch_pending = true;
}

/* Ask for the launcher to look at the databases at commit. */
void
WebhookRescanAtCommit(void)
{
	rescan_pending = true;
}

/*
 * Row trigger on webhook.endpoint (and statement trigger for TRUNCATE): the
 * worker keeps the verified endpoints in memory and reloads them only when a
 * commit says they changed, whoever changed them and however.
 */
PG_FUNCTION_INFO_V1(webhook_endpoint_changed);
Datum
webhook_endpoint_changed(PG_FUNCTION_ARGS)
{
	/* RETURNS trigger: PostgreSQL itself refuses any other call */
	WebhookChangedAtCommit();
	return PointerGetDatum(NULL);
}

/*
 * Tell the worker, at commit, that what it keeps in memory may be stale:
 * the endpoints, or the earliest due delivery.
 */
void
WebhookChangedAtCommit(void)
{
	changes_pending = wake_pending = true;
}

/*
 * At commit, set the latch of this database's worker if this transaction
 * queued events (or changed endpoints), and the launcher's if it created the
 * extension. One SetLatch per transaction, whatever it queued. The commit is
 * visible to new snapshots by then, so a worker that sees the counter move
 * also sees the change, and a worker the launcher starts sees the extension.
 */
static void
webhook_xact_callback(XactEvent event, void *arg)
{
	Latch	   *latches[WEBHOOK_SLOT_WORKERS];
	int			nlatches = 0;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (!wake_pending && !changes_pending && !launch_pending && !rescan_pending)
				return;
			if (webhook_shared != NULL && (wake_pending || changes_pending))
			{
				LWLockAcquire(webhook_shared->lock, LW_SHARED);
				if (my_slot < 0 || webhook_shared->databases[my_slot].database != MyDatabaseId)
					my_slot = WebhookSlotFind(MyDatabaseId);
				if (my_slot >= 0)
				{
					WebhookDatabase *db = &webhook_shared->databases[my_slot];

					if (changes_pending)
						pg_atomic_fetch_add_u64(&db->changes, 1);
					for (int i = 0; i < WEBHOOK_SLOT_WORKERS; i++)
						if (db->workers[i].latch)
							latches[nlatches++] = db->workers[i].latch;
				}
				LWLockRelease(webhook_shared->lock);
			}
			if (webhook_shared != NULL && launch_pending)
			{
				int			slot;

				LWLockAcquire(webhook_shared->lock, LW_EXCLUSIVE);
				slot = WebhookSlotGet(MyDatabaseId);
				if (slot >= 0)
				{
					webhook_shared->databases[slot].wanted = true;
					webhook_shared->databases[slot].dropped = false;
				}
				else
					webhook_shared->rescan = true;
				LWLockRelease(webhook_shared->lock);
			}
			if (webhook_shared != NULL && (launch_pending || rescan_pending))
				WebhookWakeLauncher();
			wake_pending = changes_pending = launch_pending = rescan_pending = false;
			for (int i = 0; i < nlatches; i++)
				SetLatch(latches[i]);
			break;
		case XACT_EVENT_PRE_PREPARE:
			/*
			 * COMMIT PREPARED runs no callback of ours: the launcher would
			 * never hear of the extension, and never serve the database.
			 */
			if (launch_pending && webhook_shared != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that created extension \"webhook\""),
						 errhint("Create the extension in a transaction that commits directly.")));
			break;
		case XACT_EVENT_PREPARE:
			/*
			 * Visible only at COMMIT PREPARED, which runs no callback of
			 * ours: the worker's periodic full check picks it up.
			 */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_pending = changes_pending = launch_pending = rescan_pending = false;
			break;
		default:
			break;
	}
}
