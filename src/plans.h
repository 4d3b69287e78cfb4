/*-------------------------------------------------------------------------
 *
 * plans.h
 *		Statements prepared once per trigger and kept for the backend's
 *		life: the capture and moderation triggers' plans.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_PLANS_H
#define WEBHOOK_PLANS_H

#include "executor/spi.h"

/* Which trigger function a kept plan belongs to. */
typedef enum TriggerPlanUse
{
	PLAN_CAPTURE,
	PLAN_MODERATION
} TriggerPlanUse;

/*
 * What a kept plan is for: a trigger, the table it fired on and what it was
 * made from (a webhook.source id; 0 for moderation, one per table). An OID
 * reused by another trigger, or a source id by another tracking, is another
 * key; and a change to the table (a trigger created or dropped on it, which
 * track(), untrack(), moderate() and unmoderate() all do) drops its plans.
 */
typedef struct TriggerPlanKey
{
	TriggerPlanUse use;
	Oid			trigger;
	Oid			relid;
	int64		source;
} TriggerPlanKey;

typedef struct TriggerPlan
{
	TriggerPlanKey key;			/* hash key */
	bool		valid;			/* false once its table changed */
	SPIPlanPtr	plan;			/* kept; NULL when there is no statement */
	Oid			source_rel;		/* capture: the tracked table */
	char		kind[32];		/* capture: the tracked table's kind */
} TriggerPlan;

/* Fill a key, padding included: keys are compared as bytes. */
static inline void
WebhookPlanKeyInit(TriggerPlanKey *key, TriggerPlanUse use, Oid trigger, Oid relid, int64 source)
{
	memset(key, 0, sizeof(*key));
	key->use = use;
	key->trigger = trigger;
	key->relid = relid;
	key->source = source;
}

extern TriggerPlan *WebhookPlanFind(const TriggerPlanKey *key);
extern TriggerPlan *WebhookPlanKeep(const TriggerPlanKey *key, SPIPlanPtr plan);
extern void WebhookPlanBeginUse(void);
extern void WebhookPlanEndUse(void);

#endif							/* WEBHOOK_PLANS_H */
