--
-- Tracking tables: the checks, and the API
--

-- Refuse what capture and moderation triggers cannot serve: anything but a
-- permanent (or unlogged) table or partitioned table of the user's. what is
-- the verb for the messages: track or moderate.
CREATE FUNCTION webhook._check_relation(rel regclass, what text) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c pg_class;
BEGIN
    SELECT * INTO c FROM pg_class x WHERE x.oid = rel;
    IF NOT FOUND THEN
        -- a regclass given as a number
        RAISE EXCEPTION 'relation with OID % does not exist', rel::oid USING ERRCODE = 'undefined_table';
    END IF;
    IF c.relkind IN ('v', 'm') THEN
        RAISE EXCEPTION 'cannot % %view %', what, CASE c.relkind WHEN 'm' THEN 'materialized ' ELSE '' END, rel
            USING ERRCODE = 'wrong_object_type',
                  HINT = format('%s the table that stores the rows.', initcap(what));
    END IF;
    IF c.relkind = 'f' THEN
        RAISE EXCEPTION 'cannot % foreign table %', what, rel
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its rows are stored, and changed, on another server.',
                  HINT = format('%s the table on the server that stores the rows.', initcap(what));
    END IF;
    IF c.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', rel
            USING ERRCODE = 'wrong_object_type',
                  HINT = format('Only tables and partitioned tables can be %s.',
                                CASE what WHEN 'track' THEN 'tracked' ELSE what || 'd' END);
    END IF;
    -- FirstNormalObjectId: what initdb made, information_schema included
    IF c.relnamespace IN ('pg_catalog'::regnamespace, 'pg_toast'::regnamespace) OR c.oid < 16384 THEN
        RAISE EXCEPTION 'cannot % system catalog %', what, rel
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'PostgreSQL changes its catalogs without firing triggers.';
    END IF;
    IF c.relpersistence = 't' THEN
        RAISE EXCEPTION 'cannot % temporary table %', what, rel
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'A temporary table goes at the end of its session without firing the event triggers that keep webhook''s tables in step.',
                  HINT = 'Use a permanent or unlogged table.';
    END IF;
END
$$;

-- Refuse what track() could not capture whole: a table that cannot carry
-- capture triggers (webhook._check_relation), a partition on its own (a
-- statement on its partitioned table fires only that table's triggers, so its
-- changes through that table would be lost), or a partition tree holding a
-- foreign table or a table tracked on its own.
CREATE FUNCTION webhook._check_trackable(rel regclass) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    root regclass;
    tracked regclass;
    part regclass;
BEGIN
    PERFORM webhook._check_relation(rel, 'track');
    IF (SELECT c.relispartition FROM pg_class c WHERE c.oid = rel) THEN
        SELECT a.relid INTO root FROM pg_partition_ancestors(rel) a
          JOIN pg_class c ON c.oid = a.relid WHERE NOT c.relispartition;
        SELECT s.rel INTO tracked FROM webhook.source s
         WHERE s.rel IN (SELECT a.relid FROM pg_partition_ancestors(_check_trackable.rel) a);
        IF tracked IS NOT NULL THEN
            RAISE EXCEPTION 'table % is a partition of tracked table %', rel, tracked
                USING ERRCODE = 'duplicate_object',
                      HINT = format('Its changes are captured already, as events of %s.', tracked);
        END IF;
        RAISE EXCEPTION 'cannot track partition % on its own', rel
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('A statement on %s fires only that table''s triggers: its changes to %s would not be captured.', root, rel),
                  HINT = format('Track %s: that captures the changes to every partition.', root);
    END IF;
    SELECT p.relid INTO part FROM pg_partition_tree(rel) p JOIN pg_class c ON c.oid = p.relid
     WHERE c.relkind = 'f' ORDER BY p.level, p.relid::oid LIMIT 1;
    IF part IS NOT NULL THEN
        RAISE EXCEPTION 'cannot track %: its partition % is a foreign table', rel, part
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Capture reads transition tables, which PostgreSQL does not collect for foreign tables.',
                  HINT = format('Detach %s first.', part);
    END IF;
    -- only an older version let a partition be tracked
    SELECT s.rel INTO part FROM webhook.source s
     WHERE s.rel IN (SELECT p.relid FROM pg_partition_tree(_check_trackable.rel) p
                      WHERE p.relid <> _check_trackable.rel)
     ORDER BY s.id LIMIT 1;
    IF part IS NOT NULL THEN
        RAISE EXCEPTION 'partition % of % is tracked on its own', part, rel
            USING ERRCODE = 'duplicate_object',
                  HINT = format('Untrack %s first.', part);
    END IF;
