/*-------------------------------------------------------------------------
 *
 * guc.h
 *		The webhook.* settings, parsed once at load or reload.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_GUC_H
#define WEBHOOK_GUC_H

#define WEBHOOK_MAX_RETRIES 64
#define WEBHOOK_MAX_BLOCKED 64

/* One CIDR block of webhook.blocked_networks. */
typedef struct WebhookNetwork
{
	int			family;			/* AF_INET or AF_INET6 */
	int			bits;
	unsigned char addr[16];
} WebhookNetwork;

/* Parsed form of webhook.retry_schedule. */
typedef struct WebhookSchedule
{
	int			count;
	int64		delay_ms[WEBHOOK_MAX_RETRIES];
} WebhookSchedule;

/* Parsed form of webhook.blocked_networks. */
typedef struct WebhookNetworks
{
	int			count;
	WebhookNetwork nets[WEBHOOK_MAX_BLOCKED];
} WebhookNetworks;

extern char *webhook_databases;
extern int	webhook_workers_per_database;
extern int	webhook_max_concurrency;
extern int	webhook_endpoint_concurrency;
extern int	webhook_timeout;	/* ms */
extern int	webhook_disable_after;	/* s, 0 = never */
extern int	webhook_retention;	/* s */
extern int	webhook_batch_size;
extern int	webhook_max_response_size;	/* bytes */

extern WebhookSchedule webhook_schedule;
extern WebhookNetworks webhook_blocked;

extern void WebhookDefineSettings(void);

#endif							/* WEBHOOK_GUC_H */
