/*-------------------------------------------------------------------------
 *
 * worker.h
 *		What the delivery worker's files share: the scheduler's state, the
 *		jobs and endpoints it keeps in memory, and each file's entry points.
 *		See worker.c for the map of the files and the walk of one event.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_WORKER_H
#define WEBHOOK_WORKER_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "http.h"
#include "signing.h"

#define SAFETY_POLL_MS 10000	/* idle re-check, in case a wake-up was missed */
#define PURGE_INTERVAL_MS 60000
#define PURGE_BATCH 1000
#define ERROR_BACKOFF_MS 1000
#define RECORD_BATCH 256		/* record results once this many are waiting */
#define RECORD_DELAY_MS 10		/* ... or once the oldest has waited this long */
#define ROUND_GAP_MS 5			/* under load, claims at most this often */

typedef enum JobKind
{
	JOB_DELIVERY,
	JOB_HANDSHAKE
} JobKind;

/* A verified (or handshaking) endpoint as the worker knows it. */
typedef struct Endpoint
{
	int64		id;				/* hash key */
	bool		live;			/* verified at the last reload */
	char	   *url;			/* with ?token= for the channel format */
	Oid			on_response;	/* InvalidOid: none */
	char	   *format;			/* the format's name */
	char	   *token;			/* for the body of the slackchat format */
	bool		user_format;	/* a user's function, not a built-in */
	Oid			format_fn;		/* that function; InvalidOid when it is gone */
	WebhookKeys keys;
	int			nheaders;
	char	  **headers;		/* "Name: value" lines */
	int			rate_limit;		/* deliveries a second; 0: no limit */
	bool		failing;		/* failing_since may be set: a success clears it */
	TimestampTz next_start;		/* under rate_limit, no delivery starts before */
	int			limit_idx;		/* its entry in the shared limits (limits.c), or -1 */
	dlist_head	ready;			/* jobs waiting for a slot */
	int			nready;
	int			inflight;
} Endpoint;

/*
 * The jobs claimed together share a memory context, deleted when the last
 * of them is recorded or dropped: a job's strings are never freed one by one.
 */
typedef struct JobBatch
{
	MemoryContext cxt;
	int			njobs;			/* jobs still alive */
} JobBatch;

/* One request to make: a delivery attempt or a handshake. */
typedef struct Job
{
	dlist_node	node;
	JobBatch   *batch;			/* where it and its strings live */
	JobKind		kind;
	int64		id;				/* delivery id, or endpoint id for a handshake */
	int64		endpoint_id;
	int64		event_id;
	int			attempts;		/* attempts made before this one */
	char	   *url;
	char	   *body;
	int			body_len;
	char	   *challenge;		/* handshake: what must come back */
	char	   *token;			/* handshake: the token it was sent with */
	char	   *endpoint_url;	/* handshake: the url it was sent to */
	WebhookKeys *keys;			/* handshake: the endpoint's signing keys */
	int			nheaders;		/* handshake: the endpoint's headers */
	char	  **headers;
	char	   *render_error;	/* the format function failed: nothing is sent */
	bool		once;			/* of a held event: no row yet (held.c) */
	bool		released;		/* once: dropped from memory unsent */
	bool		recording;		/* once: in the round's results */
	int64		row_id;			/* once: the row in flight written for it */
	Jsonb	   *event;			/* once: the event, for its row */
	char		webhook_id[64];
	WebhookRequest req;
} Job;

/*
 * The scheduler's state: what the worker keeps between rounds, and the
 * hints that let a round under load skip what cannot have changed.
 */
typedef struct Scheduler
{
	MemoryContext worker_ctx;	/* lives as long as the worker */
	MemoryContext loop_ctx;		/* reset at every turn of the loop */
	MemoryContext round_ctx;	/* a round's own work, reset after it */
	MemoryContext endpoint_ctx; /* endpoint strings, replaced on reload */

	/*
	 * This worker is number part_k of the part_n sharing its database: it
	 * claims the queue rows, and owns the deliveries, whose event id is k
	 * modulo n (queue.c); worker 0 also runs handshakes and the purge.
	 */
	int			part_n;
	int			part_k;

	HTAB	   *endpoints;		/* Endpoint by id */
	int			nready;			/* jobs waiting in endpoints' ready lists */
	dlist_head	finished;		/* finished jobs, to record */
	int			nfinished;
	TimestampTz first_finished_at;
	List	   *handshakes_in_flight;	/* endpoint ids */
	List	   *pending_release;	/* delivery ids to hand back to the table */

	bool		queue_hint;		/* the queue may have rows */
	bool		retry_hint;		/* deliveries may wait in the table, due now */
	bool		claim_from_start;	/* this round's claim ignores the floor */
	bool		round_claimed;	/* the last round ran a claim */
	bool		due_stale;		/* next_due must be read again */
	bool		due_partial;	/* next_due was read without some endpoints */
	bool		endpoints_loaded;
	uint64		changes_seen;	/* WebhookChanges() at the last reload */
	TimestampTz next_full_check;	/* reload and look at everything */
	TimestampTz next_due;		/* earliest retry or handshake due */
	TimestampTz next_start;		/* a rate-limited endpoint may start a job (0: none waits) */
	TimestampTz next_purge;
	TimestampTz backoff_until;	/* no rounds before this, after an error */
} Scheduler;

