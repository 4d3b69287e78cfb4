--
-- Tracking tables
--

-- schema.table, quoted, for generated SQL
CREATE FUNCTION webhook._qualified(rel regclass) RETURNS text
    LANGUAGE sql STABLE AS $$
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = rel
$$;

-- the primary key columns, in key order (NULL when there is none)
CREATE FUNCTION webhook._primary_key(rel regclass) RETURNS text[]
    LANGUAGE sql STABLE AS $$
SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.ord)
  FROM pg_catalog.pg_constraint c
  CROSS JOIN LATERAL pg_catalog.unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
 WHERE c.conrelid = rel AND c.contype = 'p'
$$;

-- The tables that carry a tracked table's capture triggers: the table, and
-- when it is partitioned every partition below it, sub-partitions included.
-- A statement fires only the statement triggers of the table it names, and
-- its transition tables hold every row it changed below that table, so each
-- partition needs the triggers and no row is captured twice. Foreign tables
-- cannot have transition tables: track() and ATTACH PARTITION refuse them,
-- and one already there (attached before this check existed) is skipped.
CREATE FUNCTION webhook._tracked_tables(rel regclass) RETURNS SETOF regclass
    LANGUAGE sql STABLE AS $$
SELECT t.relid
  FROM (SELECT rel AS relid, -1 AS level
        UNION ALL
        SELECT p.relid, p.level FROM pg_catalog.pg_partition_tree(rel) AS p
         WHERE p.relid <> rel) AS t
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.relid AND c.relkind = 'f')
 ORDER BY t.level, t.relid::oid
$$;

-- An expression of a source as SQL over the alias given (NULL: as the
-- source shows it, unprefixed), or 'NULL::<type>' when there is none.
CREATE FUNCTION webhook._expr_sql(node text, rel regclass, alias text, otherwise text = NULL) RETURNS text
    LANGUAGE sql STABLE AS $$
SELECT CASE WHEN node IS NULL THEN otherwise
            ELSE webhook._deparse_expr(node, rel, alias) END
$$;

-- The compact message object of a message source, over the row alias _wh_msg.
CREATE FUNCTION webhook._message_sql(src webhook.source) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parts text := '';
    k text;
    arrays text;
    c webhook.source;
    cond text;
    pk text[];
    i integer;
BEGIN
    IF src.message_node IS NOT NULL THEN
        RETURN format('(%s)', webhook._expr_sql(src.message_node, src.rel, '_wh_msg'));
    END IF;
    FOREACH k IN ARRAY ARRAY['reaction', 'attachment', 'keyword_argument'] LOOP
        arrays := NULL;
        FOR c IN SELECT * FROM webhook.source s
                  WHERE s.parent_rel = src.rel AND s.kind = k ORDER BY s.id LOOP
            cond := '';
            FOR i IN 1 .. array_length(c.child_key_nodes, 1) LOOP
                cond := cond || CASE WHEN i > 1 THEN ' AND ' ELSE '' END
                        || format('_wh_sub._wh_k%s = %s', i,
                                  webhook._expr_sql(c.parent_key_nodes[i], src.rel, '_wh_msg'));
            END LOOP;
            pk := webhook._primary_key(c.rel);
            arrays := concat_ws(', ', arrays, format(
                '(SELECT jsonb_agg(webhook._strip(to_jsonb(_wh_sub._wh_child))%s) FROM (SELECT _wh_child, %s FROM %s AS _wh_child) AS _wh_sub WHERE %s)',
                CASE WHEN pk IS NULL THEN ''
                     ELSE ' ORDER BY ' || (SELECT string_agg(format('(_wh_sub._wh_child).%I', x), ', ') FROM unnest(pk) x) END,
                (SELECT string_agg(format('(%s) AS _wh_k%s', webhook._expr_sql(e, c.rel, '_wh_child'), o), ', ')
                   FROM unnest(c.child_key_nodes) WITH ORDINALITY AS u(e, o)),
                webhook._qualified(c.rel), cond));
        END LOOP;
        IF arrays IS NOT NULL THEN
            parts := parts || format(' || webhook._children(%L, %s)',
                CASE k WHEN 'reaction' THEN 'reactions' WHEN 'attachment' THEN 'attachments' ELSE 'kwargs' END,
                arrays);
        END IF;
    END LOOP;
    RETURN '(webhook._strip(to_jsonb(_wh_msg))' || parts || ')';
