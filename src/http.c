/*-------------------------------------------------------------------------
 *
 * http.c
 *		Everything HTTP, and the only file that sees libcurl: URLs, request
 *		headers, webhook.blocked_networks, the worker's asynchronous engine,
 *		the backends' synchronous one, and the decoding of responses.
 *
 * The worker drives libcurl's multi "socket" interface from its latch wait.
 * curl tells us which sockets it wants watched through the socket callback;
 * we keep them in an epoll set of our own. That epoll descriptor is one
 * socket in a long-lived WaitEventSet together with the latch and postmaster
 * death, so one wait sees all three and SIGTERM or SIGHUP end it at once,
 * whatever the transfers are doing. (A WaitEventSet cannot drop sockets in
 * PostgreSQL 15; nesting epoll sets avoids rebuilding it on every wait.)
 *
 * The callbacks run inside libcurl: they never call palloc or ereport. They
 * use malloc, record failures in the request, and return curl's error codes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port.h"
#include "portability/instr_time.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "guc.h"
#include "http.h"
#include "webhook.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "webhook needs libcurl 7.85.0 or later (CURLOPT_PROTOCOLS_STR)"
#endif

StaticAssertDecl(WEBHOOK_HTTP_ERROR_SIZE >= CURL_ERROR_SIZE, "curl's error buffer must fit");

#define MAX_EPOLL_EVENTS 256
#define MAX_HEADER_BYTES (32 * 1024)

static CURLM *multi = NULL;
static int	epoll_fd = -1;
static WaitEventSet *wait_set = NULL;
#define LATCH_POS 0				/* the latch's place in wait_set */
static int	in_flight = 0;

/* When curl wants its timeout action, in ms from a monotonic clock; -1 none. */
static int64 timer_deadline = -1;

/* Reused easy handles: curl keeps the connections in the multi handle. */
static CURL *easy_pool[4096];
static int	easy_pool_len = 0;

PG_FUNCTION_INFO_V1(webhook_check_url);

/* ---------------------------------------------------------------- URLs */

/*
 * Refuse a URL that libcurl cannot parse, whose scheme is not http or https,
 * or that has no host. Returns the URL as libcurl normalizes it.
 */
Datum
webhook_check_url(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	CURLU	   *h = curl_url();
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *full = NULL;
	text	   *result;

	if (h == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	rc = curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (rc != CURLUE_OK)
	{
		const char *why = curl_url_strerror(rc);

		curl_url_cleanup(h);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid endpoint url \"%s\"", url),
				 errdetail("libcurl could not parse it: %s.", why),
				 errhint("Give an absolute URL such as https://example.com/hooks.")));
	}
	if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		(pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0))
	{
		char	   *s = pstrdup(scheme ? scheme : "");

		curl_free(scheme);
		curl_url_cleanup(h);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint url scheme \"%s\" is not supported", s),
				 errhint("Use http or https.")));
	}
	if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK || host == NULL || host[0] == '\0')
	{
		curl_free(scheme);
		curl_free(host);
		curl_url_cleanup(h);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint url \"%s\" has no host", url)));
	}
	if (curl_url_get(h, CURLUPART_URL, &full, 0) != CURLUE_OK)
	{
		curl_free(scheme);
		curl_free(host);
		curl_url_cleanup(h);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid endpoint url \"%s\"", url),
				 errdetail("libcurl could not rebuild it.")));
	}
	result = cstring_to_text(full);
	curl_free(full);
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(h);
	PG_RETURN_TEXT_P(result);
}

