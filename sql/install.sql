--
-- install: CREATE EXTENSION, the objects it owns, DROP and CREATE again
--
\set SHOW_CONTEXT never

CREATE EXTENSION webhook;
\dx webhook
\dx+ webhook

-- Nothing for PUBLIC on the schema, its tables, sequences and functions.
SELECT nspname, nspacl IS NULL AS default_acl, pg_get_userbyid(nspowner) = current_user AS owned
  FROM pg_namespace WHERE nspname = 'webhook';
SELECT c.relname, c.relkind,
       has_table_privilege('public', c.oid, 'SELECT') AS public_select
  FROM pg_class c
 WHERE c.relnamespace = 'webhook'::regnamespace AND c.relkind IN ('r', 'S', 'v')
 ORDER BY c.relname;
SELECT p.proname
  FROM pg_proc p
 WHERE p.pronamespace = 'webhook'::regnamespace
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;

-- The capture trigger, the DDL event triggers and the explicit-event
-- functions run as the extension's owner, with a safe search_path.
SELECT p.oid::regprocedure, p.prosecdef, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'webhook'::regnamespace AND p.prosecdef
 ORDER BY p.proname;
SELECT evtname, evtevent, evtfoid::regproc, evttags FROM pg_event_trigger ORDER BY evtname;

-- The tables are dumped with their contents, the sequences with their state.
SELECT c::regclass AS dumped FROM pg_extension, unnest(extconfig) AS c
 WHERE extname = 'webhook' ORDER BY c::regclass::text;

-- Storage settings: eager autovacuum on both churning tables, and room on
-- each delivery page for the version that records the delivery's result.
SELECT relname, unnest(reloptions) AS option FROM pg_class
 WHERE relnamespace = 'webhook'::regnamespace AND reloptions IS NOT NULL ORDER BY 1, 2;

-- A second CREATE fails; IF NOT EXISTS is a no-op.
CREATE EXTENSION webhook;
\echo :LAST_ERROR_SQLSTATE
CREATE EXTENSION IF NOT EXISTS webhook;

-- DROP removes every object, CREATE brings them back. The schema that
-- CREATE EXTENSION made for "schema = webhook" is not a member of the
-- extension (PostgreSQL's rule), so it stays, empty, and is reused.
DROP EXTENSION webhook;
SELECT count(*) AS objects_left FROM pg_class WHERE relnamespace = 'webhook'::regnamespace;
SELECT count(*) AS functions_left FROM pg_proc WHERE pronamespace = 'webhook'::regnamespace;
SELECT count(*) AS types_left FROM pg_type WHERE typnamespace = 'webhook'::regnamespace;
SELECT count(*) AS event_triggers_left FROM pg_event_trigger WHERE evtname LIKE 'webhook%';
CREATE EXTENSION webhook;
SELECT count(*) AS tables FROM pg_tables WHERE schemaname = 'webhook';

-- A tracked table depends on the extension through its capture triggers:
-- DROP refuses, DROP ... CASCADE removes the triggers and leaves the table.
CREATE TABLE install_message (id int PRIMARY KEY, channel_id text, body text);
SELECT webhook.track('install_message');
DROP EXTENSION webhook;
\echo :LAST_ERROR_SQLSTATE
DROP EXTENSION webhook CASCADE;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'install_message'::regclass;
INSERT INTO install_message VALUES (1, 'general', 'still works');
SELECT * FROM install_message;
DROP TABLE install_message;

-- Installed again for the tests that follow.
CREATE EXTENSION webhook;
SELECT count(*) AS sources FROM webhook.source;
