/*-------------------------------------------------------------------------
 *
 * owner.c
 *		Whose rights user code runs with (DESIGN section 9), and the tracked
 *		expressions that are such code.
 *
 * Tracked expressions, the serialization of tracked rows, moderation
 * expressions, format functions and on_response functions are written by
 * users. They run as the role that owns them (the tracked table's owner, the
 * function's owner) under SECURITY_RESTRICTED_OPERATION with search_path
 * pg_catalog, pg_temp: the way PostgreSQL runs index expressions during
 * VACUUM, ANALYZE and REINDEX. An error on the way out restores the user
 * and the settings through the (sub)transaction's abort, as there.
 *
 * Tracked expressions are parsed when webhook.track() runs, in the caller's
 * search_path, and kept as node trees: like a view's, they keep meaning the
 * objects they named then, and follow renames. They are deparsed, every name
 * qualified, whenever the capture statements are generated.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "parser/parsetree.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "guc.h"
#include "webhook.h"

PG_FUNCTION_INFO_V1(webhook_parse_expr);
PG_FUNCTION_INFO_V1(webhook_deparse_expr);
PG_FUNCTION_INFO_V1(webhook_expr_uses);
PG_FUNCTION_INFO_V1(webhook_node_origin);

#define SAFE_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * Run what follows as role, restricted, with the safe search_path, until
 * WebhookRestoreUser(save).
 */
void
WebhookBecomeUser(Oid role, WebhookUser *save)
{
	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	SetUserIdAndSecContext(role, save->sec_context | SECURITY_RESTRICTED_OPERATION);
	save->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", SAFE_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
WebhookRestoreUser(WebhookUser *save)
{
	AtEOXact_GUC(false, save->nestlevel);
	SetUserIdAndSecContext(save->userid, save->sec_context);
}

/* The owner of a relation. */
Oid
WebhookRelationOwner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* The row type of a table of schema webhook. */
Oid
WebhookRowType(const char *table)
{
	return get_rel_type_id(get_relname_relid(table, get_namespace_oid("webhook", false)));
}

/* Stop the time limit of a user's function; a cancel it raised too late is dropped. */
static void
end_function_timeout(void)
{
	disable_timeout(STATEMENT_TIMEOUT, true);
	if (get_timeout_indicator(STATEMENT_TIMEOUT, true))
		QueryCancelPending = false;
}

/*
 * Call a user's function (a format or on_response function) as its owner,
 * restricted, in a subtransaction, within webhook.timeout: its result, or
 * NULL with *error set to what it raised. It must take exactly argtypes and
 * return one value (of rettype, unless InvalidOid). The result is in the
 * caller's memory context; jsonb results come as text.
 */
char *
WebhookCallUserFunction(Oid fn, int nargs, const Oid *argtypes, Oid rettype, Datum *args,
						char **error)
{
	MemoryContext old = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile result = NULL;

	*error = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(old);
	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 4);
		FmgrInfo	flinfo;
		WebhookUser save;
		HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
		Form_pg_proc proc;
		Oid			fn_owner;
		Datum		d;

		if (!HeapTupleIsValid(tup))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("function with OID %u does not exist", fn)));
		proc = (Form_pg_proc) GETSTRUCT(tup);
		/* what the endpoint row names was checked when written; a function may have changed since */
		if (proc->prokind != PROKIND_FUNCTION || proc->proretset || proc->pronargs != nargs ||
			memcmp(proc->proargtypes.values, argtypes, nargs * sizeof(Oid)) != 0 ||
			(OidIsValid(rettype) && proc->prorettype != rettype))
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("function \"%s\" does not have the form its use needs",
							NameStr(proc->proname))));
		fn_owner = proc->proowner;
		ReleaseSysCache(tup);

		Assert(nargs <= 4);
		/* one slow function must not hold up every endpoint: webhook.timeout */
		enable_timeout_after(STATEMENT_TIMEOUT, webhook_timeout);
		WebhookBecomeUser(fn_owner, &save);
		fmgr_info(fn, &flinfo);
		InitFunctionCallInfoData(*fcinfo, &flinfo, nargs, InvalidOid, NULL, NULL);
		for (int i = 0; i < nargs; i++)
		{
			fcinfo->args[i].value = args[i];
			fcinfo->args[i].isnull = false;
		}
		d = FunctionCallInvoke(fcinfo);
		if (fcinfo->isnull)
			result = NULL;
		else if (get_func_rettype(fn) == JSONBOID)
			result = JsonbToCString(NULL, &DatumGetJsonbP(d)->root, -1);
		else
			result = "";		/* on_response: void */
		WebhookRestoreUser(&save);
		end_function_timeout();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(old);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(old);
		end_function_timeout();
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(old);
		CurrentResourceOwner = owner;
		*error = pstrdup(edata->message);
		FreeErrorData(edata);
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