/* The URL with "token=<token>" appended to its query (the channel format). */
char *
WebhookUrlWithToken(const char *url, const char *token)
{
	CURLU	   *h = curl_url();
	char	   *query = psprintf("token=%s", token);
	char	   *full = NULL;
	char	   *result;

	if (h == NULL ||
		curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_set(h, CURLUPART_QUERY, query, CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK ||
		curl_url_get(h, CURLUPART_URL, &full, 0) != CURLUE_OK)
	{
		curl_url_cleanup(h);
		return pstrdup(url);
	}
	result = pstrdup(full);
	curl_free(full);
	curl_url_cleanup(h);
	return result;
}

/* Append "&name=value" (url-encoded) to a form body; NULL values are left out. */
void
WebhookFormField(StringInfo buf, const char *name, const char *value)
{
	char	   *enc;

	if (value == NULL)
		return;
	enc = curl_easy_escape(NULL, value, 0);
	if (enc == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (buf->len > 0)
		appendStringInfoChar(buf, '&');
	appendStringInfo(buf, "%s=%s", name, enc);
	curl_free(enc);
}

/* ---------------------------------------------------------------- headers */

/* An endpoint's headers (jsonb text) as "Name: value" lines, palloc'd. */
void
WebhookParseHeaders(const char *json, int *n, char ***lines)
{
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	int			count = 0;
	char	  **out = palloc(sizeof(char *) * (JsonContainerSize(&jb->root) + 1));

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type == jbvString && key)
			out[count++] = psprintf("%s: %.*s", key, v.val.string.len, v.val.string.val);
	}
	*n = count;
	*lines = out;
}

/*
 * The header list of a request: its content type, the Standard Webhooks
 * headers for its id, body and the current time, then the endpoint's own.
 * Malloc'd by libcurl; freed by WebhookHttpRelease().
 */
static struct curl_slist *
request_headers(const WebhookRequest *req)
{
	struct curl_slist *h = NULL;
	int64		ts = (int64) time(NULL);
	char	   *sig = WebhookSignature(req->keys, req->id, ts, req->body, req->body_len);
	char	   *lines[5];

	lines[0] = psprintf("Content-Type: %s", req->content_type);
	lines[1] = "Expect:";		/* no 100-continue round trip */
	lines[2] = psprintf("webhook-id: %s", req->id);
	lines[3] = psprintf("webhook-timestamp: " INT64_FORMAT, ts);
	lines[4] = psprintf("webhook-signature: %s", sig);
	for (int i = 0; i < (int) lengthof(lines); i++)
		h = curl_slist_append(h, lines[i]);
	for (int i = 0; i < req->nheaders; i++)
		h = curl_slist_append(h, req->headers[i]);
	pfree(sig);
	pfree(lines[0]);
	pfree(lines[2]);
	pfree(lines[3]);
	pfree(lines[4]);
	if (h == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return h;
}

/* ---------------------------------------------------------------- webhook.blocked_networks */

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
static bool
sockaddr_blocked(const struct sockaddr *addr)
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
static bool
ip_text_blocked(const char *ip)
{
	unsigned char bytes[16];

	if (inet_pton(AF_INET, ip, bytes) == 1)
		return address_blocked(AF_INET, bytes);
	if (inet_pton(AF_INET6, ip, bytes) == 1)
		return address_blocked(AF_INET6, bytes);
	return false;
}

/* ---------------------------------------------------------------- the engine */

static int64
now_ms(void)
{
	instr_time	t;

	INSTR_TIME_SET_CURRENT(t);
	return (int64) INSTR_TIME_GET_MILLISEC(t);
}

/* curl's socket callback: mirror what curl wants watched into epoll_fd. */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		/* the socket may already be closed: nothing to do then */
		epoll_ctl(epoll_fd, EPOLL_CTL_DEL, s, NULL);
		curl_multi_assign(multi, s, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev.events |= EPOLLIN;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev.events |= EPOLLOUT;
	if (socketp == NULL)
	{
		if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, s, &ev) != 0 &&
			epoll_ctl(epoll_fd, EPOLL_CTL_MOD, s, &ev) != 0)
			return -1;
		curl_multi_assign(multi, s, (void *) 1);
	}
	else if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, s, &ev) != 0)
		return -1;
	return 0;
}

/* curl's timer callback: remember when curl wants to be called back. */
static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	timer_deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	return 0;
}

/*
 * Append to a malloc'd buffer that grows as needed: most answers are a few
 * hundred bytes, and hundreds of finished requests can wait to be recorded.
 * False when out of memory.
 */
