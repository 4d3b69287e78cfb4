--
-- capture: track() and untrack(), and the queue rows that changes to tracked
-- tables produce for each kind (message, reaction, attachment,
-- keyword_argument, row) and each operation.
--
\set SHOW_CONTEXT never

-- Show the queued events in order, then empty the queue.
\set queue 'WITH q AS (DELETE FROM webhook.queue x RETURNING x) SELECT (x).type, (x).kind, (x).op, (x).update_type, (x).channel, (x).chat_type, jsonb_pretty(webhook._event(x)->''message'') AS message, (x).record, (x).old_record, (x).source FROM q ORDER BY (x).id;'
-- The tracked tables.
\set sources 'SELECT rel, kind, channel, chat_type, message, parent, parent_rel, child_keys, parent_keys FROM webhook.source ORDER BY id;'

CREATE SCHEMA chat;
CREATE TABLE chat.message (
    id bigint PRIMARY KEY,
    channel_id text NOT NULL,
    chat_type text,
    sender text,
    content text,
    pinned boolean NOT NULL DEFAULT false
);
CREATE TABLE chat.reaction (
    id int PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES chat.message ON DELETE CASCADE,
    emoji text NOT NULL,
    author text
);
CREATE TABLE chat.attachment (
    id int PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES chat.message ON DELETE CASCADE,
    url text,
    title text
);
CREATE TABLE chat.kwarg (
    id int PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES chat.message ON DELETE CASCADE,
    key text,
    value text
);
-- a child without a foreign key: its parent is given as an expression
CREATE TABLE chat.link (id int PRIMARY KEY, msg text, href text);
CREATE TABLE chat.audit (id int PRIMARY KEY, note text);
CREATE TABLE chat.setting (channel_id text PRIMARY KEY, topic text);
-- a child table with no foreign key and no parent => given
CREATE TABLE chat.orphan (id int PRIMARY KEY, message_id bigint, emoji text);
CREATE VIEW chat.message_view AS SELECT * FROM chat.message;

--
-- A child table needs its message table tracked first.
--
SELECT webhook.track('chat.reaction', 'reaction');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.link', 'attachment', parent => 'msg::bigint');
\echo :LAST_ERROR_SQLSTATE

--
-- Message tables
--
SELECT webhook.track('chat.message');
:sources
SELECT tgname, tgtype, tgenabled, tgnewtable, tgoldtable
  FROM pg_trigger WHERE tgrelid = 'chat.message'::regclass AND NOT tgisinternal ORDER BY tgname;

\x on
-- INSERT of several rows: one event per row; null and empty values are left
-- out of the message, the record keeps them.
INSERT INTO chat.message (id, channel_id, chat_type, sender, content) VALUES
    (1, 'general', 'group', 'ann', 'Hello'),
    (2, 'general', NULL, 'bob', '');
:queue

-- UPDATE: message_changed with the old row.
UPDATE chat.message SET content = 'Hello, all' WHERE id = 1;
:queue

-- An UPDATE that changes nothing, or matches nothing, makes no event.
UPDATE chat.message SET content = content;
UPDATE chat.message SET content = 'x' WHERE id = 42;
:queue

-- A multi-row UPDATE where only some rows change.
UPDATE chat.message SET pinned = (id = 2);
:queue

-- A rolled-back transaction leaves nothing; a rolled-back savepoint only
-- takes its own events away.
BEGIN;
INSERT INTO chat.message (id, channel_id, sender, content) VALUES (90, 'general', 'eve', 'gone');
ROLLBACK;
BEGIN;
INSERT INTO chat.message (id, channel_id, sender, content) VALUES (3, 'random', 'cy', 'kept');
SAVEPOINT s;
INSERT INTO chat.message (id, channel_id, sender, content) VALUES (91, 'random', 'eve', 'gone');
ROLLBACK TO SAVEPOINT s;
COMMIT;
:queue