END
$$;

-- After CREATE TABLE ... PARTITION OF and ALTER TABLE ... ATTACH PARTITION
-- (objs: the objects of the command): refuse a table tracked on its own as a
-- partition, and a foreign table in a tracked table's partition tree, as
-- track() does. Changes to either would be lost, or fail.
CREATE FUNCTION webhook._check_partitions(objs oid[]) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part regclass;
    parent regclass;
BEGIN
    SELECT s.rel, i.inhparent INTO part, parent FROM webhook.source s
      JOIN pg_inherits i ON i.inhrelid = s.rel
      JOIN pg_class c ON c.oid = s.rel AND c.relispartition
     WHERE i.inhparent = ANY (objs)
     ORDER BY s.id LIMIT 1;
    IF part IS NOT NULL THEN
        RAISE EXCEPTION 'tracked table % cannot be a partition of %', part, parent
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'A statement on a partitioned table fires only that table''s triggers.',
                  HINT = format('Untrack %s first, and track the partitioned table: that captures the changes to every partition.', part);
    END IF;
    -- the tree under the new partition's parent: a sub-partition may hold one
    SELECT t.relid, s.rel INTO part, parent FROM pg_inherits i
     CROSS JOIN LATERAL pg_partition_tree(i.inhparent) t
      JOIN pg_class c ON c.oid = t.relid AND c.relkind = 'f'
      JOIN webhook.source s ON s.rel IN (SELECT a.relid FROM pg_partition_ancestors(i.inhparent) a)
     WHERE i.inhrelid = ANY (objs) OR i.inhparent = ANY (objs)
     ORDER BY t.relid::oid LIMIT 1;
    IF part IS NOT NULL THEN
        RAISE EXCEPTION 'foreign table % cannot be a partition of tracked table %', part, parent
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Capture reads transition tables, which PostgreSQL does not collect for foreign tables.',
                  HINT = format('Untrack %s first.', parent);
    END IF;
END
$$;

-- One user expression over a table's rows, parsed in the caller's
-- search_path, as a node tree; NULL when not given.
CREATE FUNCTION webhook._expression(rel regclass, what text, expr text, target regtype,
    explicit_cast boolean, search_path text) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF expr IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN webhook._parse_expr(rel, expr, target, explicit_cast, search_path);
EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'invalid % expression for %: %', what, rel, expr
        USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM,
              HINT = format('The %s expression is SQL over the columns of %s.', what, rel);
END
$$;

-- The names in the expressions resolve in the caller's search_path, so this
-- function has none of its own: it hands the caller's to _track.
CREATE FUNCTION webhook.track(rel regclass, kind text = 'message', channel text = 'channel_id',
    chat_type text = NULL, message text = NULL, parent text = NULL) RETURNS void
    LANGUAGE sql AS $$
SELECT webhook._track(rel, kind, channel, chat_type, message, parent,
                      pg_catalog.current_setting('search_path'))
$$;

