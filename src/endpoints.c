/*-------------------------------------------------------------------------
 *
 * endpoints.c
 *		The worker's verified endpoints, held in memory: loaded at start and
 *		whenever webhook.endpoint changes, with what each needs to send (URL,
 *		keys, headers, functions, rate limit), and whether each has room for
 *		more jobs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "webhook.h"
#include "worker.h"

static SPIPlanPtr plan_endpoints;

/*
 * The user's functions come as OIDs: NULL (no on_response, a built-in
 * format), or 0 when no function of the right form has that name
 * (webhook._user_function).
 */
static const char *sql_endpoints =
"SELECT id, url, format, token, secret, headers::text,"
"  webhook._user_function(on_response, 'on_response'), webhook._format_function(format),"
"  previous_secret, previous_secret_until, rate_limit, failing_since IS NOT NULL"
" FROM webhook.endpoint WHERE state = 'verified'";

/* Make the endpoint table; once per worker. */
void
WebhookEndpointsInit(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(Endpoint);
	ctl.hcxt = sched.worker_ctx;
	sched.endpoints = hash_create("webhook endpoints", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

void
WebhookEndpointsPrepare(void)
{
	WebhookPrepare(&plan_endpoints, sql_endpoints, 0, NULL);
}

/* The endpoint with this id, or NULL. */
Endpoint *
WebhookEndpoint(int64 id)
{
	return hash_search(sched.endpoints, &id, HASH_FIND, NULL);
}

/* The URL to post to: the channel format carries the token as ?token=. */
char *
WebhookDeliveryUrl(const char *url, const char *format, const char *token)
{
	if (strcmp(format, "channel") != 0)
		return pstrdup(url);
	return WebhookUrlWithToken(url, token);
}

/*
 * Reload the verified endpoints. Jobs waiting for an endpoint that is no
 * longer verified are dropped from memory and their ids kept in
 * pending_release, to be handed back to the table (until that commits).
 */
void
WebhookReloadEndpoints(void)
{
	MemoryContext newctx;
	MemoryContext old;
	HASH_SEQ_STATUS hs;
	Endpoint   *ep;
	uint64		i;

	if (SPI_execute_plan(plan_endpoints, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read webhook.endpoint");

	hash_seq_init(&hs, sched.endpoints);
	while ((ep = hash_seq_search(&hs)) != NULL)
		ep->live = false;

	newctx = AllocSetContextCreate(sched.worker_ctx, "webhook endpoints", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(newctx);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		id = WebhookGetInt(tup, desc, 1);
		bool		found;
		char	   *secret = SPI_getvalue(tup, desc, 5);
		bool		isnull;
		TimestampTz previous_until = DatumGetTimestampTz(SPI_getbinval(tup, desc, 10, &isnull));

		ep = hash_search(sched.endpoints, &id, HASH_ENTER, &found);
		if (!found)
		{
			dlist_init(&ep->ready);
			ep->nready = 0;
			ep->inflight = 0;
			ep->next_start = 0;
			ep->limit_idx = -1;
		}
		ep->live = true;
		ep->url = WebhookDeliveryUrl(SPI_getvalue(tup, desc, 2), SPI_getvalue(tup, desc, 3), SPI_getvalue(tup, desc, 4));
		ep->on_response = (Oid) WebhookGetInt(tup, desc, 7);
		ep->format = SPI_getvalue(tup, desc, 3);
		ep->token = SPI_getvalue(tup, desc, 4);
		ep->user_format = SPI_getvalue(tup, desc, 8) != NULL;
		ep->format_fn = (Oid) WebhookGetInt(tup, desc, 8);
		if (!WebhookDecodeKeys(secret, SPI_getvalue(tup, desc, 9), isnull ? 0 : previous_until,
							   &ep->keys))
			ep->live = false;	/* create_endpoint refuses such secrets */
		ep->rate_limit = (int) WebhookGetInt(tup, desc, 11);
		ep->failing = DatumGetBool(SPI_getbinval(tup, desc, 12, &isnull));
		WebhookParseHeaders(SPI_getvalue(tup, desc, 6), &ep->nheaders, &ep->headers);
	}
	MemoryContextSwitchTo(old);
	if (sched.endpoint_ctx)
		MemoryContextDelete(sched.endpoint_ctx);
	sched.endpoint_ctx = newctx;

	hash_seq_init(&hs, sched.endpoints);
	while ((ep = hash_seq_search(&hs)) != NULL)
	{
		if (ep->live)
			continue;
		while (!dlist_is_empty(&ep->ready))
		{
			sched.nready--;
			WebhookReleaseJob(dlist_container(Job, node, dlist_pop_head_node(&ep->ready)));
		}
		ep->nready = 0;
		ep->url = NULL;
		ep->on_response = InvalidOid;
		ep->format = NULL;
		ep->token = NULL;
		ep->headers = NULL;
		ep->nheaders = 0;
		if (ep->inflight == 0)
			hash_search(sched.endpoints, &ep->id, HASH_REMOVE, NULL);
	}
}

/*
 * Does the endpoint want more jobs in memory? Below half a batch: so it is
 * refilled a batch at a time, not a few jobs every round.
 */
static bool
has_room(Endpoint *ep)
{
	return ep->live && ep->nready < Max(webhook_batch_size / 2, 1);
}

/* Endpoints that can take more jobs into memory. */
List *
WebhookEndpointsWithRoom(void)
{
	HASH_SEQ_STATUS hs;
	Endpoint   *ep;
	List	   *room = NIL;

	hash_seq_init(&hs, sched.endpoints);
	while ((ep = hash_seq_search(&hs)) != NULL)
		if (has_room(ep))
			room = WebhookIdAppend(room, ep->id);
	return room;
}

/* How many endpoints are verified. */
int
WebhookLiveEndpoints(void)
{
	HASH_SEQ_STATUS hs;
	Endpoint   *ep;
	int			n = 0;

	hash_seq_init(&hs, sched.endpoints);
	while ((ep = hash_seq_search(&hs)) != NULL)
		n += ep->live ? 1 : 0;
	return n;
}

/*
 * Is claiming from the queue worth a round: some endpoint has room, or
 * there is no verified endpoint at all (the queue is then drained: an event
 * goes to the endpoints verified when it is fanned out).
 */
bool
WebhookWantEvents(void)
{
	HASH_SEQ_STATUS hs;
	Endpoint   *ep;
	bool		any_live = false;

	hash_seq_init(&hs, sched.endpoints);
	while ((ep = hash_seq_search(&hs)) != NULL)
	{
		if (has_room(ep))
		{
			hash_seq_term(&hs);
			return true;
		}
		any_live |= ep->live;
	}
	return !any_live;
}
