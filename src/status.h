/*-------------------------------------------------------------------------
 *
 * status.h
 *		The delivery workers' counters in shared memory, read by
 *		webhook.worker_status (status.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_STATUS_H
#define WEBHOOK_STATUS_H

/* What became of one recorded delivery attempt. */
typedef enum WebhookResult
{
	WEBHOOK_RESULT_DELIVERED,
	WEBHOOK_RESULT_FAILED,		/* finally: no attempt left, 410, not sent */
	WEBHOOK_RESULT_RETRIED		/* failed, another attempt is scheduled */
} WebhookResult;

extern void WebhookStatusShmemInit(void);
extern void WebhookStatusAttach(void);
extern void WebhookStatusInFlight(int n);
extern void WebhookStatusResult(WebhookResult result);
extern void WebhookStatusRoundEnd(bool committed);

#endif							/* WEBHOOK_STATUS_H */