END
$$;

-- {key: the rows of all arrays}, or {} when they are all empty
CREATE FUNCTION webhook._children(key text, VARIADIC arrays jsonb[]) RETURNS jsonb
    LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN count(*) = 0 THEN '{}'::jsonb
            ELSE pg_catalog.jsonb_build_object(key, pg_catalog.jsonb_agg(el.v ORDER BY a.o, el.o)) END
  FROM pg_catalog.unnest(arrays) WITH ORDINALITY AS a(arr, o)
  CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(a.arr) WITH ORDINALITY AS el(v, o)
$$;

-- Generate a capture statement of a source: a SELECT of the channel,
-- chat_type, message, record and old_record of the events that a statement
-- of op makes, over its transition table. It runs as the table's owner;
-- src/capture.c queues its rows.
CREATE FUNCTION webhook._capture_sql(src webhook.source, op text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tbl text := CASE op WHEN 'DELETE' THEN 'webhook_old' ELSE 'webhook_new' END;
    head text := 'SELECT n._wh_channel AS channel, n._wh_chat_type AS chat_type, n._wh_message AS message, ';
    rows text;
    parent webhook.source;
    keys text;
    cond text;
    i integer;
BEGIN
    IF src.kind IN ('message', 'row') THEN
        rows := format('SELECT (%s)::text AS _wh_channel, (%s)::text AS _wh_chat_type, (%s)::jsonb AS _wh_message, webhook._row_jsonb(_wh_msg) AS _wh_record%s FROM %s AS _wh_msg',
            webhook._expr_sql(src.channel_node, src.rel, '_wh_msg', 'NULL::text'),
            webhook._expr_sql(src.chat_type_node, src.rel, '_wh_msg', 'NULL::text'),
            CASE WHEN src.kind = 'message' AND (src.message_node IS NOT NULL OR EXISTS (
                     SELECT 1 FROM webhook.source c WHERE c.parent_rel = src.rel))
                 THEN webhook._message_sql(src)
                 ELSE 'NULL::jsonb' END,   -- derivable from the record: see webhook._event
            CASE WHEN op = 'UPDATE' THEN ', row_number() OVER () AS _wh_rn' ELSE '' END,
            tbl);
        IF op = 'UPDATE' THEN
            -- Old and new transition rows are stored pairwise, in the same order.
            RETURN head || format(
                'n._wh_record AS record, o._wh_record AS old_record'
                ' FROM (%s) AS n JOIN (SELECT row_number() OVER () AS _wh_rn, webhook._row_jsonb(_wh_msg) AS _wh_record FROM webhook_old AS _wh_msg) AS o'
                ' ON o._wh_rn = n._wh_rn WHERE o._wh_record IS DISTINCT FROM n._wh_record',
                rows);
        END IF;
        RETURN head || format('%s AS record, %s AS old_record FROM (%s) AS n',
            CASE WHEN op = 'DELETE' THEN 'NULL::jsonb' ELSE 'n._wh_record' END,
            CASE WHEN op = 'DELETE' THEN 'n._wh_record' ELSE 'NULL::jsonb' END,
            rows);
    END IF;

    -- A child kind: the event is message_changed for its parent message.
    SELECT * INTO parent FROM webhook.source s WHERE s.rel = src.parent_rel;
    keys := (SELECT string_agg(format('(%s) AS _wh_k%s', webhook._expr_sql(e, src.rel, '_wh_child'), o), ', ')
               FROM unnest(src.child_key_nodes) WITH ORDINALITY AS u(e, o));
    cond := '';
    FOR i IN 1 .. array_length(src.child_key_nodes, 1) LOOP
        cond := cond || CASE WHEN i > 1 THEN ' AND ' ELSE '' END
                || format('%s = c._wh_k%s', webhook._expr_sql(src.parent_key_nodes[i], parent.rel, '_wh_msg'), i);
    END LOOP;
    rows := format('SELECT webhook._row_jsonb(_wh_child) AS _wh_record, %s%s FROM %s AS _wh_child',
        keys, CASE WHEN op = 'UPDATE' THEN ', row_number() OVER () AS _wh_rn' ELSE '' END, tbl);
    RETURN format(
        'SELECT p._wh_channel AS channel, p._wh_chat_type AS chat_type, p._wh_message AS message, %s AS record, %s AS old_record FROM (%s) AS c%s'
        ' CROSS JOIN LATERAL (SELECT (%s)::text AS _wh_channel, (%s)::text AS _wh_chat_type, (%s)::jsonb AS _wh_message FROM %s AS _wh_msg WHERE %s) AS p',
        CASE WHEN op = 'DELETE' THEN 'NULL::jsonb' ELSE 'c._wh_record' END,
        CASE op WHEN 'DELETE' THEN 'c._wh_record' WHEN 'UPDATE' THEN 'o._wh_record' ELSE 'NULL::jsonb' END,
        rows,
        CASE WHEN op = 'UPDATE' THEN
            ' JOIN (SELECT row_number() OVER () AS _wh_rn, webhook._row_jsonb(_wh_child) AS _wh_record FROM webhook_old AS _wh_child) AS o'
            ' ON o._wh_rn = c._wh_rn AND o._wh_record IS DISTINCT FROM c._wh_record'
        ELSE '' END,
        webhook._expr_sql(parent.channel_node, parent.rel, '_wh_msg', 'NULL::text'),
        webhook._expr_sql(parent.chat_type_node, parent.rel, '_wh_msg', 'NULL::text'),
        webhook._message_sql(parent), webhook._qualified(parent.rel), cond);
END
$$;

-- Drop the capture triggers of a table (and of its partitions).
CREATE FUNCTION webhook._drop_triggers(rel regclass) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t name;
    r regclass;
BEGIN
    FOR t, r IN SELECT tgname, tgrelid FROM pg_trigger
                 WHERE tgrelid IN (SELECT webhook._tracked_tables(rel))
                   AND tgname IN ('webhook_insert', 'webhook_update', 'webhook_delete') LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, webhook._qualified(r));
    END LOOP;