/*
 * Node trees are trusted input: a crafted one can crash the server, which is
 * why PostgreSQL refuses pg_node_tree input. Only a role that may write them
 * into webhook.source (that manages tracking) may have them read.
 */
static void
check_node_reader(void)
{
	Oid			nsp = get_namespace_oid("webhook", false);
	Oid			source = get_relname_relid("source", nsp);

	if (!OidIsValid(source) ||
		pg_class_aclcheck(source, GetUserId(), ACL_UPDATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read node trees of tracked expressions"),
				 errdetail("Only roles that may update webhook.source may.")));
}

/*
 * The one expression of "SELECT (expr)", or an error: nothing may come
 * before or after it (a FROM, a second column, a second statement).
 */
static Node *
raw_expression(const char *expr)
{
	char	   *sql = psprintf("SELECT (%s)", expr);
	List	   *stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
	SelectStmt *select;
	ResTarget  *target;

	if (list_length(stmts) == 1 &&
		IsA(linitial_node(RawStmt, stmts)->stmt, SelectStmt))
	{
		select = (SelectStmt *) linitial_node(RawStmt, stmts)->stmt;
		if (select->op == SETOP_NONE && list_length(select->targetList) == 1 &&
			select->fromClause == NIL && select->whereClause == NULL &&
			select->groupClause == NIL && select->havingClause == NULL &&
			select->windowClause == NIL && select->sortClause == NIL &&
			select->limitCount == NULL && select->limitOffset == NULL &&
			select->lockingClause == NIL && select->withClause == NULL &&
			select->distinctClause == NIL && select->intoClause == NULL &&
			select->valuesLists == NIL)
		{
			target = linitial_node(ResTarget, select->targetList);
			if (target->name == NULL && target->indirection == NIL)
				return target->val;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("\"%s\" is not a single expression", expr)));
	return NULL;				/* keep the compiler quiet */
}

/*
 * webhook._parse_expr(rel regclass, expr text, target regtype,
 *		explicit_cast boolean, search_path text) RETURNS text
 *
 * The expression over rel's columns, its names resolved in search_path,
 * cast to target (explicitly, as "::target" would, or only by implicit
 * casts; not at all when NULL), as a node tree; NULL for a NULL expression. Aggregates, window functions and set-returning
 * functions are refused: an expression gives one value per row.
 */
Datum
webhook_parse_expr(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *expr;
	Oid			target = PG_ARGISNULL(2) ? InvalidOid : PG_GETARG_OID(2);
	bool		explicit_cast = !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);
	int			nestlevel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	Relation	rel;
	Node	   *node;
	Oid			type;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	relid = PG_GETARG_OID(0);
	expr = text_to_cstring(PG_GETARG_TEXT_PP(1));
	nestlevel = NewGUCNestLevel();
	if (!PG_ARGISNULL(4))
		(void) set_config_option("search_path", text_to_cstring(PG_GETARG_TEXT_PP(4)),
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	rel = table_open(relid, AccessShareLock);
	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = expr;
	nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock, NULL, false, true);
	addNSItemToQuery(pstate, nsitem, true, true, true);

	node = transformExpr(pstate, raw_expression(expr), EXPR_KIND_OTHER);
	type = exprType(node);
	if (OidIsValid(target))
		node = coerce_to_target_type(pstate, node, type, target, -1,
									 explicit_cast ? COERCION_EXPLICIT : COERCION_IMPLICIT,
									 explicit_cast ? COERCE_EXPLICIT_CAST : COERCE_IMPLICIT_CAST,
									 -1);
	if (node == NULL && explicit_cast)
		ereport(ERROR,
				(errcode(ERRCODE_CANNOT_COERCE),
				 errmsg("cannot cast type %s to %s",
						format_type_be(type), format_type_be(target))));
	if (node == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("expression is of type %s, not %s",
						format_type_be(type), format_type_be(target))));
	assign_expr_collations(pstate, node);
	if (pstate->p_hasAggs || pstate->p_hasWindowFuncs)
		ereport(ERROR,
				(errcode(ERRCODE_GROUPING_ERROR),
				 errmsg("aggregate and window functions are not allowed here"),
				 errhint("An expression gives one value per row; use a subquery to aggregate.")));
	if (expression_returns_set(node))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-returning functions are not allowed here")));

	table_close(rel, AccessShareLock);
	AtEOXact_GUC(true, nestlevel);
	PG_RETURN_TEXT_P(cstring_to_text(nodeToString(node)));
}