static bool
buf_append(char **buf, size_t *len, size_t *alloc, const char *data, size_t n)
{
	if (*len + n > *alloc)
	{
		size_t		want = Max(*alloc * 2, 512);
		char	   *grown;

		while (want < *len + n)
			want *= 2;
		grown = realloc(*buf, want);
		if (grown == NULL)
			return false;
		*buf = grown;
		*alloc = want;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	return true;
}

/* Keep the first max_body bytes of the body. */
static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	WebhookRequest *req = (WebhookRequest *) userp;
	size_t		n = size * nmemb;
	size_t		keep = Min(n, req->max_body - req->resp_len);

	if (keep > 0 && !buf_append(&req->resp, &req->resp_len, &req->resp_alloc, data, keep))
		return 0;
	/* the rest of the body is not kept, but the response still counts */
	return n;
}

/* Collect the header lines of the last response (not of 1xx interim ones). */
static size_t
header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	WebhookRequest *req = (WebhookRequest *) userp;
	size_t		n = size * nmemb;

	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
		req->hdrs_len = 0;
	if (req->hdrs_len + n > MAX_HEADER_BYTES)
		return n;				/* drop what does not fit, keep going */
	if (!buf_append(&req->hdrs, &req->hdrs_len, &req->hdrs_alloc, data, n))
		return 0;
	return n;
}

/* Refuse connections to webhook.blocked_networks, checked after resolution. */
static curl_socket_t
opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	WebhookRequest *req = (WebhookRequest *) clientp;

	if (sockaddr_blocked(&address->addr))
	{
		req->blocked = true;
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/*
 * Check the address again once connected: a kept-alive connection opened
 * before webhook.blocked_networks changed does not go through opensocket_cb.
 */
static int
prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
	WebhookRequest *req = (WebhookRequest *) clientp;

	if (ip_text_blocked(primary_ip))
	{
		req->blocked = true;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

static void
http_cleanup(int code, Datum arg)
{
	int			i;

	for (i = 0; i < easy_pool_len; i++)
		curl_easy_cleanup(easy_pool[i]);
	easy_pool_len = 0;
	if (multi)
		curl_multi_cleanup(multi);
	multi = NULL;
	curl_global_cleanup();
}

/* Set up libcurl, the epoll set and the wait set. Once per worker. */
void
WebhookHttpInit(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	on_proc_exit(http_cleanup, 0);

	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create epoll instance: %m")));

	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	WebhookHttpConfigure();

	wait_set = WebhookCreateWaitEventSet(3);
	if (AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL) != LATCH_POS)
		elog(ERROR, "unexpected wait event position");
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, epoll_fd, NULL, NULL);
}

/* Apply the settings that live in the multi handle (after a reload too). */
void
WebhookHttpConfigure(void)
{
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) webhook_max_concurrency * 2);
}

static CURL *
get_easy(void)
{
	CURL	   *easy;

	if (easy_pool_len > 0)
	{
		easy = easy_pool[--easy_pool_len];
		curl_easy_reset(easy);
		return easy;
	}
	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl easy handle")));
	return easy;
}

static void
put_easy(CURL *easy)
{
	if (easy_pool_len < (int) lengthof(easy_pool))
		easy_pool[easy_pool_len++] = easy;
	else
		curl_easy_cleanup(easy);
}

/* Reset a request's results and point an easy handle at it. */
static void
setup_easy(CURL *easy, WebhookRequest *req)
{
	req->outcome = WEBHOOK_HTTP_FAILED;
	req->code = CURLE_OK;
	req->status = 0;
	req->duration_us = 0;
	req->blocked = false;
	req->errbuf[0] = '\0';
	req->resp = NULL;
	req->resp_len = 0;
	req->resp_alloc = 0;
	req->hdrs = NULL;
	req->hdrs_len = 0;
	req->hdrs_alloc = 0;
	req->easy = easy;
	req->header_list = request_headers(req);

	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, (struct curl_slist *) req->header_list);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, WEBHOOK_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, Min(req->timeout_ms, 10000L));
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, req);
	if (webhook_blocked.count > 0)
	{
		curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, prereq_cb);
		curl_easy_setopt(easy, CURLOPT_PREREQDATA, req);
	}
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	/* bodies are small: the 64 kB default upload buffer per handle is memory for nothing */
	curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
}

/* Start a POST; it completes in a later WebhookHttpWait(). */
void
WebhookHttpStart(WebhookRequest *req)
{
	CURL	   *easy = get_easy();
	CURLMcode	mc;

	setup_easy(easy, req);
	mc = curl_multi_add_handle(multi, easy);
	if (mc != CURLM_OK)
	{
		put_easy(easy);
		req->easy = NULL;
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start an HTTP request: %s", curl_multi_strerror(mc))));
	}
	in_flight++;
}