END
$$;

-- Drop the capture triggers no tracked table accounts for: those of a
-- partition detached from a tracked table, or of a table whose source was
-- forgotten.
CREATE FUNCTION webhook._drop_stale_triggers() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t name;
    r regclass;
BEGIN
    FOR t, r IN SELECT x.tgname, x.tgrelid FROM pg_trigger x
                 WHERE x.tgfoid = 'webhook._capture()'::regprocedure
                   AND x.tgname IN ('webhook_insert', 'webhook_update', 'webhook_delete')
                   AND NOT EXISTS (SELECT 1 FROM webhook.source s
                                    WHERE x.tgrelid IN (SELECT webhook._tracked_tables(s.rel))) LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, webhook._qualified(r));
    END LOOP;
END
$$;

-- Untrack tables that are gone: their sources, and the tracking (and
-- triggers) of the children of a gone message table.
CREATE FUNCTION webhook._untrack_gone(gone oid[]) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s webhook.source;
BEGIN
    FOR s IN SELECT * FROM webhook.source x
              WHERE x.parent_rel::oid = ANY (gone) AND NOT x.rel::oid = ANY (gone) LOOP
        PERFORM webhook._drop_triggers(s.rel);
    END LOOP;
    DELETE FROM webhook.source x
     WHERE x.rel::oid = ANY (gone) OR x.parent_rel::oid = ANY (gone);
END
$$;

-- Forget, with a warning, tracked tables and moderation hooks whose table no
-- longer exists. webhook._on_drop() forgets them as they are dropped, but
-- event triggers do not fire when disabled, under session_replication_role =
-- replica, in single-user mode, nor for the temporary tables a session
-- leaves (which track() refuses, and older versions accepted). A source left
-- behind named no table and broke every later track() and ALTER TABLE.
CREATE FUNCTION webhook._forget_dropped() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    gone oid[];
    s webhook.source;
    r regclass;
