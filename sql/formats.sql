--
-- formats: the built-in formats are named in two places side by side
-- (src/sql/30_formats.sql), which must agree; their C rendering is what
-- their SQL functions return; the form check of users' functions.
--
\set SHOW_CONTEXT never

-- Every built-in format renders through webhook._render(), no other name does,
-- and every webhook.format_* function is a built-in format.
SELECT f AS format, webhook._render(f, '{"type": "x"}', NULL) IS NOT NULL AS renders
  FROM unnest(webhook._builtin_formats()) AS f;
SELECT webhook._render('nosuch', '{"type": "x"}', NULL) AS not_built_in;
SELECT p.proname AS not_listed
  FROM pg_proc p
 WHERE p.pronamespace = 'webhook'::regnamespace AND p.proname LIKE 'format\_%'
   AND substr(p.proname, 8) <> ALL (webhook._builtin_formats());

-- The worker renders the built-in formats in C (webhook._render): byte for
-- byte what the formats' SQL functions return, for every kind of event,
-- missing and null keys, empty values (phraseanet strips them), and data
-- that is an object, an array, a string or null.
CREATE TEMP TABLE render_events (n serial, event jsonb);
INSERT INTO render_events (event) VALUES
  ('{"id": 1, "type": "update_notification", "kind": "message", "op": "INSERT", "update_type": "message_created", "channel": "C1", "chat_type": "group", "message": {"id": "m1", "content": "hé \"quoted\"\n", "n": 1.50}, "record": {"id": "m1"}, "old_record": null, "data": null, "table": "messages", "schema": "public", "created_at": "2026-12-03T00:00:00+00:00"}'),
  ('{"id": 2, "type": "update_notification", "kind": "message", "op": "UPDATE", "update_type": "message_changed", "channel": "C1", "chat_type": "", "message": {}, "record": {"a": [1, 2]}, "old_record": {"a": []}, "data": null, "table": "messages", "schema": "public", "created_at": "x"}'),
  ('{"id": 3, "type": "update_notification", "kind": "message", "op": "DELETE", "update_type": "message_deleted", "channel": null, "chat_type": null, "message": {"id": "m3"}, "record": null, "old_record": {"id": "m3"}, "data": null, "table": "messages", "schema": "public", "created_at": null}'),
  ('{"id": 4, "type": "update_notification", "kind": "reaction", "op": "INSERT", "update_type": "message_changed", "channel": "C2", "chat_type": "dm", "message": {"id": "m4", "reactions": [{"r": "+1"}]}, "record": {"r": "+1"}, "old_record": null, "data": null, "table": "reactions", "schema": "chat", "created_at": "t"}'),
  ('{"id": 5, "type": "update_notification", "kind": "attachment", "op": "DELETE", "channel": "C2", "message": null, "record": null, "old_record": {"f": 1}, "table": "files"}'),
  ('{"id": 6, "type": "republish_request", "channel": "C3", "chat_type": "group", "data": {"title": "T", "z": [true, false, null]}, "created_at": "t"}'),
  ('{"id": 7, "type": "unpublish_request", "channel": "C3", "chat_type": null, "data": null}'),
  ('{"id": 8, "type": "republish_request", "channel": "C3", "data": "just a string"}'),
  ('{"id": 9, "type": "republish_request", "channel": "C3"}'),
  ('{"id": 10, "type": "custom_thing", "channel": "C4", "data": {"event": "theirs", "version": 7, "k": "v"}, "created_at": "t"}'),
  ('{"id": 11, "type": "custom_thing", "data": [1, "two", {"three": 3}]}'),
  ('{"id": 12, "type": "custom_thing", "data": 12.5e3}'),
  ('{"id": 13, "type": "custom_thing", "data": null}'),
  ('{"id": 14, "type": "row_change", "kind": "row", "op": "UPDATE", "record": {"x": 1}, "old_record": {"x": 0}, "table": "t", "schema": "s"}'),
  ('{"id": 15, "type": "row_change", "kind": "keyword_argument", "op": "INSERT", "record": {"k": "v"}, "message": {"id": "m"}, "table": "kw"}'),
  ('{"type": null}'),
  ('{}'),
  ('{"type": 5, "op": true, "kind": ["message"], "table": {"a": 1}}'),
  ('{"type": "update_notification", "message": "", "channel": "", "data": [], "record": {}, "table": null}');
