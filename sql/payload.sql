--
-- payload: the request body each format makes of each kind of event.
--
-- The worker turns a queue row into an event with webhook._event() (see
-- sql_fanout in src/worker.c) and renders it with the endpoint's format
-- function; this does the same, with a fixed created_at and a small id.
--
\set SHOW_CONTEXT never

CREATE TEMP VIEW payload_event AS
SELECT row_number() OVER (ORDER BY q.id) AS n,
       webhook._event(q) || pg_catalog.jsonb_build_object(
           'id', row_number() OVER (ORDER BY q.id),
           'created_at', '2024-05-01T12:00:00+00:00'::timestamptz) AS event
  FROM webhook.queue q;

CREATE SCHEMA pay;
CREATE TABLE pay.message (id int PRIMARY KEY, channel_id text NOT NULL, kind text, content text);
CREATE TABLE pay.reaction (id int PRIMARY KEY, message_id int NOT NULL REFERENCES pay.message, emoji text);
CREATE TABLE pay.profile (id int PRIMARY KEY, nick text);
SELECT webhook.track('pay.message', chat_type => 'kind');
SELECT webhook.track('pay.reaction', 'reaction');
SELECT webhook.track('pay.profile', 'row');

DELETE FROM webhook.queue;
INSERT INTO pay.message VALUES (1, 'general', 'group', 'Hello');         -- 1
UPDATE pay.message SET content = 'Hello!';                               -- 2
INSERT INTO pay.reaction VALUES (1, 1, '+1');                            -- 3
DELETE FROM pay.reaction;                                                -- 4
INSERT INTO pay.profile VALUES (1, 'ann');                               -- 5
UPDATE pay.profile SET nick = 'anne';                                    -- 6
DELETE FROM pay.message;                                                 -- 7
SELECT webhook.request_update('general', 'group') IS NOT NULL;           -- 8
SELECT webhook.republish('general', '{"title": "General"}') IS NOT NULL; -- 9
SELECT webhook.unpublish('general', '{"title": "General"}', 'group') IS NOT NULL; -- 10
SELECT webhook.emit('order.paid', '{"order": 7}', 'shop') IS NOT NULL;   -- 11
SELECT webhook.emit('tick', '[1, 2]') IS NOT NULL;                       -- 12

-- the endpoint, with id 0 so that nothing printed depends on earlier tests
CREATE TEMP VIEW payload_endpoint AS
SELECT jsonb_populate_record(e, '{"id": 0}') AS e FROM webhook.endpoint e WHERE e.name = 'payload';
SELECT format FROM webhook.create_endpoint('https://example.com/', name => 'payload', token => 'tok',
                                           verify => false);

\x on
-- slackchat: always the same keys, null where absent; channel_data as a JSON string
SELECT n, jsonb_pretty(webhook.format_slackchat(event, e)) AS slackchat
  FROM payload_event, payload_endpoint ORDER BY n;
-- channel: event, type, entity, refers
SELECT n, jsonb_pretty(webhook.format_channel(event, e)) AS channel
  FROM payload_event, payload_endpoint ORDER BY n;
-- phraseanet: event, webhookId, version, data, event_time
SELECT n, jsonb_pretty(webhook.format_phraseanet(event, e)) AS phraseanet
  FROM payload_event, payload_endpoint ORDER BY n;
-- supabase: type, table, schema, record, old_record
SELECT n, jsonb_pretty(webhook.format_supabase(event, e)) AS supabase
  FROM payload_event, payload_endpoint ORDER BY n;
\x off

-- A user's format function is checked when named; the worker calls it as its
-- owner (test/t/009_security.pl).
CREATE FUNCTION public.payload_format(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT jsonb_build_object('kind', event->'type', 'to', endpoint.name) $$;
CREATE FUNCTION public.payload_broken(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT (event->>'type')::int::text::jsonb $$;
SELECT format FROM webhook.alter_endpoint((SELECT id FROM webhook.endpoint WHERE name = 'payload'),
                                          format => 'public.payload_format');
SELECT format FROM webhook.alter_endpoint((SELECT id FROM webhook.endpoint WHERE name = 'payload'),
                                          format => 'public.payload_broken');

DELETE FROM webhook.queue;
SELECT webhook.drop_endpoint(id) FROM webhook.endpoint WHERE name = 'payload';
SELECT webhook.untrack('pay.reaction');
SELECT webhook.untrack('pay.message');
SELECT webhook.untrack('pay.profile');
DROP SCHEMA pay CASCADE;
DROP FUNCTION public.payload_format(jsonb, webhook.endpoint);
DROP FUNCTION public.payload_broken(jsonb, webhook.endpoint);