BEGIN
    SELECT array_agg(x.rel::oid ORDER BY x.id) INTO gone FROM webhook.source x
     WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = x.rel);
    FOR s IN SELECT * FROM webhook.source x
              WHERE x.rel::oid = ANY (gone) OR x.parent_rel::oid = ANY (gone) ORDER BY x.id LOOP
        RAISE WARNING 'webhook no longer tracks %: %', s.rel,
                CASE WHEN s.rel::oid = ANY (gone) THEN 'the table was dropped unnoticed'
                     ELSE format('its message table (OID %s) was dropped unnoticed', s.parent_rel::oid) END
            USING DETAIL = 'It was dropped while webhook''s event triggers did not fire (disabled, session_replication_role = replica, single-user mode, or a temporary table at the end of its session).';
    END LOOP;
    IF gone IS NOT NULL THEN
        PERFORM webhook._untrack_gone(gone);
    END IF;
    FOR r IN DELETE FROM webhook.moderation x
              WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = x.rel) RETURNING x.rel LOOP
        RAISE WARNING 'webhook forgets the moderation hook of %: the table was dropped unnoticed', r;
    END LOOP;
END
$$;

-- Node trees made in another database (a dump restored) name objects by OIDs
-- that mean nothing here: parse them again from the SQL kept beside them,
-- every name in which is qualified.
CREATE FUNCTION webhook._reparse(s webhook.source) RETURNS webhook.source
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    path text := 'pg_catalog, pg_temp';
BEGIN
    s.channel_node := webhook._parse_expr(s.rel, s.channel, NULL, false, path);
    s.chat_type_node := webhook._parse_expr(s.rel, s.chat_type, NULL, false, path);
    s.message_node := webhook._parse_expr(s.rel, s.message, NULL, false, path);
    s.child_key_nodes := (SELECT array_agg(webhook._parse_expr(s.rel, e, NULL, false, path) ORDER BY o)
                            FROM unnest(s.child_keys) WITH ORDINALITY AS u(e, o));
    s.parent_key_nodes := (SELECT array_agg(webhook._parse_expr(s.parent_rel, e, NULL, false, path) ORDER BY o)
                             FROM unnest(s.parent_keys) WITH ORDINALITY AS u(e, o));
    s.node_origin := webhook._node_origin();
    UPDATE webhook.source x
       SET channel_node = s.channel_node, chat_type_node = s.chat_type_node,
           message_node = s.message_node, child_key_nodes = s.child_key_nodes,
           parent_key_nodes = s.parent_key_nodes, node_origin = s.node_origin
     WHERE x.id = s.id;
    RETURN s;
END
$$;

-- What a source's capture needs of its tables: one owner for a child table
-- and its message table (each one's capture serializes the other's rows, as
-- its own owner), no column a generated statement's alias would hide, and
-- statements that plan and run as the owner (over empty transition tables).
CREATE FUNCTION webhook._check_source(s webhook.source) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    col text;
BEGIN
    IF s.parent_rel IS NOT NULL AND
       (SELECT relowner FROM pg_class WHERE oid = s.rel) <>
       (SELECT relowner FROM pg_class WHERE oid = s.parent_rel) THEN
        RAISE EXCEPTION 'table % and its message table % have different owners', s.rel, s.parent_rel
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Capturing a change to either one serializes rows of the other, as the owner of the table changed.',
                  HINT = 'Give both tables the same owner.';
    END IF;
    SELECT a.attname INTO col FROM pg_attribute a
     WHERE a.attrelid IN (SELECT webhook._tracked_tables(s.rel)) AND a.attnum > 0
       AND NOT a.attisdropped AND a.attname LIKE '\_wh\_%'
     LIMIT 1;
    IF col IS NOT NULL THEN
        RAISE EXCEPTION 'column name "%" of % is reserved', col, s.rel
            USING ERRCODE = 'reserved_name',
                  DETAIL = 'Names starting with _wh_ are the aliases of the capture statements.';
    END IF;
    PERFORM webhook._check_capture(s.id);
END
$$;

-- Regenerate every source's expressions and statements (names as they are
-- now) and install the missing triggers. touched: the objects of the DDL
-- that asked (NULL from track and untrack, which check and reinstall all).
-- A source is checked (webhook._check_source) when its statements changed or
-- its tables were touched, and gets new triggers only when its statements
-- changed: DDL elsewhere takes no lock on tracked tables. An event trigger
-- never creates the triggers of a tracked table that lacks them (removed by
-- its owner, or not yet made by a dump being restored), only those of a new
-- partition of one that has them.
CREATE FUNCTION webhook._install_triggers(touched oid[] = NULL) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s webhook.source;
    n webhook.source;
    op text;
    t regclass;
    renew boolean;
    has boolean;
