/*-------------------------------------------------------------------------
 *
 * guc.c
 *		The webhook.* settings. The two list-valued ones the worker reads
 *		(retry_schedule and blocked_networks) are parsed by their check
 *		hooks, so a bad value is refused when it is set and the worker never
 *		parses text in its loop; webhook.databases, read only when the
 *		launcher wakes, is checked when set and split when read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "guc.h"
#include "webhook.h"

char	   *webhook_databases = NULL;
int			webhook_workers_per_database = 1;
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

static bool check_databases(char **newval, void **extra, GucSource source);
static bool check_retry_schedule(char **newval, void **extra, GucSource source);
static void assign_retry_schedule(const char *newval, void *extra);
static bool check_blocked_networks(char **newval, void **extra, GucSource source);
static void assign_blocked_networks(const char *newval, void *extra);

/* Define every webhook.* setting and reserve the prefix. */
void
WebhookDefineSettings(void)
{
	DefineCustomStringVariable("webhook.databases",
							   "Databases the launcher serves, as a comma-separated list of names.",
							   "Empty: every database where the extension is installed.",
							   &webhook_databases,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   check_databases, NULL, NULL);

	DefineCustomIntVariable("webhook.workers_per_database",
							"Delivery workers sharing each served database's work.",
							"Each takes its share of the events; the per-endpoint limits hold across them.",
							&webhook_workers_per_database,
							1, 1, WEBHOOK_SLOT_WORKERS,
							PGC_SIGHUP, 0,
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
							   "Delays between attempts of a failing delivery, as a comma-separated list such as 5s,5min,2h.",
							   "When the list is used up the delivery is failed.",
							   &webhook_retry_schedule_text,
							   "5s,5min,30min,2h,5h,10h,10h",
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
 * Parse one duration such as "500ms", "5s", "5min", "2h" or "1d" into
 * milliseconds: PostgreSQL's time units, without "us" (too fine to wait
 * for); false when it is not one.
 */
static bool
parse_duration(const char *s, void *out)
{
	static const struct
	{
		const char *unit;
		int64		ms;
	}			units[] = {
		{"ms", 1}, {"min", 60000}, {"s", 1000}, {"h", 3600000}, {"d", 86400000}
	};
	char	   *end;
	double		n;
	int64		unit = 0;

	while (isspace((unsigned char) *s))
		s++;
	if (!isdigit((unsigned char) *s))
		return false;
	n = strtod(s, &end);
	while (isspace((unsigned char) *end))
		end++;
	for (int i = 0; i < (int) lengthof(units); i++)
	{
		size_t		len = strlen(units[i].unit);

		if (strncmp(end, units[i].unit, len) == 0)
		{
			unit = units[i].ms;
			end += len;
			break;
		}
	}
	while (isspace((unsigned char) *end))
		end++;
	if (unit == 0 || *end != '\0' || n * unit > (double) INT64CONST(1000) * 86400 * 365 * 10)
		return false;
	*(int64 *) out = (int64) (n * unit);
	return true;
}

/* Parse "a.b.c.d/n" or "x::y/n" (prefix optional) into a WebhookNetwork. */
static bool
parse_network(const char *text, void *out)
{
	WebhookNetwork *net = (WebhookNetwork *) out;
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

/* How one list-valued setting's items are parsed and reported. */
typedef struct ListSyntax
{
	int			max_items;
	size_t		item_size;
	bool		(*parse) (const char *item, void *out);
	const char *not_an_item;	/* errdetail, %s: the item */
	const char *too_many;		/* errdetail, %d: max_items */
	const char *hint;
} ListSyntax;

/*
 * The check hook of a comma-separated list: *extra becomes a malloc'd
 * count followed by max_items items (guc.c releases it with free()).
 */
static bool
check_list(const ListSyntax *syntax, char **newval, void **extra)
{
	int		   *count;
	char	   *items;
	char	   *copy;
	char	   *item;
	char	   *save;
	bool		ok = true;

	count = (int *) malloc(MAXALIGN(sizeof(int)) + syntax->max_items * syntax->item_size);
	if (count == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		return false;
	}
	*count = 0;
	items = (char *) count + MAXALIGN(sizeof(int));
	copy = pstrdup(*newval);
	for (item = strtok_r(copy, ",", &save); ok && item; item = strtok_r(NULL, ",", &save))
	{
		if (*count >= syntax->max_items)
		{
			GUC_check_errdetail(syntax->too_many, syntax->max_items);
			ok = false;
		}
		else if (!syntax->parse(item, items + *count * syntax->item_size))
		{
			GUC_check_errdetail(syntax->not_an_item, item);
			GUC_check_errhint("%s", syntax->hint);
			ok = false;
		}
		else
			(*count)++;
	}
	pfree(copy);
	if (!ok)
	{
		free(count);
		return false;
	}
	*extra = count;
	return true;
}

/* Copy what check_list() parsed into a setting's parsed form. */
static void
assign_list(const ListSyntax *syntax, void *extra, int *count, void *items)
{
	if (extra == NULL)
		return;
	*count = *(int *) extra;
	memcpy(items, (char *) extra + MAXALIGN(sizeof(int)), *count * syntax->item_size);
}

static const ListSyntax schedule_syntax = {
	WEBHOOK_MAX_RETRIES, sizeof(int64), parse_duration,
	gettext_noop("\"%s\" is not a duration."),
	gettext_noop("The schedule has more than %d delays."),
	gettext_noop("Write durations such as 500ms, 5s, 5min, 2h or 1d, separated by commas.")
};

static const ListSyntax networks_syntax = {
	WEBHOOK_MAX_BLOCKED, sizeof(WebhookNetwork), parse_network,
	gettext_noop("\"%s\" is not a network in CIDR form."),
	gettext_noop("The list has more than %d networks."),
	gettext_noop("Write networks such as 10.0.0.0/8 or fd00::/8, separated by commas.")
};

static bool
check_retry_schedule(char **newval, void **extra, GucSource source)
{
	return check_list(&schedule_syntax, newval, extra);
}

static void
assign_retry_schedule(const char *newval, void *extra)
{
	assign_list(&schedule_syntax, extra, &webhook_schedule.count, webhook_schedule.delay_ms);
}

static bool
check_blocked_networks(char **newval, void **extra, GucSource source)
{
	return check_list(&networks_syntax, newval, extra);
}

static void
assign_blocked_networks(const char *newval, void *extra)
{
	assign_list(&networks_syntax, extra, &webhook_blocked.count, webhook_blocked.nets);
}

/* A list of database names, as in SQL: unquoted names are folded to lower case. */
static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitIdentifierString(copy, ',', &names);

	if (!ok)
	{
		GUC_check_errdetail("List syntax is invalid.");
		GUC_check_errhint("Write database names separated by commas, in double quotes when they are not lower case.");
	}
	list_free(names);
	pfree(copy);
	return ok;
}
