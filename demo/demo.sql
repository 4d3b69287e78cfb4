-- The demo's SQL: slackchat-like tables, tracked, and a verified receiver.
CREATE EXTENSION webhook;

CREATE TABLE message (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id text NOT NULL,
    chat_type text NOT NULL DEFAULT 'live',
    "user" text,
    content text,
    timestamp timestamptz NOT NULL DEFAULT now());
CREATE TABLE reaction (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES message ON DELETE CASCADE,
    reaction text NOT NULL,
    "user" text);
CREATE TABLE attachment (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES message ON DELETE CASCADE,
    title text, image_url text);
CREATE TABLE keyword_argument (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES message ON DELETE CASCADE,
    key text NOT NULL, value text);

SELECT webhook.track('message', chat_type => 'chat_type');
SELECT webhook.track('reaction', kind => 'reaction');
SELECT webhook.track('attachment', kind => 'attachment');
SELECT webhook.track('keyword_argument', kind => 'keyword_argument');

\echo == registering the receiver; the worker runs the url_verification handshake
SELECT id, name, state FROM webhook.create_endpoint(:'url', name => 'demo-receiver',
    token => 'your-webhook-verification-token');

-- Wait (at most 10 s) for the handshake.
DO $$
BEGIN
    FOR i IN 1 .. 100 LOOP
        EXIT WHEN (SELECT state FROM webhook.endpoint WHERE name = 'demo-receiver') <> 'pending';
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT name, state, state_reason FROM webhook.endpoint;

\echo == posting, editing, reacting to and deleting messages
INSERT INTO message (channel_id, "user", content) VALUES ('a-channel-uuid', 'USERID', 'A new message.');
UPDATE message SET content = 'A new message, edited.' WHERE id = 1;
INSERT INTO reaction (message_id, reaction, "user") VALUES (1, 'thumbsup', 'U2');
INSERT INTO attachment (message_id, title, image_url) VALUES (1, 'Chart', 'https://example.com/chart.png');
INSERT INTO keyword_argument (message_id, key, value) VALUES (1, 'style', 'bold');
UPDATE message SET content = content WHERE id = 1;   -- changes nothing: no event
SELECT webhook.republish('a-channel-uuid', '{"title": "Channel Title", "introduction": "Lorem ipsum"}', 'live');
DELETE FROM message WHERE id = 1;
BEGIN;
INSERT INTO message (channel_id, content) VALUES ('a-channel-uuid', 'rolled back: never sent');
ROLLBACK;
SELECT webhook.request_update('a-channel-uuid', 'live');