BEGIN
    PERFORM webhook._forget_dropped();
    PERFORM webhook._drop_stale_triggers();
    FOR s IN SELECT * FROM webhook.source ORDER BY id LOOP
        BEGIN
            IF s.node_origin IS DISTINCT FROM webhook._node_origin() THEN
                s := webhook._reparse(s);
            END IF;
            n := s;
            n.channel := webhook._expr_sql(s.channel_node, s.rel, NULL);
            n.chat_type := webhook._expr_sql(s.chat_type_node, s.rel, NULL);
            n.message := webhook._expr_sql(s.message_node, s.rel, NULL);
            n.parent := CASE WHEN s.parent IS NOT NULL THEN webhook._expr_sql(s.child_key_nodes[1], s.rel, NULL) END;
            n.child_keys := (SELECT array_agg(webhook._expr_sql(e, s.rel, NULL) ORDER BY o)
                               FROM unnest(s.child_key_nodes) WITH ORDINALITY AS u(e, o));
            n.parent_keys := (SELECT array_agg(webhook._expr_sql(e, s.parent_rel, NULL) ORDER BY o)
                                FROM unnest(s.parent_key_nodes) WITH ORDINALITY AS u(e, o));
            n.insert_sql := webhook._capture_sql(n, 'INSERT');
            n.update_sql := webhook._capture_sql(n, 'UPDATE');
            n.delete_sql := webhook._capture_sql(n, 'DELETE');
            renew := (n.insert_sql, n.update_sql, n.delete_sql) IS DISTINCT FROM
                     (s.insert_sql, s.update_sql, s.delete_sql);
            IF n IS DISTINCT FROM s THEN
                UPDATE webhook.source x
                   SET channel = n.channel, chat_type = n.chat_type, message = n.message,
                       parent = n.parent, child_keys = n.child_keys, parent_keys = n.parent_keys,
                       insert_sql = n.insert_sql, update_sql = n.update_sql, delete_sql = n.delete_sql
                 WHERE x.id = s.id;
            END IF;
            IF renew OR touched IS NULL OR s.parent_rel::oid = ANY (touched)
               OR EXISTS (SELECT 1 FROM webhook._tracked_tables(s.rel) x WHERE x::oid = ANY (touched)) THEN
                -- errors surface here, as the owner would meet them, not at the first write
                PERFORM webhook._check_source(n);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'the tracking of table % would break: %', s.rel, SQLERRM
                USING ERRCODE = CASE SQLSTATE WHEN 'XX000' THEN 'dependent_objects_still_exist'
                                              ELSE SQLSTATE END,
                      HINT = format('Call webhook.untrack(%L) first, or track the table with expressions that do not need what changes.', s.rel::text);
        END;
        -- the same triggers, naming the same source, on each partition
        FOR t IN SELECT webhook._tracked_tables(s.rel) LOOP
            FOREACH op IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE'] LOOP
                has := EXISTS (SELECT 1 FROM pg_trigger x WHERE x.tgrelid = t AND x.tgname = 'webhook_' || lower(op));
                CONTINUE WHEN has AND NOT renew AND touched IS NOT NULL;
                CONTINUE WHEN NOT has AND touched IS NOT NULL AND
                    (t = s.rel OR NOT EXISTS (SELECT 1 FROM pg_trigger x
                                               WHERE x.tgrelid = s.rel AND x.tgname = 'webhook_' || lower(op)));
                IF has THEN
                    EXECUTE format('DROP TRIGGER %I ON %s', 'webhook_' || lower(op), webhook._qualified(t));
                END IF;
                EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s TABLE AS %I FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture(%L)',
                               'webhook_' || lower(op), op, webhook._qualified(t),
                               CASE op WHEN 'DELETE' THEN 'OLD' WHEN 'INSERT' THEN 'NEW' ELSE 'OLD TABLE AS webhook_old NEW' END,
                               CASE op WHEN 'DELETE' THEN 'webhook_old' ELSE 'webhook_new' END,
                               s.id);
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;

