--
-- Privileges: nothing for PUBLIC. The owner grants what roles need.
--

REVOKE ALL ON ALL TABLES IN SCHEMA webhook FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA webhook FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhook FROM PUBLIC;
-- Capture statements run as the tracked table's owner and call these three
-- pure functions on rows and jsonb: for that, and only that, PUBLIC may name
-- objects of the schema.
GRANT USAGE ON SCHEMA webhook TO PUBLIC;
GRANT EXECUTE ON FUNCTION webhook._strip(jsonb), webhook._children(text, jsonb[]),
    webhook._row_jsonb(record) TO PUBLIC;

--
-- A worker starts once this commits. Without preloading the API works but
-- nothing is delivered, nor in a database no worker can serve: say so.
--

SELECT webhook._serve();
