/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		Module entry point: settings, shared memory and the wake-at-commit
 *		path that tells the delivery worker new events are queued.
 *
 * The settings are defined in every backend that loads the library, so the
 * SQL API works without preloading; the shared memory and the worker need
 * shared_preload_libraries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"

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

static void webhook_shmem_request(void);
static void webhook_shmem_startup(void);
static void webhook_xact_callback(XactEvent event, void *arg);

/* Define the settings and, when preloaded, shared memory and the worker. */
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

	WebhookRegisterWorker();
}

static void
webhook_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WebhookShared)));
}

static void
webhook_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	webhook_shared = ShmemInitStruct("webhook", sizeof(WebhookShared), &found);
	if (!found)
	{
		SpinLockInit(&webhook_shared->mutex);
		webhook_shared->latch = NULL;
		webhook_shared->database = InvalidOid;
		webhook_shared->changes = 0;
	}
	LWLockRelease(AddinShmemInitLock);
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

/*
 * Why no worker delivers this database's events, or NULL when one does. The
 * worker runs only when the library is preloaded, and serves the database
 * named by webhook.database_name. That setting is superuser-only to SHOW,
 * hence read here; it is a postmaster setting when preloaded, so this
 * backend's value is the worker's.
 */
PG_FUNCTION_INFO_V1(webhook_served);
Datum
webhook_served(PG_FUNCTION_ARGS)
{
	char	   *database = get_database_name(MyDatabaseId);

	if (webhook_shared == NULL)
		PG_RETURN_TEXT_P(cstring_to_text("webhook is not in shared_preload_libraries, so no worker runs"));
	if (database != NULL && webhook_database_name != NULL &&
		strcmp(database, webhook_database_name) == 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("no webhook worker serves database \"%s\" (webhook.database_name is \"%s\")",
											  database ? database : "?",
											  webhook_database_name ? webhook_database_name : "")));
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

/* How many commits have called WebhookChangedAtCommit since the server started. */
uint64
WebhookChanges(void)
{
	uint64		n;

	SpinLockAcquire(&webhook_shared->mutex);
	n = webhook_shared->changes;
	SpinLockRelease(&webhook_shared->mutex);
	return n;
}

/*
 * At commit, set the worker's latch if this transaction queued events (or
 * changed endpoints) in the worker's database. One SetLatch per transaction,
 * whatever it queued. The commit is visible to new snapshots by then, so a
 * worker that sees the counter move also sees the change.
 */
static void
webhook_xact_callback(XactEvent event, void *arg)
{
	Latch	   *latch = NULL;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (!wake_pending && !changes_pending)
				return;
			if (webhook_shared != NULL)
			{
				SpinLockAcquire(&webhook_shared->mutex);
				if (changes_pending)
					webhook_shared->changes++;
				if (webhook_shared->database == MyDatabaseId)
					latch = webhook_shared->latch;
				SpinLockRelease(&webhook_shared->mutex);
			}
			wake_pending = changes_pending = false;
			if (latch)
				SetLatch(latch);
			break;
		case XACT_EVENT_PREPARE:
			/*
			 * Visible only at COMMIT PREPARED, which runs no callback of
			 * ours: the worker's periodic full check picks it up.
			 */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_pending = changes_pending = false;
			break;
		default:
			break;
	}
}