CREATE FUNCTION webhook._track(rel regclass, kind text, channel text, chat_type text,
    message text, parent text, caller_path text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    channel_given boolean := channel IS DISTINCT FROM 'channel_id';
    parent_rel regclass;
    candidates regclass[];
    child_keys text[];
    parent_keys text[];
    n integer;
    keytype regtype;
    channel_node text;
    chat_type_node text;
    message_node text;
BEGIN
    IF rel IS NULL OR kind IS NULL THEN
        RAISE EXCEPTION 'rel and kind must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF kind NOT IN ('message', 'reaction', 'attachment', 'keyword_argument', 'row') THEN
        RAISE EXCEPTION 'unknown kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use message, reaction, attachment, keyword_argument or row.';
    END IF;
    -- temporary tables, views, foreign tables, catalogs, partitions on their own
    PERFORM webhook._check_trackable(rel);
    -- a table dropped unnoticed must not count below, as a message table
    PERFORM webhook._forget_dropped();
    IF (SELECT c.relnamespace FROM pg_class c WHERE c.oid = _track.rel) = 'webhook'::regnamespace THEN
        RAISE EXCEPTION 'cannot track webhook''s own table %', rel USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM webhook.source s WHERE s.rel = _track.rel) THEN
        RAISE EXCEPTION 'table % is already tracked', rel
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Call webhook.untrack() first to track it differently.';
    END IF;

    IF kind IN ('message', 'row') THEN
        IF message IS NOT NULL AND kind = 'row' THEN
            RAISE EXCEPTION 'a row table has no message expression' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF parent IS NOT NULL THEN
            RAISE EXCEPTION 'a % table has no parent', kind USING ERRCODE = 'invalid_parameter_value',
                HINT = 'parent is for reaction, attachment and keyword_argument tables.';
        END IF;
        -- a row table without a channel_id column simply has no channel
        IF channel = 'channel_id' AND kind = 'row' AND NOT EXISTS (
            SELECT 1 FROM pg_attribute a WHERE a.attrelid = _track.rel AND a.attname = 'channel_id' AND NOT a.attisdropped) THEN
            channel := NULL;
        END IF;
        channel_node := webhook._expression(rel, 'channel', channel, 'text', true, caller_path);
        chat_type_node := webhook._expression(rel, 'chat_type', chat_type, 'text', true, caller_path);
        message_node := webhook._expression(rel, 'message', message, 'jsonb', true, caller_path);
    ELSE
        IF channel_given OR chat_type IS NOT NULL OR message IS NOT NULL THEN
            RAISE EXCEPTION 'a % table takes its channel, chat_type and message from its parent message', kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give these when tracking the message table.';
        END IF;
        IF parent IS NOT NULL THEN
            -- the parent is the one tracked message table this one refers to, or the only one
            SELECT array_agg(DISTINCT s.rel) INTO candidates FROM webhook.source s
             JOIN pg_constraint c ON c.confrelid = s.rel AND c.conrelid = _track.rel AND c.contype = 'f'
             WHERE s.kind = 'message';
            IF coalesce(array_length(candidates, 1), 0) = 1 THEN
                parent_rel := candidates[1];
            ELSE
                SELECT count(*), min(s.rel::oid)::regclass INTO n, parent_rel
                  FROM webhook.source s WHERE s.kind = 'message';
                IF n <> 1 THEN
                    RAISE EXCEPTION 'cannot tell which message table % belongs to', rel
                        USING ERRCODE = 'invalid_parameter_value',
                              HINT = CASE WHEN n = 0 THEN 'Track the message table first.'
                                          ELSE 'Several message tables are tracked: add a foreign key from this table to its message table.' END;
                END IF;
            END IF;
            parent_keys := webhook._primary_key(parent_rel);
            IF coalesce(array_length(parent_keys, 1), 0) <> 1 THEN
                RAISE EXCEPTION 'message table % needs a single-column primary key for parent to refer to', parent_rel
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            -- it must compare with the key as it is, or every capture would fail
            SELECT a.atttypid INTO keytype FROM pg_attribute a
             WHERE a.attrelid = parent_rel AND a.attname = parent_keys[1];
            BEGIN
                child_keys := ARRAY[webhook._parse_expr(rel, parent, keytype, false, caller_path)];
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'invalid parent expression for %: %', rel, parent
                    USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM,
                          HINT = format('The parent expression is SQL over the columns of %s giving the key of %s, a %s.',
                                        rel, parent_rel, format_type(keytype, NULL));
            END;
        ELSE
            SELECT count(*) INTO n FROM pg_constraint c JOIN webhook.source s ON s.rel = c.confrelid
             WHERE c.conrelid = _track.rel AND c.contype = 'f' AND s.kind = 'message';
            IF n <> 1 THEN
                RAISE EXCEPTION '% has % foreign keys to tracked message tables, not one', rel, n
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = CASE WHEN n = 0 THEN 'Track the message table first, or give parent => an expression giving the parent message''s key.'
                                      ELSE 'Give parent => an expression giving the parent message''s key.' END;
            END IF;
            SELECT c.confrelid::regclass,
                   (SELECT array_agg(webhook._parse_expr(c.conrelid, quote_ident(a.attname), a.atttypid, false, NULL) ORDER BY k.o)
                      FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n),
                   (SELECT array_agg(a.attname::text ORDER BY k.o) FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                      JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n)
              INTO parent_rel, child_keys, parent_keys
              FROM pg_constraint c JOIN webhook.source s ON s.rel = c.confrelid
             WHERE c.conrelid = _track.rel AND c.contype = 'f' AND s.kind = 'message';
        END IF;
        -- the parent's key columns, as nodes over the parent table
        parent_keys := (SELECT array_agg(webhook._parse_expr(parent_rel, quote_ident(k), NULL, false, NULL) ORDER BY o)
                          FROM unnest(parent_keys) WITH ORDINALITY AS u(k, o));
    END IF;

    INSERT INTO webhook.source (rel, kind, parent, parent_rel, channel_node, chat_type_node,
                                message_node, child_key_nodes, parent_key_nodes, node_origin)
    VALUES (rel, kind, parent, parent_rel, channel_node, chat_type_node, message_node,
            child_keys, parent_keys, webhook._node_origin());
    PERFORM webhook._install_triggers();
