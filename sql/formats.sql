--
-- formats: the built-in formats are named in two places side by side
-- (src/sql/30_formats.sql), which must agree; the worker's statements
-- inline their render; the form check of users' functions.
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

-- The planner inlines the render and the formats' functions: the worker's
-- claims render in the statement, with no function call per delivery.
DO $$
DECLARE
    plan text := '';
    line text;
BEGIN
    FOR line IN EXPLAIN (VERBOSE, COSTS OFF)
        SELECT webhook._render(e.format, '{}', e) FROM webhook.endpoint e LOOP
        plan := plan || line || E'\n';
    END LOOP;
    IF plan LIKE '%webhook.\_render%' OR plan LIKE '%webhook.format\_%' THEN
        RAISE EXCEPTION 'not inlined: %', plan;
    END IF;
END
$$;

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