SELECT f AS format, e.n AS event, webhook._render(f, e.event, ep) AS c,
       CASE f WHEN 'slackchat' THEN webhook.format_slackchat(e.event, ep)
              WHEN 'channel' THEN webhook.format_channel(e.event, ep)
              WHEN 'phraseanet' THEN webhook.format_phraseanet(e.event, ep)
              WHEN 'supabase' THEN webhook.format_supabase(e.event, ep) END::text AS sql
  FROM unnest(webhook._builtin_formats()) AS f, render_events e,
       jsonb_populate_record(NULL::webhook.endpoint, '{"token": "tok \"1\""}') AS ep
 WHERE webhook._render(f, e.event, ep) IS DISTINCT FROM
       CASE f WHEN 'slackchat' THEN webhook.format_slackchat(e.event, ep)
              WHEN 'channel' THEN webhook.format_channel(e.event, ep)
              WHEN 'phraseanet' THEN webhook.format_phraseanet(e.event, ep)
              WHEN 'supabase' THEN webhook.format_supabase(e.event, ep) END::text;
SELECT count(*) AS compared
  FROM unnest(webhook._builtin_formats()) AS f, render_events e
 WHERE webhook._render(f, e.event, NULL) IS NOT NULL;
-- One of them in full, as a receiver gets it.
SELECT webhook._render('slackchat', event,
                       jsonb_populate_record(NULL::webhook.endpoint, '{"token": "tok"}'))
  FROM render_events WHERE n = 1;
DROP TABLE render_events;

-- webhook._event (in C) is the event written in SQL below, for every kind
-- of queue row: a message kind with its message captured or derived from
-- its row (stripped of empty values; from old_record for a delete; none
-- without either), jsonb scalars, arrays and objects, a table that is gone,
-- timestamps with fractions of a second. The worker serves no other
-- database than "postgres" here (test/regress.conf): the rows stay queued.
CREATE TABLE event_src (id int);
SELECT coalesce(max(id), 0) AS before_events FROM webhook.queue \gset
INSERT INTO webhook.queue (type, kind, op, update_type, channel, chat_type, message, record,
                           old_record, data, source, created_at) VALUES
  ('update_notification', 'message', 'INSERT', 'message_created', 'C1', 'group', NULL,
   '{"id": "m1", "content": "hé", "empty": "", "none": null, "list": [], "obj": {}}', NULL, NULL,
   'event_src', '2026-12-03 04:05:06.789+00'),
  ('update_notification', 'message', 'DELETE', 'message_deleted', 'C1', NULL, NULL, NULL,
   '{"id": "m2"}', NULL, 'event_src', '2026-01-01 00:00:00+00'),
  ('update_notification', 'message', 'UPDATE', 'message_changed', NULL, NULL, NULL, NULL, NULL, NULL,
   'event_src', '1999-12-31 23:59:59.999999+00'),
  ('update_notification', 'reaction', 'INSERT', 'message_changed', 'C2', 'dm', '{"id": "m3"}',
   '{"r": 1}', NULL, NULL, 999999999, now()),
  ('republish_request', NULL, NULL, NULL, 'C3', 'group', NULL, NULL, NULL, '{"a": [1, 2.50]}', NULL, now()),
  ('custom', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '5', NULL, now()),
  ('custom', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '"text"', NULL, now()),
  ('custom', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'null', NULL, now()),
  ('custom', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '[{"x": null}]', NULL, now());
SELECT q.id, webhook._event(q) AS c, e AS sql
  FROM webhook.queue q,
       LATERAL (SELECT jsonb_build_object(
           'id', q.id, 'type', q.type, 'kind', q.kind, 'op', q.op, 'update_type', q.update_type,
           'channel', q.channel, 'chat_type', q.chat_type,
           'message', coalesce(q.message, CASE WHEN q.kind = 'message'
                                               THEN webhook._strip(coalesce(q.record, q.old_record)) END),
           'record', q.record, 'old_record', q.old_record, 'data', q.data,
           'table', webhook._table_name(q.source), 'schema', webhook._schema_name(q.source),
           'created_at', q.created_at) AS e) AS s
 WHERE q.id > :before_events AND webhook._event(q)::text IS DISTINCT FROM e::text;
SELECT count(*) AS events_compared FROM webhook.queue WHERE id > :before_events;
SELECT webhook._event(q) - 'id' AS event FROM webhook.queue q WHERE id > :before_events ORDER BY id LIMIT 1;
DELETE FROM webhook.queue WHERE id > :before_events;
DROP TABLE event_src;

-- What the worker reads of an endpoint's format: NULL for a built-in,
-- 0 for a function that does not exist or has not the form.
CREATE FUNCTION formats_text(event jsonb, endpoint webhook.endpoint) RETURNS text
    LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION formats_ok(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT webhook._format_function('slackchat') AS built_in,
       webhook._format_function('public.nosuch') AS missing,
       webhook._format_function('public.formats_text') AS wrong_result,
       webhook._format_function('public.formats_ok') = 'public.formats_ok'::regproc AS found;

-- An on_response given by OID, of no function.
SELECT webhook.create_endpoint('https://example.com/', on_response => '1'::regprocedure);
\echo :LAST_ERROR_SQLSTATE

DROP FUNCTION formats_text(jsonb, webhook.endpoint), formats_ok(jsonb, webhook.endpoint);
