/*-------------------------------------------------------------------------
 *
 * render.c
 *		The built-in formats, rendered in C from the event: the bodies the
 *		SQL functions webhook.format_slackchat, format_channel,
 *		format_phraseanet and format_supabase return, as text, byte for byte
 *		(sql/formats.sql compares the two over every kind of event).
 *
 * The worker renders every delivery of an endpoint with a built-in format
 * here, without a statement; the SQL functions stay, as the formats'
 * documented definitions and for users to call. A user's format function
 * is called as its owner by dispatch.c.
 *
 * Each format builds its object with pushJsonbValue, as jsonb_build_object
 * does (keys sorted and made unique the same way), and prints it with
 * JsonbToCString, as jsonb's output function does. "->" of a missing key
 * and a JSON null both become null, as in jsonb_build_object.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/typcache.h"

#include "webhook.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(webhook_render);
PG_FUNCTION_INFO_V1(webhook_event);

extern PGDLLEXPORT Datum webhook_strip(PG_FUNCTION_ARGS);	/* util.c */

/* event->'key': the value, or NULL when the key is missing. */
static JsonbValue *
get(Jsonb *event, const char *key)
{
	if (!JB_ROOT_IS_OBJECT(event))
		return NULL;
	return getKeyJsonValueFromContainer(&event->root, key, strlen(key), NULL);
}

/* A value as jsonb's output prints it. */
static char *
value_text(JsonbValue *v)
{
	if (v->type == jbvBinary)
		return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	return JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0);
}

/* event->>'key': NULL for a missing key or a JSON null. */
static char *
get_text(Jsonb *event, const char *key)
{
	JsonbValue *v = get(event, key);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	return value_text(v);
}

/* Is event->>'key' = s? (false for NULL, as SQL's = in a CASE) */
static bool
text_is(const char *t, const char *s)
{
	return t != NULL && strcmp(t, s) == 0;
}

static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

/* key: v, a JSON null for NULL */
static void
push_value(JsonbParseState **st, const char *key, JsonbValue *v)
{
	JsonbValue	null;

	push_key(st, key);
	if (v == NULL)
	{
		null.type = jbvNull;
		v = &null;
	}
	pushJsonbValue(st, WJB_VALUE, v);
}

/* key: the string s, a JSON null for NULL */
static void
push_string(JsonbParseState **st, const char *key, const char *s)
{
	JsonbValue	v;

	if (s == NULL)
	{
		push_value(st, key, NULL);
		return;
	}
	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	push_value(st, key, &v);
}

/* key: event->'key' */
static void
push_field(JsonbParseState **st, Jsonb *event, const char *key)
{
	push_value(st, key, get(event, key));
}

/* key: 1 */
static void
push_one(JsonbParseState **st, const char *key)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(1);
	push_value(st, key, &v);
}

/* key: an object already pushed and ended */
static void
push_object(JsonbParseState **st, const char *key, JsonbValue *obj)
{
	Jsonb	   *jb = JsonbValueToJsonb(obj);
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = &jb->root;
	v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	push_value(st, key, &v);
}

/* Is the value null, "", [] or {}? (webhook._strip drops these keys) */
static bool
empty_value(JsonbValue *v)
{
	if (v == NULL || v->type == jbvNull)
		return true;
	if (v->type == jbvString)
		return v->val.string.len == 0;
	if (v->type == jbvBinary)
		return JsonContainerSize(v->val.binary.data) == 0;
	return false;
}

/* key: event->'key', unless it is empty */
static void
push_stripped(JsonbParseState **st, const char *key, JsonbValue *v)
{
	if (!empty_value(v))
		push_value(st, key, v);
}

