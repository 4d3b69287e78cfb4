--
-- security: user code runs as its owner (DESIGN section 9), names resolve
-- when track() runs, and the errors of the privilege model.
--
\set SHOW_CONTEXT never
CREATE ROLE regress_sec_owner;
CREATE ROLE regress_sec_other;
CREATE SCHEMA secchat AUTHORIZATION regress_sec_owner;
SET ROLE regress_sec_owner;
CREATE TABLE secchat.channel (id text PRIMARY KEY, chat_type text);
CREATE TABLE secchat.message (id int PRIMARY KEY, channel_id text, content text);
RESET ROLE;

-- Names resolve in the caller's search_path when track() runs, and are kept
-- qualified.
SET search_path = secchat, public;
SELECT webhook.track('message',
    chat_type => '(SELECT c.chat_type FROM channel c WHERE c.id = channel_id)');
RESET search_path;
SELECT rel, channel, chat_type FROM webhook.source WHERE rel = 'secchat.message'::regclass;
SELECT webhook.untrack('secchat.message');

-- Not one expression, aggregates, set-returning functions: refused.
SELECT webhook.track('secchat.message', channel => 'channel_id) FROM pg_authid --');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('secchat.message', channel => 'channel_id), (content');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('secchat.message', channel => 'max(channel_id)');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('secchat.message', channel => 'generate_series(1, 2)');
\echo :LAST_ERROR_SQLSTATE

-- The capture statements are checked as the table's owner: one reading a
-- table the owner may not read is refused at once.
CREATE TABLE public.sec_private (id text PRIMARY KEY, chat_type text);
SELECT webhook.track('secchat.message',
    chat_type => '(SELECT p.chat_type FROM public.sec_private p WHERE p.id = channel_id)');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS sources FROM webhook.source WHERE rel = 'secchat.message'::regclass;
GRANT SELECT ON public.sec_private TO regress_sec_owner;
SELECT webhook.track('secchat.message',
    chat_type => '(SELECT p.chat_type FROM public.sec_private p WHERE p.id = channel_id)');
-- and a later REVOKE makes the owner's own writes fail, not read it anyway
REVOKE SELECT ON public.sec_private FROM regress_sec_owner;
SET ROLE regress_sec_owner;
INSERT INTO secchat.message VALUES (1, 'general', 'hi');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT webhook.untrack('secchat.message');

-- A capture trigger on another table naming a tracking is refused.
SELECT webhook.track('secchat.message');
CREATE TABLE public.sec_spoof (id int, channel_id text, content text);
\set ECHO none
SELECT format('CREATE TRIGGER spoof AFTER INSERT ON public.sec_spoof REFERENCING NEW TABLE AS webhook_new FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture(%L)', id)
  FROM webhook.source WHERE rel = 'secchat.message'::regclass \gexec
\set ECHO all
INSERT INTO public.sec_spoof VALUES (1, 'general', 'spoofed');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS queued FROM webhook.queue;
DROP TABLE public.sec_spoof;
SELECT webhook.untrack('secchat.message');

