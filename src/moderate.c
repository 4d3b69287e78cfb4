/*-------------------------------------------------------------------------
 *
 * moderate.c
 *		Hookbox's synchronous "publish" and "message" hooks as a BEFORE
 *		INSERT trigger: the new row is posted, form-encoded, to an endpoint
 *		that answers [success, details]; the row goes in (with the overrides
 *		the details ask for) or the statement fails with the hook's error.
 *
 * webhook.moderate() stores, per table, a SELECT over the new row ($1) that
 * yields the form fields; the trigger runs it, makes the request with
 * libcurl (connections kept alive across calls in this backend), and
 * applies the reply. Every way the hook can fail rejects the row: a
 * moderation hook that cannot answer must not let rows through.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "http.h"
#include "plans.h"
#include "signing.h"
#include "webhook.h"

PG_FUNCTION_INFO_V1(webhook_moderate);

static SPIPlanPtr lookup_plan = NULL;

static const char *lookup_sql =
"SELECT m.sql, m.action, m.payload::text, m.recipient::text, m.only_to_sender::text,"
"  e.id, e.url, e.secret, e.headers::text, e.state, c.relowner,"
"  e.previous_secret, e.previous_secret_until"
" FROM webhook.moderation m JOIN webhook.endpoint e ON e.id = m.endpoint_id"
"  JOIN pg_catalog.pg_class c ON c.oid = m.rel"
" WHERE m.rel = $1 OR m.rel IN (SELECT relid FROM pg_catalog.pg_partition_ancestors($1))"
" ORDER BY m.rel = $1 DESC LIMIT 1";

/* The prepared field query for this trigger (plans.c). */
static SPIPlanPtr
field_plan(Trigger *trigger, Relation rel, const char *sql)
{
	TriggerPlanKey key;
	TriggerPlan *entry;
	Oid			rowtype = rel->rd_rel->reltype;
	SPIPlanPtr	plan;

	WebhookPlanKeyInit(&key, PLAN_MODERATION, trigger->tgoid, RelationGetRelid(rel), 0);
	entry = WebhookPlanFind(&key);
	if (entry != NULL)
		return entry->plan;
	plan = SPI_prepare(sql, 1, &rowtype);	/* as the table's owner: see below */
	if (plan == NULL)
		elog(ERROR, "could not prepare moderation query: %s", SPI_result_code_string(SPI_result));
	return WebhookPlanKeep(&key, plan)->plan;
}

/* Turn a JSON value into a datum of a column's type. */
static Datum
json_to_column(JsonbValue *v, Relation rel, int attnum, bool *isnull)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	Oid			typinput;
	Oid			typioparam;
	char	   *text;

	*isnull = false;
	if (v->type == jbvNull)
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (v->type == jbvString && att->atttypid != JSONOID && att->atttypid != JSONBOID)
		text = pnstrdup(v->val.string.val, v->val.string.len);
	else
		text = JsonbToCString(NULL, v->type == jbvBinary ? v->val.binary.data : &JsonbValueToJsonb(v)->root, -1);
	getTypeInputInfo(att->atttypid, &typinput, &typioparam);
	return OidInputFunctionCall(typinput, text, typioparam, att->atttypmod);
}

/* Make the request; its buffers are released if it is interrupted. */
static void
perform(WebhookRequest *req)
{
	PG_TRY();
	{
		WebhookHttpPerform(req);
	}
	PG_CATCH();
	{
		WebhookHttpRelease(req);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* The attribute number of a column named by moderate(); it exists (checked there). */
static int
column(Relation rel, const char *name)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of moderated table \"%s\" does not exist",
						name, RelationGetRelationName(rel)),
				 errhint("Call webhook.moderate() again after changing the table.")));
	return attnum;
}

/* Find a key of the details object. */
static bool
detail(Jsonb *details, const char *key, JsonbValue *out)
{
	JsonbValue *v;

	if (details == NULL)
		return false;
	v = getKeyJsonValueFromContainer(&details->root, key, strlen(key), out);
	return v != NULL;
}

/*
 * The moderation trigger. Posts the row to the endpoint and lets it in,
 * changed as the reply says, or rejects it.
 */