END
$$;

CREATE FUNCTION webhook.untrack(rel regclass) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s webhook.source;
BEGIN
    SELECT * INTO s FROM webhook.source x WHERE x.rel = untrack.rel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked', rel USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT 1 FROM webhook.source x WHERE x.parent_rel = untrack.rel) THEN
        RAISE EXCEPTION 'table % has tracked child tables', rel
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = (SELECT 'Tracked as its children: ' || string_agg(x.rel::text, ', ' ORDER BY x.id) || '.'
                              FROM webhook.source x WHERE x.parent_rel = untrack.rel),
                  HINT = 'Untrack them first.';
    END IF;
    PERFORM webhook._drop_triggers(s.rel);
    DELETE FROM webhook.source x WHERE x.id = s.id;
    PERFORM webhook._install_triggers();
END
$$;

-- Which expression of a source uses a table or one of its columns (attnum
-- 0: the table itself), or NULL.
CREATE FUNCTION webhook._source_uses(s webhook.source, target oid, attnum integer) RETURNS text
    LANGUAGE sql STABLE AS $$
SELECT CASE
    WHEN webhook._expr_uses(s.channel_node, s.rel, target, attnum) THEN 'channel'
    WHEN webhook._expr_uses(s.chat_type_node, s.rel, target, attnum) THEN 'chat_type'
    WHEN webhook._expr_uses(s.message_node, s.rel, target, attnum) THEN 'message'
    WHEN EXISTS (SELECT 1 FROM pg_catalog.unnest(s.child_key_nodes) e
                  WHERE webhook._expr_uses(e, s.rel, target, attnum))
        THEN CASE WHEN s.parent IS NOT NULL THEN 'parent' ELSE 'foreign key' END
    WHEN EXISTS (SELECT 1 FROM pg_catalog.unnest(s.parent_key_nodes) e
                  WHERE webhook._expr_uses(e, s.parent_rel, target, attnum))
        THEN 'parent key'
END
$$;

