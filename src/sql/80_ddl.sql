--
-- DDL on tracked tables: drops refused or followed, renames followed
--

-- A dropped tracked table takes its children's tracking with it, and the
-- statements of the tables still tracked stop naming it. What a tracked
-- expression or key uses (a column, a table, a function) cannot be dropped
-- while the tracking stays. Event triggers run as the user whose DDL fired
-- them, who has no rights on webhook.*: definer.
CREATE FUNCTION webhook._on_drop() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped oid[];
    s webhook.source;
    obj record;
    what text;
    hint text;
BEGIN
    -- DROP EXTENSION drops webhook.source too
    IF to_regclass('webhook.source') IS NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() o
                WHERE o.classid IN ('pg_proc'::regclass, 'pg_namespace'::regclass)) THEN
        PERFORM webhook._check_endpoint_functions();
    END IF;
    SELECT array_agg(d.objid) INTO dropped FROM pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0;
    IF to_regclass('webhook.moderation') IS NOT NULL THEN
        DELETE FROM webhook.moderation m WHERE m.rel::oid = ANY (dropped);
    END IF;
    FOR s IN SELECT * FROM webhook.source x
              WHERE NOT coalesce(x.rel::oid = ANY (dropped), false)
                AND NOT coalesce(x.parent_rel::oid = ANY (dropped), false) LOOP
        FOR obj IN SELECT * FROM pg_event_trigger_dropped_objects() o
                    WHERE o.classid = 'pg_class'::regclass LOOP
            what := webhook._source_uses(s, obj.objid, obj.objsubid);
            IF what IS NOT NULL THEN
                RAISE EXCEPTION 'cannot drop % %: the % expression of tracked table % uses it',
                                obj.object_type, obj.object_identity, what, s.rel
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = format('Call webhook.untrack(%L) first, then track the table again without it.', s.rel::text);
            END IF;
        END LOOP;
    END LOOP;
    IF EXISTS (SELECT 1 FROM webhook.source x WHERE x.rel::oid = ANY (dropped)) THEN
        -- children of a dropped message table lose their tracking (and triggers) too
        PERFORM webhook._untrack_gone(dropped);
    ELSIF NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() o
                       WHERE o.classid IN ('pg_proc'::regclass, 'pg_type'::regclass,
                                           'pg_operator'::regclass, 'pg_cast'::regclass,
                                           'pg_collation'::regclass))
          OR NOT EXISTS (SELECT 1 FROM webhook.source) THEN
        RETURN;
    END IF;
    -- statements regenerated: one that needed a dropped function fails here
    BEGIN
        PERFORM webhook._install_triggers(ARRAY(SELECT o.objid FROM pg_event_trigger_dropped_objects() o));
    EXCEPTION WHEN dependent_objects_still_exist THEN
        GET STACKED DIAGNOSTICS what = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
        RAISE EXCEPTION 'cannot drop %: %',
                        (SELECT string_agg(o.object_type || ' ' || o.object_identity, ', ')
                           FROM pg_event_trigger_dropped_objects() o WHERE o.original), what
            USING ERRCODE = 'dependent_objects_still_exist', HINT = hint;
    END;
END
$$;

CREATE EVENT TRIGGER webhook_on_drop ON sql_drop EXECUTE FUNCTION webhook._on_drop();

-- The capture statements are SQL: after a change to a tracked table, or to
-- anything a tracked expression may name (a column, a table, a function, a
-- type, a schema renamed), they are generated again from the expressions'
-- node trees, with the names of now; a new partition of a tracked table gets
-- its triggers (webhook._install_triggers says what is checked and when).
CREATE FUNCTION webhook._on_alter() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    touched oid[] := ARRAY(SELECT d.objid FROM pg_event_trigger_ddl_commands() d);
BEGIN
    IF to_regclass('webhook.source') IS NULL THEN
        RETURN;
    END IF;
    PERFORM webhook._check_partitions(touched);
    IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() d
                WHERE d.command_tag IN ('ALTER FUNCTION', 'ALTER ROUTINE', 'ALTER SCHEMA')) THEN
        PERFORM webhook._check_endpoint_functions();
    END IF;
    -- a new table matters only as a partition of a tracked one
    IF EXISTS (SELECT 1 FROM webhook.source s)
       AND EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() d
                    WHERE d.command_tag LIKE 'ALTER %'
                       OR EXISTS (SELECT 1 FROM webhook.source s
                                   WHERE d.objid IN (SELECT webhook._tracked_tables(s.rel)))) THEN
        PERFORM webhook._install_triggers(touched);
    END IF;
END
$$;

CREATE EVENT TRIGGER webhook_on_alter ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER SCHEMA', 'CREATE TABLE', 'CREATE FOREIGN TABLE', 'ALTER FUNCTION', 'ALTER PROCEDURE',
                 'ALTER ROUTINE', 'ALTER TYPE', 'ALTER DOMAIN', 'ALTER VIEW',
                 'ALTER MATERIALIZED VIEW', 'ALTER FOREIGN TABLE', 'ALTER OPERATOR',
                 'ALTER COLLATION')
    EXECUTE FUNCTION webhook._on_alter();