/*
 * webhook._deparse_expr(node text, rel regclass, alias text) RETURNS text
 *
 * SQL for a node tree made by _parse_expr, rel's columns prefixed with
 * alias (bare when it is NULL), every other name qualified (deparsed with the safe search_path, the
 * one the capture statements run with). Columns and objects renamed since
 * are named as they are now.
 */
Datum
webhook_deparse_expr(PG_FUNCTION_ARGS)
{
	Node	   *node;
	Oid			relid;
	char	   *alias;
	int			nestlevel;
	char	   *sql;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	check_node_reader();
	node = stringToNode(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	relid = PG_GETARG_OID(1);
	alias = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (!OidIsValid(get_rel_type_id(relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", SAFE_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	PG_TRY();
	{
		sql = deparse_expression(node, deparse_context_for(alias ? alias : get_rel_name(relid), relid),
								 alias != NULL, false);
	}
	PG_CATCH();
	{
		/* "cache lookup failed": an object it names was dropped */
		if (geterrcode() != ERRCODE_INTERNAL_ERROR)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("an object that the expression uses no longer exists")));
	}
	PG_END_TRY();
	AtEOXact_GUC(true, nestlevel);
	PG_RETURN_TEXT_P(cstring_to_text(sql));
}

/* What expr_uses_walker looks for, and the range tables it is inside. */
typedef struct UsesContext
{
	Oid			relid;			/* a column of this relation */
	AttrNumber	attnum;			/* this column; 0: any, or the whole row */
	List	   *rtables;		/* innermost first; the expression's own is
								 * the tracked table alone */
} UsesContext;

static bool
expr_uses_walker(Node *node, UsesContext *cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var))
	{
		Var		   *var = (Var *) node;
		List	   *rtable;
		RangeTblEntry *rte;

		if ((int) var->varlevelsup >= list_length(cxt->rtables))
			return false;
		rtable = list_nth(cxt->rtables, var->varlevelsup);
		if (rtable == NIL)
			return false;
		rte = rt_fetch(var->varno, rtable);
		return rte->rtekind == RTE_RELATION && rte->relid == cxt->relid &&
			(cxt->attnum == 0 || var->varattno == 0 || var->varattno == cxt->attnum);
	}
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;
		bool		found;

		if (cxt->attnum == 0)
		{
			ListCell   *lc;

			foreach(lc, query->rtable)
			{
				RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

				if (rte->rtekind == RTE_RELATION && rte->relid == cxt->relid)
					return true;
			}
		}
		cxt->rtables = lcons(query->rtable, cxt->rtables);
		found = query_tree_walker(query, expr_uses_walker, cxt, 0);
		cxt->rtables = list_delete_first(cxt->rtables);
		return found;
	}
	return expression_tree_walker(node, expr_uses_walker, cxt);
}

/*
 * webhook._expr_uses(node text, rel regclass, target regclass, attnum int)
 * RETURNS boolean
 *
 * Does the node tree of an expression over rel use column attnum of target
 * (any column, or the table itself, for 0)? Subqueries included.
 */
Datum
webhook_expr_uses(PG_FUNCTION_ARGS)
{
	Node	   *node;
	Oid			relid = PG_GETARG_OID(1);
	UsesContext cxt;
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	check_node_reader();
	node = stringToNode(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = RELKIND_RELATION;
	cxt.relid = PG_GETARG_OID(2);
	cxt.attnum = (AttrNumber) PG_GETARG_INT32(3);
	cxt.rtables = list_make1(list_make1(rte));
	PG_RETURN_BOOL(expr_uses_walker(node, &cxt));
}

/*
 * webhook._node_origin() RETURNS text
 *
 * The cluster and database that node trees made now belong to: their OIDs
 * mean other objects, or none, anywhere else (a dump restored, pg_upgrade).
 */
Datum
webhook_node_origin(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(psprintf(UINT64_FORMAT ":%u", GetSystemIdentifier(),
											  MyDatabaseId)));
}
