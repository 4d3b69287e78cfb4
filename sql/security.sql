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
