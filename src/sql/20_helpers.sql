--
-- C helpers
--

CREATE FUNCTION webhook._check_url(url text) RETURNS text
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'webhook_check_url';

CREATE FUNCTION webhook._random_bytes(n integer) RETURNS bytea
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'webhook_random_bytes';

-- Tracked expressions: parsed in track()'s caller's search_path, deparsed
-- with every name qualified, and what they use (src/owner.c).
CREATE FUNCTION webhook._parse_expr(rel regclass, expr text, target regtype,
    explicit_cast boolean, search_path text) RETURNS text
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'webhook_parse_expr';

CREATE FUNCTION webhook._deparse_expr(node text, rel regclass, alias text) RETURNS text
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'webhook_deparse_expr';

CREATE FUNCTION webhook._expr_uses(node text, rel regclass, target regclass, attnum integer)
    RETURNS boolean LANGUAGE c STRICT STABLE AS 'MODULE_PATHNAME', 'webhook_expr_uses';

-- The cluster and database that node trees made here belong to.
CREATE FUNCTION webhook._node_origin() RETURNS text
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'webhook_node_origin';

-- Run a source's capture statements over empty transition tables as its
-- table's owner (src/capture.c).
CREATE FUNCTION webhook._check_capture(source bigint) RETURNS void
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'webhook_check_capture';

CREATE FUNCTION webhook._strip(j jsonb) RETURNS jsonb
    LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'webhook_strip';

-- to_jsonb(r), with the conversion of each column looked up once per
-- statement rather than per row (src/rowjson.c): capture statements use it
CREATE FUNCTION webhook._row_jsonb(r record) RETURNS jsonb
    LANGUAGE c STRICT STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'webhook_row_jsonb';

CREATE FUNCTION webhook._table_name(rel regclass) RETURNS text
    LANGUAGE c STRICT STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'webhook_table_name';

CREATE FUNCTION webhook._schema_name(rel regclass) RETURNS text
    LANGUAGE c STRICT STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'webhook_schema_name';

-- Why no worker delivers this database's events; NULL when one does.
CREATE FUNCTION webhook._served() RETURNS text
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'webhook_served';

-- Run by a worker as it starts serving the database: the reasons the API
-- wrote while no worker served it (webhook._served() at the time, in the
-- endpoints not yet handshaken and in those verified without one) are
-- stale. Any other reason was written by a worker, or by disable_endpoint.
CREATE FUNCTION webhook._now_served() RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
UPDATE webhook.endpoint
   SET state_reason = CASE WHEN verify THEN NULL ELSE 'verification skipped (verify => false)' END
 WHERE ((state = 'pending' AND verify AND verify_attempts = 0 AND state_reason IS NOT NULL)
        OR (state = 'verified' AND NOT verify
            AND state_reason IS DISTINCT FROM 'verification skipped (verify => false)'))
$$;

-- Run by CREATE EXTENSION: the launcher starts this database's worker at
-- commit; warns now, with a hint, when no worker can serve the database.
CREATE FUNCTION webhook._serve() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'webhook_serve';

-- Wake the worker at commit; recheck: a delivery was made due (redeliver).
CREATE FUNCTION webhook._wake(recheck boolean = false) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'webhook_wake';

-- Claim up to n queued rows with the worker's claim, from this session's
-- claim floor, and delete them; their ids, in order. For the isolation tests
-- (specs/claim.spec): no delivery is made.
CREATE FUNCTION webhook._claim(n integer) RETURNS bigint[]
    LANGUAGE c STRICT VOLATILE SET search_path = pg_catalog, pg_temp SET enable_seqscan = off
    AS 'MODULE_PATHNAME', 'webhook_claim';

-- The worker keeps the verified endpoints in memory; these tell it, at
-- commit, that they changed (through the API or by hand).
CREATE FUNCTION webhook._endpoint_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'webhook_endpoint_changed';

-- Rows written by hand get the checks the API makes (webhook._check_endpoint):
-- the worker trusts what it reads, and calls the functions named here.
CREATE FUNCTION webhook._endpoint_check() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' OR (NEW.url, NEW.format, NEW.token, NEW.secret, NEW.events, NEW.channels,
                            NEW.keywords, NEW.headers, NEW.on_response, NEW.rate_limit)
         IS DISTINCT FROM (OLD.url, OLD.format, OLD.token, OLD.secret, OLD.events, OLD.channels,
                           OLD.keywords, OLD.headers, OLD.on_response, OLD.rate_limit) THEN
        PERFORM webhook._check_endpoint(NEW.url, NEW.format, NEW.token, NEW.secret, NEW.events,
                                        NEW.channels, NEW.keywords, NEW.headers,
                                        NEW.on_response::regprocedure, NEW.rate_limit);
    END IF;
    IF TG_OP = 'INSERT' OR NEW.previous_secret IS DISTINCT FROM OLD.previous_secret THEN
        PERFORM webhook._check_secret(NEW.previous_secret);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER endpoint_check BEFORE INSERT OR UPDATE ON webhook.endpoint
    FOR EACH ROW EXECUTE FUNCTION webhook._endpoint_check();
CREATE TRIGGER endpoint_changed AFTER INSERT OR UPDATE OR DELETE ON webhook.endpoint
    FOR EACH ROW EXECUTE FUNCTION webhook._endpoint_changed();
CREATE TRIGGER endpoint_truncated AFTER TRUNCATE ON webhook.endpoint
    FOR EACH STATEMENT EXECUTE FUNCTION webhook._endpoint_changed();

-- Runs as the extension's owner: application roles need no rights on webhook.*.
CREATE FUNCTION webhook._capture() RETURNS trigger
    LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'webhook_capture';

-- The event a queue row becomes, as deliveries hold it and formats read it:
-- every column by name, and the table's name and schema as they are now.
-- A message table without tracked children stores no message object: it is
-- the row without null or empty values, derived here. In C (src/render.c):
-- the worker's claims make hundreds a round; sql/formats.sql compares it
-- with the same written in SQL.
CREATE FUNCTION webhook._event(q webhook.queue) RETURNS jsonb
    LANGUAGE c STRICT STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'webhook_event';