-- COPY and INSERT ... ON CONFLICT go through the same triggers.
COPY chat.message (id, channel_id, sender, content) FROM stdin;
4	random	dan	copied
\.
INSERT INTO chat.message (id, channel_id, sender, content) VALUES (4, 'random', 'dan', 'upserted'), (5, 'random', 'dan', 'new')
    ON CONFLICT (id) DO UPDATE SET content = excluded.content;
:queue

-- DELETE: message_deleted with the old row.
DELETE FROM chat.message WHERE id IN (4, 5);
:queue
\x off

--
-- Child tables: reaction, attachment, keyword_argument
--
SELECT webhook.track('chat.reaction', 'reaction');
SELECT webhook.track('chat.attachment', 'attachment');
SELECT webhook.track('chat.kwarg', 'keyword_argument');
SELECT webhook.track('chat.link', 'attachment', parent => 'msg::bigint');
:sources
-- a bad parent expression
SELECT webhook.track('chat.orphan', 'reaction', parent => 'msg_id');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', 'reaction', parent => 'message_id +');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', 'reaction', parent => 'emoji');
\echo :LAST_ERROR_SQLSTATE

\x on
-- A reaction: message_changed for its message, re-serialized with the
-- reaction in "reactions"; channel and chat type are the message's.
INSERT INTO chat.reaction VALUES (1, 1, '+1', 'bob');
:queue

-- Two reactions on two messages in one statement: one event each.
INSERT INTO chat.reaction VALUES (2, 1, 'heart', NULL), (3, 2, 'eyes', 'ann');
:queue

-- Attachments go in "attachments" (from both attachment tables, the one
-- found through parent => included), keyword arguments in "kwargs".
INSERT INTO chat.attachment VALUES (1, 3, 'https://files.example/a.png', NULL);
INSERT INTO chat.link VALUES (1, '3', 'https://example.com/');
INSERT INTO chat.kwarg VALUES (1, 3, 'lang', 'en');
:queue

-- A changed child: message_changed with the old child row; an UPDATE that
-- changes nothing makes no event.
UPDATE chat.reaction SET emoji = 'tada' WHERE id = 1;
UPDATE chat.kwarg SET value = value;
UPDATE chat.kwarg SET value = 'fr';
:queue

-- A deleted child: message_changed without it.
DELETE FROM chat.reaction WHERE id IN (2, 3);
:queue

-- A child whose message does not exist (no foreign key to enforce it) makes no event.
INSERT INTO chat.link VALUES (2, '999', 'https://example.com/nowhere');
:queue

-- The message's own events carry its children too.
UPDATE chat.message SET content = 'Hello again' WHERE id IN (1, 3);
:queue

-- Deleting a message deletes its children by cascade: only message_deleted.
INSERT INTO chat.message (id, channel_id, sender, content) VALUES (6, 'general', 'fay', 'short-lived');
INSERT INTO chat.reaction VALUES (6, 6, '-1', 'gus');
DELETE FROM webhook.queue;
DELETE FROM chat.message WHERE id = 6;
:queue
\x off

--
-- Row tables
--
SELECT webhook.track('chat.audit', 'row');
SELECT webhook.track('chat.setting', 'row');
SELECT rel, kind, channel FROM webhook.source WHERE kind = 'row' ORDER BY id;
-- row_created, row_changed, row_deleted; the channel comes from channel_id
-- when the table has that column.
INSERT INTO chat.audit VALUES (1, 'created'), (2, NULL);
UPDATE chat.audit SET note = 'changed' WHERE id = 1;
UPDATE chat.audit SET note = note;
DELETE FROM chat.audit WHERE id = 2;
INSERT INTO chat.setting VALUES ('general', 'Everything');
UPDATE chat.setting SET topic = 'Anything';
DELETE FROM chat.setting;
SELECT type, kind, op, update_type, channel, chat_type, message, record, old_record, source
  FROM webhook.queue ORDER BY id;
