/*-------------------------------------------------------------------------
 *
 * rowjson.c
 *		webhook._row_jsonb(record): to_jsonb() of a row, as capture
 *		statements serialize the rows of a statement.
 *
 * to_jsonb() looks up how to convert each column (its base type, whether
 * it is an array or a row, its output function) again for every row: a
 * third of its time over the rows of a bulk INSERT. This does the same
 * conversions with the lookups made once per statement (kept in fn_extra).
 * It handles the columns whose conversion is a scalar: booleans, numbers,
 * dates and timestamps, and built-in types written as their text output;
 * a row with any other column (arrays, rows, json, jsonb, types of
 * extensions or users, which may have a cast to json) goes to to_jsonb()
 * itself. The result is to_jsonb()'s, byte for byte (PostgreSQL 15's
 * jsonb.c: jsonb_categorize_type, datum_to_jsonb, composite_to_jsonb).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(webhook_row_jsonb);

/* How a column becomes a jsonb value: jsonb.c's categories that are scalars. */
typedef enum ColumnKind
{
	COL_BOOL,
	COL_NUMERIC,				/* its output, as a number unless NaN or infinite */
	COL_DATETIME,				/* JsonEncodeDateTime */
	COL_OTHER					/* its output, as a string */
} ColumnKind;

typedef struct RowShape
{
	Oid			type;			/* the row type and typmod this is for */
	int32		typmod;
	bool		fast;			/* false: every row goes to to_jsonb() */
	int			natts;
	ColumnKind *kind;
	Oid		   *base;			/* the column's type, domains looked through */
	FmgrInfo   *output;
} RowShape;

/* Categorize the columns of a row type as jsonb_categorize_type() does. */
static RowShape *
row_shape(FmgrInfo *flinfo, Oid type, int32 typmod, TupleDesc desc)
{
	RowShape   *shape = palloc0(sizeof(RowShape));
	MemoryContext cxt = flinfo->fn_mcxt;

	shape->type = type;
	shape->typmod = typmod;
	shape->natts = desc->natts;
	shape->kind = MemoryContextAllocZero(cxt, sizeof(ColumnKind) * desc->natts);
	shape->base = MemoryContextAllocZero(cxt, sizeof(Oid) * desc->natts);
	shape->output = MemoryContextAllocZero(cxt, sizeof(FmgrInfo) * desc->natts);
	shape->fast = true;
	for (int i = 0; i < desc->natts && shape->fast; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			base;
		Oid			outfunc;
		bool		varlena;

		if (att->attisdropped)
			continue;
		base = getBaseType(att->atttypid);
		shape->base[i] = base;
		switch (base)
		{
			case BOOLOID:
				shape->kind[i] = COL_BOOL;
				continue;
			case INT2OID:
			case INT4OID:
			case INT8OID:
			case FLOAT4OID:
			case FLOAT8OID:
			case NUMERICOID:
				shape->kind[i] = COL_NUMERIC;
				break;
			case DATEOID:
			case TIMESTAMPOID:
			case TIMESTAMPTZOID:
				shape->kind[i] = COL_DATETIME;
				continue;
			case JSONOID:
			case JSONBOID:
				shape->fast = false;
				continue;
			default:
				/* arrays, rows, and types that may have a cast to json */
				if (base >= FirstNormalObjectId || OidIsValid(get_element_type(base)) ||
					base == ANYARRAYOID || base == ANYCOMPATIBLEARRAYOID ||
					base == RECORDARRAYOID || type_is_rowtype(base))
				{
					shape->fast = false;
					continue;
				}
				shape->kind[i] = COL_OTHER;
				break;
		}
		getTypeOutputInfo(base, &outfunc, &varlena);
		fmgr_info_cxt(outfunc, &shape->output[i], cxt);
	}
	return shape;
}

/* The jsonb value of a column that is not null. */
static void
column_value(RowShape *shape, int i, Datum value, JsonbValue *jb)
{
	char	   *out;

	switch (shape->kind[i])
	{
		case COL_BOOL:
			jb->type = jbvBool;
			jb->val.boolean = DatumGetBool(value);
			return;
		case COL_DATETIME:
			jb->type = jbvString;
			jb->val.string.val = JsonEncodeDateTime(NULL, value, shape->base[i], NULL);
			jb->val.string.len = strlen(jb->val.string.val);
			return;
		case COL_NUMERIC:
			out = OutputFunctionCall(&shape->output[i], value);
			if (strchr(out, 'N') == NULL && strchr(out, 'n') == NULL)
			{
				jb->type = jbvNumeric;
				jb->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(out),
																	  ObjectIdGetDatum(InvalidOid),
																	  Int32GetDatum(-1)));
				pfree(out);
			}
			else
			{
				jb->type = jbvString;
				jb->val.string.len = strlen(out);
				jb->val.string.val = out;
			}
			return;
		case COL_OTHER:
			out = OutputFunctionCall(&shape->output[i], value);
			jb->type = jbvString;
			jb->val.string.len = strlen(out);
			if (jb->val.string.len > JENTRY_OFFLENMASK)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("string too long to represent as jsonb string"),
						 errdetail("Due to an implementation restriction, jsonb strings cannot exceed %d bytes.",
								   JENTRY_OFFLENMASK)));
			jb->val.string.val = out;
			return;
	}
}

/* webhook._row_jsonb(r record) RETURNS jsonb: to_jsonb(r) */
Datum
webhook_row_jsonb(PG_FUNCTION_ARGS)
{
	HeapTupleHeader td = PG_GETARG_HEAPTUPLEHEADER(0);
	Oid			type = HeapTupleHeaderGetTypeId(td);
	int32		typmod = HeapTupleHeaderGetTypMod(td);
	RowShape   *shape = (RowShape *) fcinfo->flinfo->fn_extra;
	TupleDesc	desc;
	HeapTupleData tuple;
	Datum	   *values;
	bool	   *nulls;
	JsonbParseState *state = NULL;
	JsonbValue *res;

	if (shape != NULL && (shape->type != type || shape->typmod != typmod))
		shape = NULL;
	if (shape != NULL && !shape->fast)
		return to_jsonb(fcinfo);

	desc = lookup_rowtype_tupdesc(type, typmod);
	if (shape == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		shape = row_shape(fcinfo->flinfo, type, typmod, desc);
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = shape;
	}
	if (!shape->fast || shape->natts != desc->natts)
	{
		ReleaseTupleDesc(desc);
		shape->fast = false;
		return to_jsonb(fcinfo);
	}

	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = td;
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(&tuple, desc, values, nulls);

	res = pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		JsonbValue	key;
		JsonbValue	jb;

		if (att->attisdropped)
			continue;
		key.type = jbvString;
		key.val.string.len = strlen(NameStr(att->attname));
		key.val.string.val = NameStr(att->attname);
		res = pushJsonbValue(&state, WJB_KEY, &key);
		if (nulls[i])
			jb.type = jbvNull;
		else
			column_value(shape, i, values[i], &jb);
		res = pushJsonbValue(&state, WJB_VALUE, &jb);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	ReleaseTupleDesc(desc);
	PG_RETURN_POINTER(JsonbValueToJsonb(res));
}
