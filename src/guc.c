/*-------------------------------------------------------------------------
 *
 * guc.c
 *		The webhook.* settings. The two list-valued ones (retry_schedule and
 *		blocked_networks) are parsed by their check hooks, so a bad value is
 *		refused when it is set and the worker never parses text in its loop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "guc.h"

char	   *webhook_database_name = NULL;
int			webhook_max_concurrency = 64;
int			webhook_endpoint_concurrency = 16;
int			webhook_timeout = 10000;
int			webhook_disable_after = 5 * 24 * 3600;
int			webhook_retention = 7 * 24 * 3600;
int			webhook_batch_size = 500;
int			webhook_max_response_size = 64 * 1024;

static char *webhook_retry_schedule_text = NULL;
static char *webhook_blocked_networks_text = NULL;

WebhookSchedule webhook_schedule;
WebhookNetworks webhook_blocked;

static bool check_retry_schedule(char **newval, void **extra, GucSource source);
static void assign_retry_schedule(const char *newval, void *extra);
static bool check_blocked_networks(char **newval, void **extra, GucSource source);
static void assign_blocked_networks(const char *newval, void *extra);

/* Define every webhook.* setting and reserve the prefix. */
void
WebhookDefineSettings(void)
{
	DefineCustomStringVariable("webhook.database_name",
							   "Database the delivery worker serves.",
							   NULL,
							   &webhook_database_name,
							   "postgres",
							   /*
								* Only the worker reads it, and it exists only when
								* preloaded; PostgreSQL refuses postmaster settings
								* defined later, so then it is merely shown.
								*/
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("webhook.max_concurrency",
							"Most HTTP requests the worker keeps in flight.",
							NULL,
							&webhook_max_concurrency,
							64, 1, 4096,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhook.endpoint_concurrency",
							"Most HTTP requests in flight to one endpoint.",
							NULL,
							&webhook_endpoint_concurrency,
							16, 1, 4096,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhook.timeout",
							"Time limit of one HTTP request, handshakes and moderation hooks included.",
							NULL,
							&webhook_timeout,
							10000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("webhook.retry_schedule",
							   "Delays between attempts of a failing delivery, as a comma-separated list such as 5s,5m,2h.",
							   "When the list is used up the delivery is failed.",
							   &webhook_retry_schedule_text,
							   "5s,5m,30m,2h,5h,10h,10h",
							   PGC_SIGHUP, 0,
							   check_retry_schedule, assign_retry_schedule, NULL);

	DefineCustomIntVariable("webhook.disable_after",
							"Disable an endpoint that has failed with no success for this long.",
							"0 never disables.",
							&webhook_disable_after,
							5 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhook.retention",
							"How long delivered and failed deliveries are kept.",
							NULL,
							&webhook_retention,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhook.batch_size",
							"Queued events the worker claims at once.",
							NULL,
							&webhook_batch_size,
							500, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhook.max_response_size",
							"Most bytes of a response body kept with the delivery.",
							NULL,
							&webhook_max_response_size,
							64 * 1024, 0, 64 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomStringVariable("webhook.blocked_networks",
							   "Networks (CIDR, comma-separated) the worker must not connect to.",
							   "Checked on the address actually connected to, after name resolution.",
							   &webhook_blocked_networks_text,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_blocked_networks, assign_blocked_networks, NULL);

	MarkGUCPrefixReserved("webhook");
}

/*
 * Parse one duration such as "500ms", "5s", "5m", "5min", "2h" or "1d" into
 * milliseconds; false when it is not one.
 */
static bool
parse_duration(const char *s, int64 *ms)
{
	char	   *end;
	double		n;
	int64		unit;

	while (isspace((unsigned char) *s))
		s++;
	if (!isdigit((unsigned char) *s))
		return false;
	n = strtod(s, &end);
	while (isspace((unsigned char) *end))
		end++;
	if (strncmp(end, "ms", 2) == 0)
		unit = 1, end += 2;
	else if (strncmp(end, "min", 3) == 0)
		unit = 60000, end += 3;
	else if (*end == 's')
		unit = 1000, end += 1;
	else if (*end == 'm')
		unit = 60000, end += 1;
	else if (*end == 'h')
		unit = 3600000, end += 1;
	else if (*end == 'd')
		unit = 86400000, end += 1;
	else
		return false;
	while (isspace((unsigned char) *end))
		end++;
	if (*end != '\0' || n * unit > (double) INT64CONST(1000) * 86400 * 365 * 10)
		return false;
	*ms = (int64) (n * unit);
	return true;
}

static bool
check_retry_schedule(char **newval, void **extra, GucSource source)
{
	WebhookSchedule *sched;
	char	   *copy;
	char	   *item;
	char	   *save;

	/* extra is released by guc.c with free() */
	sched = (WebhookSchedule *) malloc(sizeof(WebhookSchedule));
	if (sched == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		return false;
	}
	sched->count = 0;
	copy = pstrdup(*newval);
	for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
	{
		int64		ms;

		if (!parse_duration(item, &ms))
		{
			GUC_check_errdetail("\"%s\" is not a duration.", item);
			GUC_check_errhint("Write durations such as 500ms, 5s, 5m, 2h or 1d, separated by commas.");
			pfree(copy);
			free(sched);
			return false;
		}
		if (sched->count >= WEBHOOK_MAX_RETRIES)
		{
			GUC_check_errdetail("The schedule has more than %d delays.", WEBHOOK_MAX_RETRIES);
			pfree(copy);
			free(sched);
			return false;
		}
		sched->delay_ms[sched->count++] = ms;
	}
	pfree(copy);
	*extra = sched;
	return true;
}

static void
assign_retry_schedule(const char *newval, void *extra)
{
	if (extra)
		memcpy(&webhook_schedule, extra, sizeof(WebhookSchedule));
}

/* Parse "a.b.c.d/n" or "x::y/n" (prefix optional) into *net. */
static bool
parse_network(const char *text, WebhookNetwork *net)
{
	char		buf[128];
	char	   *slash;
	char	   *p = buf;
	int			maxbits;

	while (isspace((unsigned char) *text))
		text++;
	strlcpy(buf, text, sizeof(buf));
	for (p = buf + strlen(buf); p > buf && isspace((unsigned char) p[-1]); p--)
		p[-1] = '\0';
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	memset(net, 0, sizeof(*net));
	if (inet_pton(AF_INET, buf, net->addr) == 1)
		net->family = AF_INET, maxbits = 32;
	else if (inet_pton(AF_INET6, buf, net->addr) == 1)
		net->family = AF_INET6, maxbits = 128;
	else
		return false;
	net->bits = maxbits;
	if (slash)
	{
		char	   *end;
		long		bits = strtol(slash + 1, &end, 10);

		if (end == slash + 1 || *end != '\0' || bits < 0 || bits > maxbits)
			return false;
		net->bits = (int) bits;
	}
	return true;
}

static bool
check_blocked_networks(char **newval, void **extra, GucSource source)
{
	WebhookNetworks *nets;
	char	   *copy;
	char	   *item;
	char	   *save;

	nets = (WebhookNetworks *) malloc(sizeof(WebhookNetworks));
	if (nets == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		return false;
	}
	nets->count = 0;
	copy = pstrdup(*newval);
	for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
	{
		if (nets->count >= WEBHOOK_MAX_BLOCKED)
		{
			GUC_check_errdetail("The list has more than %d networks.", WEBHOOK_MAX_BLOCKED);
			pfree(copy);
			free(nets);
			return false;
		}
		if (!parse_network(item, &nets->nets[nets->count]))
		{
			GUC_check_errdetail("\"%s\" is not a network in CIDR form.", item);
			GUC_check_errhint("Write networks such as 10.0.0.0/8 or fd00::/8, separated by commas.");
			pfree(copy);
			free(nets);
			return false;
		}
		nets->count++;
	}
	pfree(copy);
	*extra = nets;
	return true;
}

static void
assign_blocked_networks(const char *newval, void *extra)
{
	if (extra)
		memcpy(&webhook_blocked, extra, sizeof(WebhookNetworks));
}

/* Is the address (4 or 16 bytes of the family) in webhook.blocked_networks? */
static bool
address_blocked(int family, const unsigned char *bytes)
{
	int			i;

	/* an IPv4-mapped IPv6 address is checked as the IPv4 address it is */
	if (family == AF_INET6 && memcmp(bytes, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)
	{
		family = AF_INET;
		bytes += 12;
	}

	for (i = 0; i < webhook_blocked.count; i++)
	{
		const WebhookNetwork *net = &webhook_blocked.nets[i];
		int			full = net->bits / 8;
		int			rest = net->bits % 8;

		if (net->family != family)
			continue;
		if (memcmp(bytes, net->addr, full) != 0)
			continue;
		if (rest && ((bytes[full] ^ net->addr[full]) & (0xFF << (8 - rest)) & 0xFF))
			continue;
		return true;
	}
	return false;
}

/* Does the socket address fall in webhook.blocked_networks? Safe in curl callbacks. */
bool
WebhookAddressBlocked(const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET)
		return address_blocked(AF_INET,
							   (const unsigned char *) &((const struct sockaddr_in *) addr)->sin_addr);
	if (addr->sa_family == AF_INET6)
		return address_blocked(AF_INET6,
							   (const unsigned char *) &((const struct sockaddr_in6 *) addr)->sin6_addr);
	return false;
}

/* The same for an address as text, as curl reports it. Safe in curl callbacks. */
bool
WebhookAddressTextBlocked(const char *ip)
{
	unsigned char bytes[16];

	if (inet_pton(AF_INET, ip, bytes) == 1)
		return address_blocked(AF_INET, bytes);
	if (inet_pton(AF_INET6, ip, bytes) == 1)
		return address_blocked(AF_INET6, bytes);
	return false;
}
