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