static JsonbValue *
slackchat(Jsonb *event, const char *token)
{
	JsonbParseState *st = NULL;
	char	   *type = get_text(event, "type");

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_string(&st, "token", token);
	push_field(&st, event, "type");
	push_field(&st, event, "channel");
	if (text_is(type, "republish_request") || text_is(type, "unpublish_request"))
	{
		JsonbValue *data = get(event, "data");

		/* to_jsonb((event->'data')::text): the data's JSON text, as a string */
		push_string(&st, "channel_data", data ? value_text(data) : NULL);
		push_field(&st, event, "chat_type");
	}
	else if (text_is(type, "update_notification"))
	{
		push_field(&st, event, "chat_type");
		push_field(&st, event, "update_type");
		push_field(&st, event, "message");
	}
	else
		push_field(&st, event, "data");
	return pushJsonbValue(&st, WJB_END_OBJECT, NULL);
}

static JsonbValue *
channel(Jsonb *event)
{
	JsonbParseState *st = NULL;
	char	   *op = get_text(event, "op");
	char	   *kind = get_text(event, "kind");
	char	   *type = get_text(event, "type");

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (text_is(op, "DELETE"))
		push_string(&st, "event", "delete");
	else if (text_is(kind, "message"))
		push_string(&st, "event", text_is(op, "INSERT") ? "push" : "update");
	else
		push_string(&st, "event", op ? "upsert" : type);

	if (text_is(kind, "message"))
		push_string(&st, "type", "Message");
	else
		push_string(&st, "type", op ? get_text(event, "table") : "Event");

	if (text_is(op, "DELETE"))
		push_value(&st, "entity", get(event, "old_record"));
	else if (op)
		push_value(&st, "entity", get(event, "record"));
	else if (text_is(type, "republish_request") || text_is(type, "unpublish_request") ||
			 text_is(type, "update_notification"))
	{
		JsonbParseState *inner = NULL;
		JsonbValue *obj;

		pushJsonbValue(&inner, WJB_BEGIN_OBJECT, NULL);
		push_field(&inner, event, "channel");
		push_field(&inner, event, "chat_type");
		push_value(&inner, "channel_data", get(event, "data"));
		obj = pushJsonbValue(&inner, WJB_END_OBJECT, NULL);
		push_object(&st, "entity", obj);
	}
	else
		push_value(&st, "entity", get(event, "data"));

	{
		JsonbParseState *inner = NULL;
		JsonbValue *obj;

		pushJsonbValue(&inner, WJB_BEGIN_OBJECT, NULL);
		if (text_is(kind, "reaction") || text_is(kind, "attachment") ||
			text_is(kind, "keyword_argument"))
			push_field(&inner, event, "message");
		obj = pushJsonbValue(&inner, WJB_END_OBJECT, NULL);
		push_object(&st, "refers", obj);
	}
	return pushJsonbValue(&st, WJB_END_OBJECT, NULL);
}

/* event, webhookId, version, event_time: phraseanet's envelope */
static void
push_envelope(JsonbParseState **st, Jsonb *event)
{
	push_value(st, "event", get(event, "type"));
	push_value(st, "webhookId", get(event, "id"));
	push_one(st, "version");
	push_value(st, "event_time", get(event, "created_at"));
}

static JsonbValue *
phraseanet(Jsonb *event)
{
	JsonbParseState *st = NULL;
	char	   *type = get_text(event, "type");

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (text_is(type, "update_notification") || text_is(type, "republish_request") ||
		text_is(type, "unpublish_request"))
	{
		JsonbParseState *inner = NULL;
		JsonbValue *obj;

		push_envelope(&st, event);
		/* webhook._strip(jsonb_build_object(...)) */
		pushJsonbValue(&inner, WJB_BEGIN_OBJECT, NULL);
		push_stripped(&inner, "channel", get(event, "channel"));
		push_stripped(&inner, "chat_type", get(event, "chat_type"));
		push_stripped(&inner, "update_type", get(event, "update_type"));
		push_stripped(&inner, "message", get(event, "message"));
		push_stripped(&inner, "channel_data", get(event, "data"));
		push_stripped(&inner, "table", get(event, "table"));
		push_stripped(&inner, "record", get(event, "record"));
		push_stripped(&inner, "old_record", get(event, "old_record"));
		obj = pushJsonbValue(&inner, WJB_END_OBJECT, NULL);
		push_object(&st, "data", obj);
	}
	else
	{
		JsonbValue *data = get(event, "data");

		/* data || envelope: the data's own keys first, so the envelope's win */
		if (data && data->type == jbvBinary && JsonContainerIsObject(data->val.binary.data))
		{
			JsonbIterator *it = JsonbIteratorInit(data->val.binary.data);
			JsonbValue	v;
			JsonbIteratorToken tok;

			while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			{
				if (tok == WJB_KEY || tok == WJB_VALUE)
					pushJsonbValue(&st, tok, &v);
			}
		}
		else
			push_value(&st, "data", data);
		push_envelope(&st, event);
	}
	return pushJsonbValue(&st, WJB_END_OBJECT, NULL);
}