Datum
webhook_moderate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	HeapTuple	tuple;
	Oid			relid;
	Datum		arg;
	Oid			argtype = REGCLASSOID;
	HeapTuple	m;
	TupleDesc	mdesc;
	char	   *action;
	char	   *payload_col;
	char	   *recipient_col;
	char	   *only_col;
	int64		endpoint_id;
	char	   *url;
	char	   *secret;
	char	   *state;
	int			nheaders;
	char	  **headers;
	SPIPlanPtr	plan;
	HeapTuple	f;
	TupleDesc	fdesc;
	StringInfoData form;
	WebhookRequest req;
	WebhookKeys keys;
	TimestampTz previous_until;
	char		id[64];
	uint8		rnd[8];
	char	   *reply;
	Jsonb	   *jb;
	JsonbValue	ok;
	JsonbValue	details_v;
	Jsonb	   *details = NULL;
	JsonbValue	v;
	int			cols[3];
	Datum		vals[3];
	bool		nulls[3];
	int			ncols = 0;
	MemoryContext callctx = CurrentMemoryContext;
	WebhookUser as_owner;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhook._moderate() must be fired BEFORE INSERT FOR EACH ROW"),
				 errhint("Install moderation hooks with webhook.moderate().")));
	rel = trigdata->tg_relation;
	tuple = trigdata->tg_trigtuple;
	relid = RelationGetRelid(rel);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (lookup_plan == NULL)
	{
		lookup_plan = SPI_prepare(lookup_sql, 1, &argtype);
		if (lookup_plan == NULL || SPI_keepplan(lookup_plan) != 0)
			elog(ERROR, "could not prepare the moderation lookup");
	}
	arg = ObjectIdGetDatum(relid);
	if (SPI_execute_plan(lookup_plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read webhook.moderation");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s\" has a moderation trigger but no moderation hook",
						RelationGetRelationName(rel)),
				 errhint("Install moderation hooks with webhook.moderate().")));

	m = SPI_tuptable->vals[0];
	mdesc = SPI_tuptable->tupdesc;
	action = SPI_getvalue(m, mdesc, 2);
	payload_col = SPI_getvalue(m, mdesc, 3);
	recipient_col = SPI_getvalue(m, mdesc, 4);
	only_col = SPI_getvalue(m, mdesc, 5);
	endpoint_id = DatumGetInt64(SPI_getbinval(m, mdesc, 6, &nulls[0]));
	url = SPI_getvalue(m, mdesc, 7);
	secret = SPI_getvalue(m, mdesc, 8);
	previous_until = DatumGetTimestampTz(SPI_getbinval(m, mdesc, 13, &nulls[0]));
	WebhookDecodeKeys(secret, SPI_getvalue(m, mdesc, 12), nulls[0] ? 0 : previous_until, &keys);
	state = SPI_getvalue(m, mdesc, 10);
	WebhookParseHeaders(SPI_getvalue(m, mdesc, 9), &nheaders, &headers);
	if (strcmp(state, "disabled") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("moderation hook endpoint %lld is disabled", (long long) endpoint_id),
				 errdetail("Rows of table \"%s\" are rejected until it is enabled.",
						   RelationGetRelationName(rel)),
				 errhint("Enable it with webhook.enable_endpoint().")));

	/*
	 * The form fields, computed from the new row by the user's expressions:
	 * as the table's owner, restricted (owner.c), planning included.
	 */
	WebhookBecomeUser(DatumGetObjectId(SPI_getbinval(m, mdesc, 11, &nulls[0])), &as_owner);
	plan = field_plan(trigdata->tg_trigger, rel, SPI_getvalue(m, mdesc, 1));
	arg = heap_copy_tuple_as_datum(tuple, RelationGetDescr(rel));
	WebhookPlanBeginUse();
	if (SPI_execute_plan(plan, &arg, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not compute the moderation fields");
	WebhookPlanEndUse();
	WebhookRestoreUser(&as_owner);
	f = SPI_tuptable->vals[0];
	fdesc = SPI_tuptable->tupdesc;

	MemoryContextSwitchTo(callctx);
	initStringInfo(&form);
	WebhookFormField(&form, "action", action);
	if (strcmp(action, "publish") == 0)
	{
		WebhookFormField(&form, "channel_name", SPI_getvalue(f, fdesc, 1));
		WebhookFormField(&form, "payload", SPI_getvalue(f, fdesc, 2));
		WebhookFormField(&form, "originator", SPI_getvalue(f, fdesc, 3));
	}
	else
	{
		WebhookFormField(&form, "sender", SPI_getvalue(f, fdesc, 3));
		WebhookFormField(&form, "recipient", SPI_getvalue(f, fdesc, 4));
		WebhookFormField(&form, "recipient_exists", SPI_getvalue(f, fdesc, 5));
		WebhookFormField(&form, "payload", SPI_getvalue(f, fdesc, 2));
	}

	/* Signed like every request. */
	if (!pg_strong_random(rnd, sizeof(rnd)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	snprintf(id, sizeof(id), "mod_%lld_%02x%02x%02x%02x%02x%02x%02x%02x", (long long) endpoint_id,
			 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	memset(&req, 0, sizeof(req));
	req.url = url;
	req.content_type = "application/x-www-form-urlencoded";
	req.body = form.data;
	req.body_len = form.len;
	req.id = id;
	req.keys = &keys;
	req.nheaders = nheaders;
	req.headers = headers;
	req.timeout_ms = webhook_timeout;
	req.max_body = WEBHOOK_REPLY_CAP;
	perform(&req);

	/* What came back. */
	if (req.outcome != WEBHOOK_HTTP_RESPONSE)
	{
		bool		timed_out = req.outcome == WEBHOOK_HTTP_TIMEOUT;
		char	   *msg = pstrdup(WebhookHttpError(&req));

		WebhookHttpRelease(&req);
		if (timed_out)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("moderation hook of table \"%s\" timed out",
							RelationGetRelationName(rel)),
					 errdetail("The row was rejected; endpoint %lld at \"%s\" did not answer within webhook.timeout (%d ms).",
							   (long long) endpoint_id, url, webhook_timeout)));
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("moderation hook of table \"%s\" could not be reached: %s",
						RelationGetRelationName(rel), msg),
				 errdetail("The row was rejected; endpoint %lld at \"%s\".",
						   (long long) endpoint_id, url)));
	}
	if (req.status != 200)
	{
		long		status = req.status;

		WebhookHttpRelease(&req);
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("moderation hook of table \"%s\" answered HTTP %ld",
						RelationGetRelationName(rel), status),
				 errdetail("The row was rejected; a moderation hook must answer 200 with [success, details].")));
	}
	reply = pnstrdup(req.resp ? req.resp : "", req.resp_len);
	{
		JsonLexContext *lex;
		/* no NUL inside, valid in the database encoding */
		bool		valid = strlen(reply) == req.resp_len &&
			pg_verifymbstr(reply, strlen(reply), true);

		WebhookHttpRelease(&req);

		if (valid)
		{
			lex = WebhookJsonLexContext(reply, strlen(reply), GetDatabaseEncoding());
			valid = pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
		}
		jb = valid ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(reply))) : NULL;
		if (jb == NULL || !JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb) ||
			JsonContainerSize(&jb->root) != 2 ||
			getIthJsonbValueFromContainer(&jb->root, 0) == NULL ||
			(ok = *getIthJsonbValueFromContainer(&jb->root, 0)).type != jbvBool ||
			(details_v = *getIthJsonbValueFromContainer(&jb->root, 1)).type != jbvBinary ||
			!JsonContainerIsObject(details_v.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("moderation hook of table \"%s\" sent a malformed reply",
							RelationGetRelationName(rel)),
					 errdetail("The row was rejected; the reply must be a JSON array [success, details], got: %.200s",
							   reply)));
		details = JsonbValueToJsonb(&details_v);
	}

	if (!ok.val.boolean)
	{
		char	   *error = "Unauthorized";

		if (detail(details, "error", &v) && v.type == jbvString)
			error = pnstrdup(v.val.string.val, v.val.string.len);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s", error),
				 errdetail("The moderation hook of table \"%s\" rejected the row.",
						   RelationGetRelationName(rel))));
	}

	/* Let it in, with what the details override. */
	if (detail(details, "override_payload", &v))
	{
		cols[ncols] = column(rel, payload_col);
		vals[ncols] = json_to_column(&v, rel, cols[ncols], &nulls[ncols]);
		ncols++;
	}
	if (recipient_col && detail(details, "override_recipient_name", &v))
	{
		cols[ncols] = column(rel, recipient_col);
		vals[ncols] = json_to_column(&v, rel, cols[ncols], &nulls[ncols]);
		ncols++;
	}
	if (only_col && detail(details, "only_to_sender", &v) && v.type == jbvBool)
	{
		cols[ncols] = column(rel, only_col);
		vals[ncols] = BoolGetDatum(v.val.boolean);
		nulls[ncols] = false;
		ncols++;
	}
	if (ncols > 0)
		tuple = heap_modify_tuple_by_cols(tuple, RelationGetDescr(rel), ncols, cols, vals, nulls);

	SPI_finish();
	return PointerGetDatum(tuple);
}
