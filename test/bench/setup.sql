-- The benchmark's tables: a chat message table tracked by webhook, and an
-- identical one that is not, for the untracked figures.
CREATE EXTENSION webhook;

CREATE TABLE message (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id text NOT NULL,
    chat_type text NOT NULL DEFAULT 'live',
    "user" text,
    content text,
    timestamp timestamptz NOT NULL DEFAULT now());

CREATE TABLE message_plain (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id text NOT NULL,
    chat_type text NOT NULL DEFAULT 'live',
    "user" text,
    content text,
    timestamp timestamptz NOT NULL DEFAULT now());

SELECT webhook.track('message', chat_type => 'chat_type');
