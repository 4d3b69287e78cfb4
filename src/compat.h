/*-------------------------------------------------------------------------
 *
 * compat.h
 *		The PostgreSQL versions webhook is written for, and the shims for
 *		the server APIs that differ between them.
 *
 * webhook builds for PostgreSQL 15, 16 and 17. Only 15 is built and tested
 * here; the shims below cover the API changes of 16 and 17 named in their
 * release notes and headers that this code meets, and are untested.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_COMPAT_H
#define WEBHOOK_COMPAT_H

#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 180000
#error "webhook builds for PostgreSQL 15, 16 and 17"
#endif

#ifndef WEBHOOK_VERSION
#error "WEBHOOK_VERSION is set by the Makefile from EXTVERSION"
#endif

/*
 * 17: a WaitEventSet belongs to a resource owner, not a memory context
 * (NULL: it lives until freed, as a TopMemoryContext one did).
 */
#if PG_VERSION_NUM >= 170000
#define WebhookCreateWaitEventSet(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define WebhookCreateWaitEventSet(nevents) CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/* 17: makeJsonLexContextCstringLen() takes a context to fill, or NULL. */
#if PG_VERSION_NUM >= 170000
#define WebhookJsonLexContext(json, len, enc) \
	makeJsonLexContextCstringLen(NULL, (json), (len), (enc), true)
#else
#define WebhookJsonLexContext(json, len, enc) \
	makeJsonLexContextCstringLen((json), (len), (enc), true)
#endif

/* 17: getIdentitySequence() takes the open relation, not its OID. */
#if PG_VERSION_NUM >= 170000
#include "access/relation.h"
#include "catalog/dependency.h"
static inline Oid
WebhookIdentitySequence(Oid relid, AttrNumber attnum)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	Oid			seq = getIdentitySequence(rel, attnum, true);

	relation_close(rel, AccessShareLock);
	return seq;
}
#else
#define WebhookIdentitySequence(relid, attnum) \
	getIdentitySequence((relid), (attnum), true)
#endif

/* 16: one ownership check for every kind of object. */
#if PG_VERSION_NUM >= 160000
#define WebhookDatabaseOwner(db, role) \
	object_ownercheck(DatabaseRelationId, (db), (role))
#else
#define WebhookDatabaseOwner(db, role) pg_database_ownercheck((db), (role))
#endif

#endif							/* WEBHOOK_COMPAT_H */
