/*-------------------------------------------------------------------------
 *
 * plans.c
 *		The capture and moderation triggers' kept plans, keyed by trigger,
 *		table and source, and dropped when the table changes.
 *
 * A trigger's statement is prepared at its first firing in a backend and
 * kept. A trigger's OID alone does not name a statement: once the trigger
 * is dropped its OID can come back on another table's trigger (DROP and
 * CREATE EXTENSION hand out the same source ids again, too). So the key
 * holds the table and the source as well, and a relcache invalidation of
 * the table, which creating or dropping a trigger on it sends, marks its
 * plans stale; they are prepared again at the next firing.
 *
 * A stale plan may still be running (a trigger whose statement fires the
 * same trigger further down), so it is freed only once no kept plan is in
 * use (WebhookPlanBeginUse / WebhookPlanEndUse; at the end of a transaction
 * none is, whatever an error skipped).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"

#include "plans.h"

static HTAB *plans = NULL;
static List *retired = NIL;		/* stale plans not yet freed */
static int	plans_in_use = 0;

/* Relcache callback: the plans of a changed table (InvalidOid: of all) are stale. */
static void
invalidate_plans(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS hs;
	TriggerPlan *entry;

	hash_seq_init(&hs, plans);
	while ((entry = hash_seq_search(&hs)) != NULL)
		if (!OidIsValid(relid) || entry->key.relid == relid || entry->source_rel == relid)
			entry->valid = false;
}

/* Nothing runs between transactions: an error may have skipped an EndUse. */
static void
plans_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		plans_in_use = 0;
}

/* Free the retired plans, unless one may be running. */
static void
free_retired(void)
{
	ListCell   *lc;

	if (plans_in_use > 0 || retired == NIL)
		return;
	foreach(lc, retired)
		SPI_freeplan((SPIPlanPtr) lfirst(lc));
	list_free(retired);
	retired = NIL;
}

/* The kept plan for key, or NULL when there is none or it is stale. */
TriggerPlan *
WebhookPlanFind(const TriggerPlanKey *key)
{
	TriggerPlan *entry;

	if (plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(TriggerPlanKey);
		ctl.entrysize = sizeof(TriggerPlan);
		plans = hash_create("webhook trigger plans", 64, &ctl, HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(invalidate_plans, (Datum) 0);
		RegisterXactCallback(plans_xact_callback, NULL);
	}
	free_retired();
	entry = hash_search(plans, key, HASH_FIND, NULL);
	return entry && entry->valid ? entry : NULL;
}

/*
 * Keep plan (NULL: the trigger has no statement) for key, replacing a stale
 * one. Called only after WebhookPlanFind() returned NULL for the key, and
 * once the plan is made: a failed prepare leaves no entry behind.
 */
TriggerPlan *
WebhookPlanKeep(const TriggerPlanKey *key, SPIPlanPtr plan)
{
	TriggerPlan *entry;
	bool		found;

	if (plan != NULL && SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep a trigger's plan");
	entry = hash_search(plans, key, HASH_ENTER, &found);
	if (found && entry->plan != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		retired = lappend(retired, entry->plan);
		MemoryContextSwitchTo(old);
	}
	entry->valid = true;
	entry->plan = plan;
	entry->source_rel = InvalidOid;
	entry->kind[0] = '\0';
	return entry;
}

/* Around the execution of a kept plan. */
void
WebhookPlanBeginUse(void)
{
	plans_in_use++;
}

void
WebhookPlanEndUse(void)
{
	plans_in_use--;
}