extern Scheduler sched;

/* worker.c: SPI helpers of the worker's files */
extern void WebhookPrepare(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types);
extern Datum WebhookIdArray(List *ids);
extern List *WebhookIdAppend(List *l, int64 id);
extern int64 WebhookGetInt(HeapTuple tup, TupleDesc desc, int col);
extern void WebhookAllowSeqscans(bool on);

/* queue.c: every statement on webhook.queue and the claims */
extern void WebhookQueuePrepare(Oid queue);
extern Oid	WebhookQueueReady(bool extension);
extern void WebhookQueueRecover(void);
extern bool WebhookQueueClaimDue(List *room, dlist_head *claimed);
extern void WebhookQueueClaimEvents(List *room, dlist_head *claimed);
extern void WebhookQueueRelease(List *ids);
extern void WebhookQueueReadNextDue(List *room, TimestampTz now);
extern void WebhookQueuePurge(TimestampTz now);
extern void WebhookQueueRoundEnd(bool committed);

/* dispatch.c: the endpoints in memory, the jobs and their starting */
extern void WebhookEndpointsInit(void);
extern void WebhookEndpointsPrepare(void);
extern char *WebhookDeliveryUrl(const char *url, const char *format, const char *token);
extern void WebhookReleaseJob(Job *job);
extern void WebhookDispatchPrepare(void);
extern void WebhookReloadEndpoints(void);
extern List *WebhookEndpointsWithRoom(void);
extern int	WebhookLiveEndpoints(void);
extern bool WebhookWantEvents(void);
extern Endpoint *WebhookEndpoint(int64 id);
extern int	WebhookCollectJobs(dlist_head *claimed);
extern int	WebhookCollectHeld(dlist_head *claimed, List **fan_out, int64 *max_event);
extern void WebhookClaimHandshakes(dlist_head *claimed);
extern void WebhookEnqueueJobs(dlist_head *claimed);
extern void WebhookStartHandshakes(dlist_head *claimed);
extern void WebhookStartReadyJobs(void);
extern void WebhookJobDone(Job *job);
extern void WebhookFreeJobs(dlist_head *jobs);
extern void WebhookReleaseRecorded(dlist_head *recorded);

/* limits.c: the per-endpoint limits across a database's workers (part_n > 1) */
extern void WebhookLimitsJoin(int slot, int k);
extern bool WebhookLimitsTryStart(Endpoint *ep, TimestampTz now, TimestampTz *retry_at);
extern void WebhookLimitsDone(Endpoint *ep);

/* held.c: events held in memory, their deliveries written once */
extern void WebhookHeldInit(void);
extern long WebhookHeldCount(void);
extern void WebhookHeldAdd(Job *job);
extern List *WebhookHeldSiblings(Job *job);
extern void WebhookHeldRecorded(int64 event_id);
extern Datum WebhookHeldIds(void);

/* render.c: the built-in formats */
extern char *WebhookRenderBuiltin(const char *format, Jsonb *event, const char *token);

/* What a handshake makes of its endpoint. */
typedef struct HandshakeVerdict
{
	const char *state;			/* verified, unverified or pending */
	char	   *reason;			/* state_reason; NULL for none */
	int64		next_ms;		/* pending: when to try again; -1 otherwise */
} HandshakeVerdict;

/* handshake.c: a handshake's verdict */
extern void WebhookHandshakePrepare(void);
extern HandshakeVerdict WebhookJudgeHandshake(int status, const char *body, const char *error,
											  const char *challenge, int64 retry_ms);
extern void WebhookStoreHandshake(int64 endpoint_id, const char *url, const char *token,
								  HandshakeVerdict v);

/* record.c: results, the retry policy, on_response */
extern int64 WebhookRetryDelay(int attempts_made, int64 at_least_ms);
extern void WebhookRecordPrepare(void);
extern void WebhookRecordResults(dlist_head *done);

#endif							/* WEBHOOK_WORKER_H */
