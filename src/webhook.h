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

#include "storage/latch.h"
#include "storage/spin.h"

#include "compat.h"

/* WEBHOOK_VERSION comes from EXTVERSION in the Makefile */
#define WEBHOOK_USER_AGENT "webhook/" WEBHOOK_VERSION
#define WEBHOOK_WORKER_NAME "webhook worker"

/* Shared state: where committing backends find the worker's latch. */
typedef struct WebhookShared
{
	slock_t		mutex;
	Latch	   *latch;			/* the worker's latch, NULL when not running */
	Oid			database;		/* the database the worker serves */
	uint64		changes;		/* bumped by every commit that changed endpoints,
								 * or made deliveries due by hand */
} WebhookShared;

extern WebhookShared *webhook_shared;

/* webhook.c */
extern void WebhookWakeAtCommit(void);
extern void WebhookChangedAtCommit(void);
extern uint64 WebhookChanges(void);

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

/* worker.c */
extern void WebhookRegisterWorker(void);
extern PGDLLEXPORT void WebhookWorkerMain(Datum main_arg);

#endif							/* WEBHOOK_H */