static JsonbValue *
supabase(Jsonb *event)
{
	JsonbParseState *st = NULL;
	char	   *op = get_text(event, "op");

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_string(&st, "type", op ? op : get_text(event, "type"));
	push_field(&st, event, "table");
	push_field(&st, event, "schema");
	push_value(&st, "record", get(event, op ? "record" : "data"));
	push_field(&st, event, "old_record");
	return pushJsonbValue(&st, WJB_END_OBJECT, NULL);
}

/*
 * The body of an event for a built-in format, or NULL when the format is not
 * one. token: the endpoint's (slackchat puts it in the body).
 */
char *
WebhookRenderBuiltin(const char *format, Jsonb *event, const char *token)
{
	JsonbValue *body;

	if (strcmp(format, "slackchat") == 0)
		body = slackchat(event, token);
	else if (strcmp(format, "channel") == 0)
		body = channel(event);
	else if (strcmp(format, "phraseanet") == 0)
		body = phraseanet(event);
	else if (strcmp(format, "supabase") == 0)
		body = supabase(event);
	else
		return NULL;
	return value_text(body);
}

/*
 * webhook._render(format, event, endpoint): the body of an event for an
 * endpoint with a built-in format, NULL for any other format.
 */
Datum
webhook_render(PG_FUNCTION_ARGS)
{
	char	   *format;
	char	   *token = NULL;
	char	   *body;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	format = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(2))
	{
		bool		isnull;
		Datum		t = GetAttributeByName(PG_GETARG_HEAPTUPLEHEADER(2), "token", &isnull);

		if (!isnull)
			token = TextDatumGetCString(t);
	}
	body = WebhookRenderBuiltin(format, PG_GETARG_JSONB_P(1), token);
	if (body == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(body));
}

/* The queue's columns an event is made of, in the order of the event's keys. */
static const char *const event_columns[] = {
	"id", "type", "kind", "op", "update_type", "channel", "chat_type", "message",
	"record", "old_record", "data", "source", "created_at"
};
#define EVENT_NCOLUMNS lengthof(event_columns)

/* Where event_columns are in webhook.queue's row type; kept in fn_extra. */
typedef struct EventColumns
{
	Oid			rowtype;
	int			attno[EVENT_NCOLUMNS];
} EventColumns;

/* key: a jsonb column's value, a JSON null for NULL */
static void
push_jsonb(JsonbParseState **st, const char *key, Datum d, bool isnull)
{
	JsonbValue	v;
	Jsonb	   *jb;

	if (isnull)
	{
		push_value(st, key, NULL);
		return;
	}
	jb = DatumGetJsonbP(d);
	if (JB_ROOT_IS_SCALAR(jb))
	{
		/* a scalar is stored as a one-element array: push the element */
		JsonbValue *elem = getIthJsonbValueFromContainer(&jb->root, 0);

		push_value(st, key, elem);
		return;
	}
	v.type = jbvBinary;
	v.val.binary.data = &jb->root;
	v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	push_value(st, key, &v);
}

