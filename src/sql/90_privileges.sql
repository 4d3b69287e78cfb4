--
-- Privileges: nothing for PUBLIC. The owner grants what roles need.
--

REVOKE ALL ON ALL TABLES IN SCHEMA webhook FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA webhook FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhook FROM PUBLIC;
-- Capture statements run as the tracked table's owner and call these two
-- pure functions on jsonb: for that, and only that, PUBLIC may name objects
-- of the schema.
GRANT USAGE ON SCHEMA webhook TO PUBLIC;
GRANT EXECUTE ON FUNCTION webhook._strip(jsonb), webhook._children(text, jsonb[]) TO PUBLIC;

--
-- Without preloading the API works but nothing is delivered: say so.
--

DO $$
BEGIN
    IF NOT 'webhook' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) THEN
        RAISE WARNING 'webhook is not in shared_preload_libraries: events are queued but not delivered'
            USING HINT = 'Add webhook to shared_preload_libraries and restart the server.';
    ELSIF webhook._served() IS NOT NULL THEN
        RAISE WARNING '%: events are queued but not delivered', webhook._served()
            USING HINT = format('Set webhook.database_name = %s in postgresql.conf and restart the server.',
                                quote_literal(current_database()));
    END IF;
END
$$;