DELETE FROM webhook.queue;

--
-- Expressions: channel, chat_type, message; a schema and tables with quoted names
--
CREATE SCHEMA "Team Chat";
CREATE TABLE "Team Chat"."Posts" (
    "Id" int PRIMARY KEY,
    "Room" text NOT NULL,
    "Kind" text,
    body text
);
CREATE TABLE "Team Chat"."Post Likes" (
    id int PRIMARY KEY,
    "Post" int NOT NULL REFERENCES "Team Chat"."Posts" ON DELETE CASCADE,
    who text
);
SELECT webhook.track('"Team Chat"."Posts"',
    channel => '''room-'' || lower("Room")',
    chat_type => 'CASE "Kind" WHEN ''dm'' THEN ''private'' ELSE ''group'' END',
    message => 'jsonb_build_object(''id'', "Id", ''text'', body)');
-- two message tables are tracked now: the foreign key says which one is the parent
SELECT webhook.track('"Team Chat"."Post Likes"', 'reaction');
SELECT rel, kind, channel, chat_type, message, parent_rel, child_keys, parent_keys
  FROM webhook.source WHERE rel::text LIKE '"Team Chat".%' ORDER BY id;

\x on
INSERT INTO "Team Chat"."Posts" VALUES (1, 'Ops', 'dm', 'deploy?'), (2, 'Dev', NULL, 'ship it');
INSERT INTO "Team Chat"."Post Likes" VALUES (1, 1, 'ann');
UPDATE "Team Chat"."Posts" SET body = 'deploy!' WHERE "Id" = 1;
:queue

-- Renaming the table and its schema regenerates the capture statements.
ALTER TABLE "Team Chat"."Posts" RENAME TO "Threads";
ALTER SCHEMA "Team Chat" RENAME TO "Team";
INSERT INTO "Team"."Threads" VALUES (3, 'QA', 'dm', 'ok');
INSERT INTO "Team"."Post Likes" VALUES (2, 3, 'bob');
:queue
\x off

--
-- Errors
--
-- unknown kind, NULL kind or table
SELECT webhook.track('chat.audit', 'thread');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.audit', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track(NULL);
\echo :LAST_ERROR_SQLSTATE
-- not a table
SELECT webhook.track('chat.message_view');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.message_pkey');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.no_such_table');
\echo :LAST_ERROR_SQLSTATE
-- webhook's own tables
SELECT webhook.track('webhook.queue', 'row');
\echo :LAST_ERROR_SQLSTATE
-- twice
SELECT webhook.track('chat.message');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.reaction', 'reaction');
\echo :LAST_ERROR_SQLSTATE
-- a child table without a foreign key to a tracked message table
SELECT webhook.track('chat.orphan', 'reaction');
\echo :LAST_ERROR_SQLSTATE
-- parent => with several message tables tracked and no foreign key to choose one
SELECT webhook.track('chat.orphan', 'reaction', parent => 'message_id');
\echo :LAST_ERROR_SQLSTATE
-- a child table with its own channel, chat_type or message
SELECT webhook.track('chat.orphan', 'reaction', channel => 'emoji');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', 'reaction', chat_type => '''group''');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', 'reaction', message => 'to_jsonb(emoji)');
\echo :LAST_ERROR_SQLSTATE
-- parent => on tables that have no parent
SELECT webhook.track('chat.orphan', 'message', parent => 'message_id');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', 'row', parent => 'message_id');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', 'row', message => 'to_jsonb(emoji)');
\echo :LAST_ERROR_SQLSTATE
-- bad expressions: unknown column, bad syntax, wrong type
SELECT webhook.track('chat.orphan');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', channel => 'room');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', channel => 'emoji ||');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', channel => 'emoji', chat_type => 'kind');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', channel => 'emoji', message => 'id');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('chat.orphan', channel => 'emoji', message => 'jsonb_build_object(');
\echo :LAST_ERROR_SQLSTATE
-- untrack: not tracked, or a message table with tracked children
SELECT webhook.untrack('chat.orphan');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.untrack('chat.message_view');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.untrack('chat.message');
\echo :LAST_ERROR_SQLSTATE
-- none of the failed calls changed what is tracked
:sources

--
-- What a tracked expression uses cannot be dropped while the tracking stays:
-- a function, a column (renaming it is fine), a table it reads. Nothing is
-- lost meanwhile.
--
CREATE FUNCTION public.capture_note(note text) RETURNS text LANGUAGE sql AS 'SELECT upper(note)';
CREATE TABLE chat.notice (id int PRIMARY KEY, note text, room int);
CREATE TABLE chat.room (id int PRIMARY KEY, title text);
INSERT INTO chat.room VALUES (1, 'lobby');
SELECT webhook.track('chat.notice', 'row', channel => 'public.capture_note(note)',
                     chat_type => '(SELECT r.title FROM chat.room r WHERE r.id = room)');
DROP FUNCTION public.capture_note(text);
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE chat.notice DROP COLUMN note;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE chat.room DROP COLUMN title;
\echo :LAST_ERROR_SQLSTATE
DROP TABLE chat.room;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE chat.notice RENAME COLUMN note TO body;
ALTER TABLE chat.room RENAME COLUMN title TO name;
ALTER FUNCTION public.capture_note(text) RENAME TO capture_body;
SELECT channel, chat_type FROM webhook.source WHERE rel = 'chat.notice'::regclass;
INSERT INTO chat.notice VALUES (2, 'found', 1);
SELECT kind, op, update_type, channel, chat_type, record FROM webhook.queue ORDER BY id;
DELETE FROM webhook.queue;
SELECT webhook.untrack('chat.notice');
DROP FUNCTION public.capture_body(text);
DROP TABLE chat.room;

--
-- The capture statements run with pg_catalog and pg_temp on their path,
-- whatever the session's: a function that would shadow one they call is not called,
-- even by a session whose first capture prepares them with it on its path.
-- A function called by a tracked expression keeps its own search_path.
--
CREATE SCHEMA shadow;
CREATE FUNCTION shadow.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql
    AS $$SELECT '{"shadowed": true}'::jsonb$$;
CREATE TABLE shadow.rooms (id int PRIMARY KEY, name text);
INSERT INTO shadow.rooms VALUES (1, 'lobby');
CREATE FUNCTION public.room_name(room int) RETURNS text LANGUAGE sql STABLE
    SET search_path = shadow AS 'SELECT name FROM rooms WHERE id = room';
CREATE TABLE chat.pathcheck (id int PRIMARY KEY, room int, note text);
SELECT webhook.track('chat.pathcheck', 'row', channel => 'public.room_name(room)');
\c
SET search_path = shadow, pg_catalog, public;
SELECT to_jsonb(1) AS "a shadowing to_jsonb";
INSERT INTO chat.pathcheck VALUES (1, 1, 'as is');
UPDATE chat.pathcheck SET note = 'changed';
RESET search_path;
SELECT op, channel, record, old_record FROM webhook.queue ORDER BY id;
DELETE FROM webhook.queue;
SELECT webhook.untrack('chat.pathcheck');
DROP TABLE chat.pathcheck;
DROP FUNCTION public.room_name(int);
DROP SCHEMA shadow CASCADE;

--
-- DROP TABLE of a tracked child: its tracking goes, the message table's
-- capture keeps working without it.
--
DROP TABLE chat.link;
SELECT rel FROM webhook.source ORDER BY id;
\x on
INSERT INTO chat.attachment VALUES (2, 3, 'https://files.example/b.pdf', 'Spec');
:queue
\x off

--
-- untrack: children first, then the message table; the triggers go and
-- changes make no events.
--
SELECT webhook.untrack('chat.reaction');
SELECT webhook.untrack('chat.attachment');
SELECT webhook.untrack('chat.kwarg');
-- the message no longer carries the untracked children
\x on
UPDATE chat.message SET content = 'Bye' WHERE id = 1;
:queue
\x off
SELECT webhook.untrack('chat.message');
SELECT webhook.untrack('chat.audit');
SELECT webhook.untrack('chat.setting');
SELECT tgrelid::regclass, tgname FROM pg_trigger
 WHERE tgname LIKE 'webhook%' AND tgrelid::regclass::text LIKE 'chat.%' ORDER BY 1::text, 2;
INSERT INTO chat.message (id, channel_id, content) VALUES (7, 'general', 'unseen');
INSERT INTO chat.reaction VALUES (7, 7, 'ok', NULL);
INSERT INTO chat.audit VALUES (3, 'unseen');
SELECT count(*) FROM webhook.queue;

--
-- DROP TABLE of a tracked message table takes its children's tracking along.
--
DROP TABLE "Team"."Threads" CASCADE;
SELECT count(*) AS sources FROM webhook.source;
SELECT tgname FROM pg_trigger WHERE tgrelid = '"Team"."Post Likes"'::regclass AND NOT tgisinternal;
INSERT INTO "Team"."Post Likes" VALUES (3, 3, 'cy');
SELECT count(*) FROM webhook.queue;

DROP SCHEMA chat CASCADE;
DROP SCHEMA "Team" CASCADE;

--
-- Rows are serialized by webhook._row_jsonb, which must give what to_jsonb
-- gives, text for text, whatever the columns: those it converts itself
-- (dropped columns, domains, NaN and infinities among them) and those it
-- leaves to to_jsonb (arrays, json, rows, enums), over several rows of one
-- statement and over an anonymous row type.
--
CREATE DOMAIN rj_int AS integer;
CREATE TYPE rj_mood AS ENUM ('ok', 'sad');
CREATE TABLE rj_scalar (b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric,
    d date, ts timestamp, tz timestamptz, t text, v varchar(5), c char(3), u uuid, tm time,
    iv interval, gone int, dm rj_int, "Odd ""name""" text);
ALTER TABLE rj_scalar DROP COLUMN gone;
INSERT INTO rj_scalar VALUES
    (true, 1, -2, 9223372036854775807, 1.5, -2.25e-10, 12345678901234567890.123400,
     '2024-02-29', '2024-01-01 12:34:56.789', '2024-01-01 12:34:56+02', 'a "quoted" \ line
feed', 'é', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '01:02:03', '1 day 2 hours', 7, 'x'),
    (false, NULL, NULL, NULL, 'NaN', 'Infinity', 'NaN', 'infinity', '-infinity', 'infinity',
     '', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (NULL, NULL, NULL, NULL, '-Infinity', '-Infinity', 'Infinity', NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE rj_other (id int, a int[], j json, jb jsonb, m rj_mood, r rj_scalar);
INSERT INTO rj_other SELECT 1, '{1,2}', '{"b": 1, "a": [2]}', '{"z": null}', 'sad', s FROM rj_scalar s;
SELECT count(*) AS rows, count(*) FILTER (WHERE webhook._row_jsonb(s)::text = to_jsonb(s)::text) AS same
  FROM rj_scalar s;
SELECT count(*) AS rows, count(*) FILTER (WHERE webhook._row_jsonb(o)::text = to_jsonb(o)::text) AS same
  FROM rj_other o;
SELECT webhook._row_jsonb(x)::text = to_jsonb(x)::text AS same, webhook._row_jsonb(x)
  FROM (SELECT 1 AS a, 'x' AS b, NULL::int AS c, 2.50 AS d) x;
SELECT webhook._row_jsonb(s) FROM rj_scalar s ORDER BY s.b;
DROP TABLE rj_scalar, rj_other;
DROP TYPE rj_mood;
DROP DOMAIN rj_int;
