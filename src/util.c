/*-------------------------------------------------------------------------
 *
 * util.c
 *		Small SQL-callable helpers for the install script: random bytes,
 *		compact message objects, table names and the explicit wake-up of the
 *		worker. (URLs are checked in http_message.c.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "port.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "webhook.h"

PG_FUNCTION_INFO_V1(webhook_random_bytes);
PG_FUNCTION_INFO_V1(webhook_strip);
PG_FUNCTION_INFO_V1(webhook_wake);
PG_FUNCTION_INFO_V1(webhook_table_name);
PG_FUNCTION_INFO_V1(webhook_schema_name);

/* n bytes from pg_strong_random, as bytea. */
Datum
webhook_random_bytes(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	bytea	   *result;

	if (n < 1 || n > 1024)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("random byte count must be between 1 and 1024")));
	result = (bytea *) palloc(VARHDRSZ + n);
	SET_VARSIZE(result, VARHDRSZ + n);
	if (!pg_strong_random(VARDATA(result), n))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	PG_RETURN_BYTEA_P(result);
}

/* Is this jsonb value null, "", [] or {}? */
static bool
jsonb_value_is_empty(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return true;
		case jbvString:
			return v->val.string.len == 0;
		case jbvBinary:
			return JsonContainerSize(v->val.binary.data) == 0;
		default:
			return false;
	}
}

/*
 * The top-level object without keys whose values are null, "", [] or {}:
 * the compact message object of DESIGN §3. Non-objects are returned as is.
 */
Datum
webhook_strip(PG_FUNCTION_ARGS)
{
	Jsonb	   *in = PG_GETARG_JSONB_P(0);
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbParseState *state = NULL;
	JsonbValue	key;
	JsonbValue	val;
	JsonbValue *res = NULL;
	bool		changed = false;

	if (!JB_ROOT_IS_OBJECT(in))
		PG_RETURN_JSONB_P(in);

	/* First pass: is there anything to strip? Most rows have no nulls. */
	it = JsonbIteratorInit(&in->root);
	while ((tok = JsonbIteratorNext(&it, &val, true)) != WJB_DONE)
	{
		if (tok == WJB_VALUE && jsonb_value_is_empty(&val))
		{
			changed = true;
			break;
		}
	}
	if (!changed)
		PG_RETURN_JSONB_P(in);

	it = JsonbIteratorInit(&in->root);
	while ((tok = JsonbIteratorNext(&it, &val, true)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
			case WJB_END_OBJECT:
				res = pushJsonbValue(&state, tok, NULL);
				break;
			case WJB_KEY:
				key = val;
				break;
			case WJB_VALUE:
				if (!jsonb_value_is_empty(&val))
				{
					pushJsonbValue(&state, WJB_KEY, &key);
					pushJsonbValue(&state, WJB_VALUE, &val);
				}
				break;
			default:
				elog(ERROR, "unexpected jsonb token %d", (int) tok);
		}
	}
	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}

/* Wake the worker when the current transaction commits. */
Datum
webhook_wake(PG_FUNCTION_ARGS)
{
	/* recheck: a delivery was made due, not only events queued */
	if (!PG_ARGISNULL(0) && PG_GETARG_BOOL(0))
		WebhookChangedAtCommit();
	else
		WebhookWakeAtCommit();
	PG_RETURN_VOID();
}

/* The name of a table, from the syscache; NULL when it is gone. */
Datum
webhook_table_name(PG_FUNCTION_ARGS)
{
	char	   *name = get_rel_name(PG_GETARG_OID(0));

	if (name == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

/* The schema of a table, from the syscache; NULL when it is gone. */
Datum
webhook_schema_name(PG_FUNCTION_ARGS)
{
	Oid			nsp = get_rel_namespace(PG_GETARG_OID(0));
	char	   *name = OidIsValid(nsp) ? get_namespace_name(nsp) : NULL;

	if (name == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(name));
}