/* Fill in the results of a finished transfer. */
static void
finish_request(WebhookRequest *req, CURL *easy, CURLcode result)
{
	curl_off_t	total = 0;

	req->code = result;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &req->status);
	curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total);
	req->duration_us = (int64) total;
	if (result == CURLE_OK && req->status > 0)
		req->outcome = WEBHOOK_HTTP_RESPONSE;
	else if (result == CURLE_OPERATION_TIMEDOUT)
		req->outcome = WEBHOOK_HTTP_TIMEOUT;
	else
		req->outcome = WEBHOOK_HTTP_FAILED;
	req->easy = NULL;
}

int
WebhookHttpInFlight(void)
{
	return in_flight;
}

/* Move finished transfers to *done. */
static void
collect_done(dlist_head *done)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		WebhookRequest *req;
		CURL	   *easy = msg->easy_handle;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);
		finish_request(req, easy, msg->data.result);
		curl_multi_remove_handle(multi, easy);
		put_easy(easy);
		in_flight--;
		dlist_push_tail(done, &req->node);
	}
}

/*
 * Wait for the latch, postmaster death, curl's sockets or curl's timer, at
 * most timeout_ms (-1: no limit), then let curl do its work and move the
 * finished requests to *done. Returns the WL_* events seen (WL_LATCH_SET
 * tells the caller the latch was set; it is reset here).
 *
 * Without wake_on_latch the latch does not end the wait (the caller waits a
 * short while for a round it will run anyway): a committing backend's
 * SetLatch then only marks it, without a signal, and the mark is reported
 * when the wait ends.
 */