/* key: a text column's value */
static void
push_text(JsonbParseState **st, const char *key, Datum d, bool isnull)
{
	push_string(st, key, isnull ? NULL : TextDatumGetCString(d));
}

/*
 * webhook._event(q webhook.queue): the event of a queued row, as jsonb:
 * every column by name, a message kind's message made from its row
 * (webhook._strip(coalesce(record, old_record))) when none was captured,
 * and the table's name and schema, as they are now. What DESIGN section 3
 * calls the event, and what sql/formats.sql compares with the same written
 * as SQL.
 */
Datum
webhook_event(PG_FUNCTION_ARGS)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	Oid			rowtype = HeapTupleHeaderGetTypeId(row);
	EventColumns *cols = fcinfo->flinfo->fn_extra;
	TupleDesc	desc;
	HeapTupleData tuple;
	Datum		v[EVENT_NCOLUMNS];
	bool		n[EVENT_NCOLUMNS];
	JsonbParseState *st = NULL;
	JsonbValue	id;
	char	   *kind;
	Oid			source;

	desc = lookup_rowtype_tupdesc(rowtype, HeapTupleHeaderGetTypMod(row));
	if (cols == NULL || cols->rowtype != rowtype)
	{
		cols = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(EventColumns));
		cols->rowtype = rowtype;
		for (int i = 0; i < (int) EVENT_NCOLUMNS; i++)
		{
			cols->attno[i] = 0;
			for (int a = 0; a < desc->natts; a++)
			{
				Form_pg_attribute att = TupleDescAttr(desc, a);

				if (!att->attisdropped && strcmp(NameStr(att->attname), event_columns[i]) == 0)
					cols->attno[i] = a + 1;
			}
			if (cols->attno[i] == 0)
				elog(ERROR, "webhook.queue has no column \"%s\"", event_columns[i]);
		}
		fcinfo->flinfo->fn_extra = cols;
	}
	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;
	for (int i = 0; i < (int) EVENT_NCOLUMNS; i++)
		v[i] = heap_getattr(&tuple, cols->attno[i], desc, &n[i]);
	ReleaseTupleDesc(desc);

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	id.type = jbvNumeric;
	id.val.numeric = int64_to_numeric(DatumGetInt64(v[0]));
	push_value(&st, "id", n[0] ? NULL : &id);
	push_text(&st, "type", v[1], n[1]);
	push_text(&st, "kind", v[2], n[2]);
	push_text(&st, "op", v[3], n[3]);
	push_text(&st, "update_type", v[4], n[4]);
	push_text(&st, "channel", v[5], n[5]);
	push_text(&st, "chat_type", v[6], n[6]);
	kind = n[2] ? NULL : TextDatumGetCString(v[2]);
	if (n[7] && text_is(kind, "message") && !(n[8] && n[9]))
	{
		/* coalesce(message, _strip(coalesce(record, old_record))) */
		Datum		stripped = DirectFunctionCall1(webhook_strip, n[8] ? v[9] : v[8]);

		push_jsonb(&st, "message", stripped, false);
	}
	else
		push_jsonb(&st, "message", v[7], n[7]);
	push_jsonb(&st, "record", v[8], n[8]);
	push_jsonb(&st, "old_record", v[9], n[9]);
	push_jsonb(&st, "data", v[10], n[10]);
	source = n[11] ? InvalidOid : DatumGetObjectId(v[11]);
	{
		char	   *table = OidIsValid(source) ? get_rel_name(source) : NULL;
		Oid			nsp = OidIsValid(source) ? get_rel_namespace(source) : InvalidOid;

		push_string(&st, "table", table);
		push_string(&st, "schema", OidIsValid(nsp) ? get_namespace_name(nsp) : NULL);
	}
	push_string(&st, "created_at",
				n[12] ? NULL : JsonEncodeDateTime(NULL, v[12], TIMESTAMPTZOID, NULL));
	PG_RETURN_JSONB_P(JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));
}
