/*-------------------------------------------------------------------------
 *
 * http.c
 *		The engines that make requests: the worker's asynchronous one (curl's
 *		multi handle, its socket and timer callbacks, the wait, the pool of
 *		easy handles) and the backends' synchronous one. What a request and
 *		a response are (URLs, headers, the blocked networks, decoding) is in
 *		http_message.c; these two are the only files that see libcurl.
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

#include <curl/curl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "storage/ipc.h"
#include "storage/latch.h"
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

	if (WebhookSockaddrBlocked(&address->addr))
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

	if (WebhookIpTextBlocked(primary_ip))
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
	req->header_list = WebhookRequestHeaders(req);

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