int
WebhookHttpWait(long timeout_ms, dlist_head *done, bool wake_on_latch)
{
	WaitEvent	event;
	int			nevents;
	int			seen = 0;
	int			running;
	int64		now = now_ms();

	if (!wake_on_latch)
		ModifyWaitEvent(wait_set, LATCH_POS, WL_LATCH_SET, NULL);

	if (timer_deadline >= 0)
	{
		long		curl_ms = (long) Max(timer_deadline - now, 0);

		if (timeout_ms < 0 || curl_ms < timeout_ms)
			timeout_ms = curl_ms;
	}

	nevents = WaitEventSetWait(wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION);
	if (nevents > 0)
		seen = event.events;
	if (!wake_on_latch)
	{
		ModifyWaitEvent(wait_set, LATCH_POS, WL_LATCH_SET, MyLatch);
		if (MyLatch->is_set)
			seen |= WL_LATCH_SET;
	}
	if (seen & WL_LATCH_SET)
		ResetLatch(MyLatch);

	/* whatever woke us, serve every ready curl socket */
	for (;;)
	{
		struct epoll_event evs[MAX_EPOLL_EVENTS];
		int			n = epoll_wait(epoll_fd, evs, MAX_EPOLL_EVENTS, 0);
		int			i;

		if (n <= 0)
			break;
		for (i = 0; i < n; i++)
		{
			int			flags = 0;

			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				flags |= CURL_CSELECT_IN;
			if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
				flags |= CURL_CSELECT_OUT;
			if (evs[i].events & EPOLLERR)
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(multi, evs[i].data.fd, flags, &running);
		}
		if (n < MAX_EPOLL_EVENTS)
			break;
	}
	if (timer_deadline >= 0 && now_ms() >= timer_deadline)
	{
		timer_deadline = -1;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	collect_done(done);
	return seen;
}

/* ---------------------------------------------------------------- a backend's request */

/*
 * Make a request and wait for it, in an ordinary backend (the moderation
 * hooks). The backend keeps one multi handle, so keep-alive connections are
 * reused from one call to the next; interrupts are served every 100 ms.
 */
void
WebhookHttpPerform(WebhookRequest *req)
{
	static CURLM *sync_multi = NULL;
	static CURL *sync_easy = NULL;
	CURLMsg    *msg;
	int			running = 1;
	int			left;

	if (sync_multi == NULL)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialize libcurl")));
		sync_multi = curl_multi_init();
		sync_easy = curl_easy_init();
		if (sync_multi == NULL || sync_easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create libcurl handles")));
	}
	curl_easy_reset(sync_easy);
	setup_easy(sync_easy, req);
	if (curl_multi_add_handle(sync_multi, sync_easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start an HTTP request")));
	PG_TRY();
	{
		while (running)
		{
			CHECK_FOR_INTERRUPTS();
			if (curl_multi_perform(sync_multi, &running) != CURLM_OK)
				break;
			if (running)
				curl_multi_poll(sync_multi, NULL, 0, 100, NULL);
		}
	}
	PG_FINALLY();
	{
		CURLcode	result = CURLE_RECV_ERROR;

		while ((msg = curl_multi_info_read(sync_multi, &left)) != NULL)
			if (msg->msg == CURLMSG_DONE)
				result = msg->data.result;
		curl_multi_remove_handle(sync_multi, sync_easy);
		finish_request(req, sync_easy, result);
	}
	PG_END_TRY();
}

/* ---------------------------------------------------------------- results */

/* Free what the callbacks allocated for a finished request. */
void
WebhookHttpRelease(WebhookRequest *req)
{
	free(req->resp);
	free(req->hdrs);
	req->resp = NULL;
	req->hdrs = NULL;
	req->resp_len = req->resp_alloc = 0;
	req->hdrs_len = req->hdrs_alloc = 0;
	if (req->header_list)
		curl_slist_free_all((struct curl_slist *) req->header_list);
	req->header_list = NULL;
}

/* A one-line account of why a request got no response. */
const char *
WebhookHttpError(WebhookRequest *req)
{
	if (req->blocked)
		return "connection refused: the address is in webhook.blocked_networks";
	if (req->errbuf[0] != '\0')
		return req->errbuf;
	return curl_easy_strerror((CURLcode) req->code);
}

/* Make text safe to store: valid in the database encoding, no NUL bytes. */
static char *
clean_text(const char *s, size_t len)
{
	StringInfoData buf;
	int			enc = GetDatabaseEncoding();

	initStringInfo(&buf);
	while (len > 0)
	{
		int			ok = pg_encoding_verifymbstr(enc, s, len);

		appendBinaryStringInfo(&buf, s, ok);
		s += ok;
		len -= ok;
		if (len > 0)
		{
			appendStringInfoString(&buf, enc == PG_UTF8 ? "\xEF\xBF\xBD" : "?");
			s++;
			len--;
		}
	}
	return buf.data;
}

/* The body of a response, as text that can be stored. */
char *
WebhookResponseBody(WebhookRequest *req)
{
	return clean_text(req->resp ? req->resp : "", req->resp_len);
}

/*
 * The header lines of a response as a JSON object, names lowercased, and
 * how long its Retry-After asks to wait (0 when it does not).
 */
char *
WebhookResponseHeaders(WebhookRequest *req, int64 *retry_after_ms)
{
	StringInfoData buf;
	char	   *text;
	char	   *line;
	char	   *save;
	bool		first = true;

	*retry_after_ms = 0;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	text = clean_text(req->hdrs ? req->hdrs : "", req->hdrs ? req->hdrs_len : 0);
	for (line = strtok_r(text, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save))
	{
		char	   *colon = strchr(line, ':');
		char	   *name;
		char	   *value;

		if (colon == NULL || strncmp(line, "HTTP/", 5) == 0)
			continue;
		*colon = '\0';
		for (name = line; *name; name++)
			*name = pg_tolower((unsigned char) *name);
		name = line;
		value = colon + 1;
		while (*value == ' ' || *value == '\t')
			value++;
		if (strcmp(name, "retry-after") == 0)
		{
			char	   *end;
			long		secs = strtol(value, &end, 10);

			if (end != value && secs >= 0)
				*retry_after_ms = (int64) Min(secs, 86400L * 30) * 1000;
			else
			{
				time_t		when = curl_getdate(value, NULL);

				if (when > 0 && when > time(NULL))
					*retry_after_ms = (int64) (when - time(NULL)) * 1000;
			}
		}
		if (!first)
			appendStringInfoChar(&buf, ',');
		first = false;
		escape_json(&buf, name);
		appendStringInfoChar(&buf, ':');
		escape_json(&buf, value);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}