-- Node trees are read only by roles that may write webhook.source.
GRANT USAGE ON SCHEMA webhook TO regress_sec_other;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA webhook TO regress_sec_other;
SET ROLE regress_sec_other;
SELECT webhook._deparse_expr('{CONST}', 'pg_class', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook._expr_uses('{CONST}', 'pg_class', 'pg_class', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook._check_capture(1);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Format and on_response functions: whoever names one must be able to call
-- it; not a temporary one, not one returning a set.
CREATE FUNCTION public.sec_format(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
REVOKE ALL ON FUNCTION public.sec_format(jsonb, webhook.endpoint) FROM PUBLIC;
CREATE FUNCTION public.sec_setof(event jsonb, endpoint webhook.endpoint) RETURNS SETOF jsonb
    LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION pg_temp.sec_temp(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION pg_temp.sec_temp_reply(d webhook.delivery, status integer, headers jsonb, body text)
    RETURNS void LANGUAGE sql AS 'SELECT';
GRANT INSERT, SELECT ON webhook.endpoint TO regress_sec_other;
GRANT USAGE ON SEQUENCE webhook.endpoint_id_seq TO regress_sec_other;
SET ROLE regress_sec_other;
SELECT webhook.create_endpoint('https://example.com/', format => 'public.sec_format');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT webhook.create_endpoint('https://example.com/', format => 'public.sec_setof');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', format => 'pg_temp.sec_temp');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/',
    on_response => 'pg_temp.sec_temp_reply(webhook.delivery, integer, jsonb, text)');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS endpoints FROM webhook.endpoint;

-- Clean up.
DROP FUNCTION public.sec_format(jsonb, webhook.endpoint);
DROP FUNCTION public.sec_setof(jsonb, webhook.endpoint);
DROP TABLE public.sec_private;
DROP SCHEMA secchat CASCADE;
REVOKE ALL ON webhook.endpoint FROM regress_sec_other;
REVOKE ALL ON SEQUENCE webhook.endpoint_id_seq FROM regress_sec_other;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhook FROM regress_sec_other;
REVOKE ALL ON SCHEMA webhook FROM regress_sec_other;
DROP ROLE regress_sec_owner;
DROP ROLE regress_sec_other;

--
-- What review found, each closed:
--
CREATE ROLE regress_sec_alice;
CREATE ROLE regress_sec_bob;
CREATE SCHEMA secteam;
GRANT USAGE, CREATE ON SCHEMA secteam TO regress_sec_alice, regress_sec_bob;
SET ROLE regress_sec_alice;
CREATE TABLE secteam.msg (id int PRIMARY KEY, channel_id text, content text);
CREATE TABLE secteam.react (id int PRIMARY KEY, msg_id int REFERENCES secteam.msg, emoji text);
RESET ROLE;
-- A table owner with no rights on webhook.* has its message table and its
-- children captured: the capture statements, run as that owner, may call the
-- two helpers they need.
SELECT webhook.track('secteam.msg');
SELECT webhook.track('secteam.react', 'reaction');
SET ROLE regress_sec_alice;
INSERT INTO secteam.msg VALUES (1, 'general', 'hi');
INSERT INTO secteam.react VALUES (1, 1, '+1');
RESET ROLE;
SELECT kind, update_type, message FROM webhook.queue ORDER BY id;
DELETE FROM webhook.queue;
-- A child table and its message table must have one owner: each one's
-- capture serializes the other's rows.
ALTER TABLE secteam.react OWNER TO regress_sec_bob;
\echo :LAST_ERROR_SQLSTATE
SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'secteam.react'::regclass;
-- DDL elsewhere takes no lock on tracked tables.
SET ROLE regress_sec_bob;
CREATE TABLE secteam.bobs (x int);
BEGIN;
ALTER TABLE secteam.bobs ADD COLUMN y int;
SELECT count(*) AS locks_on_tracked FROM pg_locks
 WHERE pid = pg_backend_pid() AND relation IN ('secteam.msg'::regclass, 'secteam.react'::regclass);
ROLLBACK;
RESET ROLE;
-- A tracking its owner broke (REVOKE fires no event trigger) does not stop
-- others' DDL; a trigger its owner dropped does not stop following renames.
SET ROLE regress_sec_alice;
CREATE TABLE secteam.chan (id text PRIMARY KEY, kind text);
CREATE TABLE secteam.note (id int PRIMARY KEY, chan text);
RESET ROLE;
SELECT webhook.track('secteam.note', 'row', channel => 'chan',
                     chat_type => '(SELECT c.kind FROM secteam.chan c WHERE c.id = chan)');
SET ROLE regress_sec_alice;
REVOKE SELECT ON secteam.chan FROM regress_sec_alice;
DROP TRIGGER webhook_insert ON secteam.note;
RESET ROLE;
SET ROLE regress_sec_bob;
ALTER TABLE secteam.bobs ADD COLUMN z int;
DROP TABLE secteam.bobs;
RESET ROLE;
ALTER TABLE secteam.msg RENAME COLUMN channel_id TO room;
SELECT channel FROM webhook.source WHERE rel = 'secteam.msg'::regclass;
INSERT INTO secteam.msg VALUES (2, 'random', 'renamed');
SELECT channel, record->>'content' AS content FROM webhook.queue ORDER BY id;
DELETE FROM webhook.queue;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'secteam.note'::regclass ORDER BY 1;
SELECT webhook.untrack('secteam.note');
-- A column type changed under a tracked expression: the events keep their types.
CREATE TABLE secteam.typed (id int PRIMARY KEY, channel_id text);
SELECT webhook.track('secteam.typed', 'row');
ALTER TABLE secteam.typed ALTER COLUMN channel_id TYPE bigint USING channel_id::bigint;
INSERT INTO secteam.typed VALUES (1, 42);
INSERT INTO secteam.msg VALUES (3, 'general', 'still typed');
SELECT channel, pg_typeof(channel) FROM webhook.queue ORDER BY id;
DELETE FROM webhook.queue;
SELECT webhook.untrack('secteam.typed');
-- Column names the capture statements use as aliases are refused.
CREATE TABLE secteam.aliased (id int PRIMARY KEY, channel_id text, _wh_msg text);
SELECT webhook.track('secteam.aliased', 'row');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE secteam.msg ADD COLUMN _wh_record text;
\echo :LAST_ERROR_SQLSTATE
-- Endpoint rows written by hand get the API's checks: the worker calls the
-- functions they name.
SELECT id AS hand_ep FROM webhook.create_endpoint('https://example.com/hand', verify => false) \gset
UPDATE webhook.endpoint SET on_response = 'pg_catalog.pg_stat_reset()' WHERE id = :hand_ep;
\echo :LAST_ERROR_SQLSTATE
UPDATE webhook.endpoint SET format = 'x y z' WHERE id = :hand_ep;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhook.endpoint (name, url, token, secret, on_response)
VALUES ('by hand', 'https://example.com/', 't', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        'pg_catalog.array_typanalyze(internal)');
\echo :LAST_ERROR_SQLSTATE
-- and what the worker reads of a bad row is "no such function", not an error
SELECT webhook._user_function('x y z(jsonb, webhook.endpoint)', 'format') AS bad_name,
       webhook._user_function('pg_catalog.pg_stat_reset()', 'on_response') AS wrong_form;
SELECT webhook.drop_endpoint(:hand_ep);
SELECT webhook.untrack('secteam.react');
SELECT webhook.untrack('secteam.msg');
DROP SCHEMA secteam CASCADE;
DROP ROLE regress_sec_alice;
DROP ROLE regress_sec_bob;

-- A format or on_response function cannot be dropped, renamed or moved while
-- an endpoint names it: another function could take its name.
CREATE SCHEMA secfn;
CREATE FUNCTION secfn.fmt(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT event $$;
CREATE FUNCTION secfn.reply(d webhook.delivery, status integer, headers jsonb, body text)
    RETURNS void LANGUAGE sql AS 'SELECT';
SELECT id AS fn_ep FROM webhook.create_endpoint('https://example.com/fn', name => 'fn-ep', verify => false,
    format => 'secfn.fmt', on_response => 'secfn.reply(webhook.delivery, integer, jsonb, text)') \gset
DROP FUNCTION secfn.fmt(jsonb, webhook.endpoint);
\echo :LAST_ERROR_SQLSTATE
ALTER FUNCTION secfn.reply(webhook.delivery, integer, jsonb, text) RENAME TO reply2;
\echo :LAST_ERROR_SQLSTATE
ALTER SCHEMA secfn RENAME TO secfn2;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA secfn CASCADE;
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.drop_endpoint(:fn_ep);
DROP SCHEMA secfn CASCADE;
