--
-- Formats: each is a function (event, endpoint) to the request body.
--

CREATE FUNCTION webhook.format_slackchat(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
    LANGUAGE sql STABLE AS $$
SELECT CASE
    WHEN event->>'type' IN ('republish_request', 'unpublish_request') THEN
        pg_catalog.jsonb_build_object('token', endpoint.token, 'type', event->'type',
            'channel', event->'channel', 'channel_data', pg_catalog.to_jsonb((event->'data')::text),
            'chat_type', event->'chat_type')
    WHEN event->>'type' = 'update_notification' THEN
        pg_catalog.jsonb_build_object('token', endpoint.token, 'type', event->'type',
            'channel', event->'channel', 'chat_type', event->'chat_type',
            'update_type', event->'update_type', 'message', event->'message')
    ELSE
        pg_catalog.jsonb_build_object('token', endpoint.token, 'type', event->'type',
            'channel', event->'channel', 'data', event->'data')
END
$$;

CREATE FUNCTION webhook.format_channel(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
    LANGUAGE sql STABLE AS $$
SELECT pg_catalog.jsonb_build_object(
    'event', CASE
        WHEN event->>'op' = 'DELETE' THEN 'delete'
        WHEN event->>'kind' = 'message' AND event->>'op' = 'INSERT' THEN 'push'
        WHEN event->>'kind' = 'message' THEN 'update'
        WHEN event->>'op' IS NOT NULL THEN 'upsert'
        ELSE event->>'type' END,
    'type', CASE
        WHEN event->>'kind' = 'message' THEN 'Message'
        WHEN event->>'op' IS NOT NULL THEN event->>'table'
        ELSE 'Event' END,
    'entity', CASE
        WHEN event->>'op' = 'DELETE' THEN event->'old_record'
        WHEN event->>'op' IS NOT NULL THEN event->'record'
        WHEN event->>'type' IN ('republish_request', 'unpublish_request', 'update_notification') THEN
            pg_catalog.jsonb_build_object('channel', event->'channel', 'chat_type', event->'chat_type',
                'channel_data', event->'data')
        ELSE event->'data' END,
    'refers', CASE
        WHEN event->>'kind' IN ('reaction', 'attachment', 'keyword_argument') THEN
            pg_catalog.jsonb_build_object('message', event->'message')
        ELSE '{}'::jsonb END)
$$;

CREATE FUNCTION webhook.format_phraseanet(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
    LANGUAGE sql STABLE AS $$
SELECT CASE
    WHEN event->>'type' IN ('update_notification', 'republish_request', 'unpublish_request') THEN
        pg_catalog.jsonb_build_object('event', event->'type', 'webhookId', event->'id', 'version', 1,
            'data', webhook._strip(pg_catalog.jsonb_build_object(
                'channel', event->'channel', 'chat_type', event->'chat_type',
                'update_type', event->'update_type', 'message', event->'message',
                'channel_data', event->'data', 'table', event->'table',
                'record', event->'record', 'old_record', event->'old_record')),
            'event_time', event->'created_at')
    ELSE
        CASE WHEN pg_catalog.jsonb_typeof(event->'data') = 'object' THEN event->'data'
             ELSE pg_catalog.jsonb_build_object('data', event->'data') END
        || pg_catalog.jsonb_build_object('event', event->'type', 'webhookId', event->'id',
               'version', 1, 'event_time', event->'created_at')
END
$$;

CREATE FUNCTION webhook.format_supabase(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
    LANGUAGE sql STABLE AS $$
SELECT pg_catalog.jsonb_build_object(
    'type', coalesce(event->>'op', event->>'type'),
    'table', event->'table',
    'schema', event->'schema',
    'record', CASE WHEN event->>'op' IS NOT NULL THEN event->'record' ELSE event->'data' END,
    'old_record', event->'old_record')
$$;


--
-- The built-in formats are named here and nowhere else: in the list below,
-- and in the one entry point that renders a body with them (src/render.c).
-- Keep them together: test sql/formats.sql checks that they agree, and that
-- the C rendering is what the functions above return. A user's format
-- function is not called here: the worker calls it as its owner.
--

CREATE FUNCTION webhook._builtin_formats() RETURNS text[]
    LANGUAGE sql IMMUTABLE AS $$
SELECT '{slackchat, channel, phraseanet, supabase}'::pg_catalog.text[]
$$;

-- The body of an event for an endpoint with a built-in format; NULL for any
-- other format. In C (src/render.c), byte for byte what the functions above
-- return as text: the worker renders with the same code, without a statement.
CREATE FUNCTION webhook._render(format text, event jsonb, endpoint webhook.endpoint) RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'webhook_render';
