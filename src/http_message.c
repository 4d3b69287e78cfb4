/*-------------------------------------------------------------------------
 *
 * http_message.c
 *		What a request and a response are: URLs, form fields, the request's
 *		headers, webhook.blocked_networks, and the decoding of responses.
 *		With http.c (the engines), the only file that sees libcurl.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <time.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "guc.h"
#include "http.h"

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
 * The header list of a request (a curl_slist): its content type, the Standard
 * Webhooks headers for its id, body and the current time, then the
 * endpoint's own. Malloc'd by libcurl; freed by WebhookHttpRelease().
 */
void *
WebhookRequestHeaders(const WebhookRequest *req)
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
bool
WebhookSockaddrBlocked(const struct sockaddr *addr)
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
WebhookIpTextBlocked(const char *ip)
{
	unsigned char bytes[16];

	if (inet_pton(AF_INET, ip, bytes) == 1)
		return address_blocked(AF_INET, bytes);
	if (inet_pton(AF_INET6, ip, bytes) == 1)
		return address_blocked(AF_INET6, bytes);
	return false;
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
 * The header lines of a response as a jsonb object, names lowercased (a name
 * given twice keeps its last value, as a JSON text would), and how long its
 * Retry-After asks to wait (0 when it does not).
 */
Jsonb *
WebhookResponseHeaders(WebhookRequest *req, int64 *retry_after_ms)
{
	JsonbParseState *state = NULL;
	JsonbValue	v;
	char	   *text;
	char	   *line;
	char	   *save;

	*retry_after_ms = 0;
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
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
		v.type = jbvString;
		v.val.string.val = name;
		v.val.string.len = strlen(name);
		pushJsonbValue(&state, WJB_KEY, &v);
		v.val.string.val = value;
		v.val.string.len = strlen(value);
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}
