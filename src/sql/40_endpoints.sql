--
-- Endpoints
--

-- The function a signature names; NULL when there is none, also when the
-- signature is not even a name.
CREATE FUNCTION webhook._function(signature text) RETURNS regprocedure
    LANGUAGE plpgsql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN to_regprocedure(signature);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

-- The form check of a user's function, for the API and the worker alike:
-- NULL when fn has the form its use needs, else what it lacks: 'missing'
-- (no such function), 'arguments', 'result' or 'kind'. A format takes
-- (event jsonb, endpoint webhook.endpoint) and returns jsonb; on_response
-- takes (delivery webhook.delivery, status integer, headers jsonb, body
-- text); both are plain functions returning one value.
CREATE FUNCTION webhook._function_form(fn oid, use text) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE
    WHEN p.oid IS NULL THEN 'missing'
    -- ARRAY(unnest) because proargtypes::oid[] is indexed from 0 and never equals an ARRAY[]
    WHEN ARRAY(SELECT unnest(p.proargtypes)) <> CASE use
            WHEN 'format' THEN ARRAY['jsonb'::regtype, 'webhook.endpoint'::regtype]::oid[]
            ELSE ARRAY['webhook.delivery'::regtype, 'integer'::regtype, 'jsonb'::regtype,
                       'text'::regtype]::oid[] END THEN 'arguments'
    WHEN use = 'format' AND p.prorettype <> 'jsonb'::regtype THEN 'result'
    WHEN p.prokind <> 'f' OR p.proretset THEN 'kind'
END
FROM (SELECT fn) AS f LEFT JOIN pg_proc p ON p.oid = f.fn
$$;

-- A format or on_response function named through the API or by hand: the
-- worker calls it as its owner, in another session, once per delivery.
-- Whoever names it must be allowed to call it. fn: what the name resolved
-- to (NULL: nothing); named: the name, as the user gave it.
CREATE FUNCTION webhook._check_user_function(fn regprocedure, use text, named text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lacks text := webhook._function_form(fn, use);
    formats text[] := webhook._builtin_formats();
    p record;
BEGIN
    IF use = 'format' AND lacks IN ('missing', 'result') THEN
        RAISE EXCEPTION 'unknown format "%"', named
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Use %s or %s, or name a schema-qualified function (event jsonb, endpoint webhook.endpoint) RETURNS jsonb.',
                                array_to_string(formats[1:cardinality(formats) - 1], ', '),
                                formats[cardinality(formats)]);
    ELSIF lacks = 'missing' THEN
        RAISE EXCEPTION '% function % does not exist', use, named
            USING ERRCODE = 'undefined_function';
    ELSIF lacks = 'arguments' THEN
        RAISE EXCEPTION '% function % has the wrong arguments', use, named
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It must take (delivery webhook.delivery, status integer, headers jsonb, body text).';
    ELSIF lacks = 'kind' THEN
        RAISE EXCEPTION '% function % must be a plain function returning one value', use, fn
            USING ERRCODE = 'wrong_object_type';
    END IF;
    SELECT x.proname, n.nspname INTO p
      FROM pg_proc x JOIN pg_namespace n ON n.oid = x.pronamespace WHERE x.oid = fn;
    IF p.nspname LIKE 'pg\_temp\_%' THEN
        RAISE EXCEPTION '% function pg_temp.% is temporary', use, p.proname
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The worker calls it from its own session: create it in a permanent schema.';
    END IF;
    IF NOT has_function_privilege(fn, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', fn
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('An endpoint''s %s function is run as its owner; whoever names it must be allowed to execute it.', use);
    END IF;
END
$$;

-- The function an endpoint row names, for the worker: 0 when there is none
-- of the form its use needs (a name that does not even parse included), so
-- one bad row cannot stop the worker's rounds.
CREATE FUNCTION webhook._user_function(signature text, use text) RETURNS oid
    LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN webhook._function_form(fn, use) IS NULL THEN fn::oid ELSE 0 END
FROM webhook._function(signature) AS fn
$$;

-- An endpoint's format function, for the worker: NULL for a built-in
-- format, else as _user_function.
CREATE FUNCTION webhook._format_function(format text) RETURNS oid
    LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN format <> ALL (webhook._builtin_formats())
            THEN webhook._user_function(format || '(jsonb, webhook.endpoint)', 'format') END
$$;

-- After DDL that removes or renames functions: an endpoint's format or
-- on_response function may not go while the endpoint names it. Another
-- function could take its name, and with it the endpoint's events, token and
-- secret.
CREATE FUNCTION webhook._check_endpoint_functions() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    e webhook.endpoint;
    gone text;
BEGIN
    FOR e IN SELECT * FROM webhook.endpoint x ORDER BY x.id LOOP
        gone := CASE WHEN webhook._format_function(e.format) = 0 THEN e.format
                     WHEN webhook._user_function(e.on_response, 'on_response') = 0 THEN e.on_response END;
        IF gone IS NOT NULL THEN
            RAISE EXCEPTION 'endpoint "%" names function %, which this change removes', e.name, gone
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Give the endpoint another function first (webhook.alter_endpoint), or drop the endpoint.';
        END IF;
    END LOOP;
END
$$;

-- A new secret: Standard Webhooks' whsec_ and the base64 of 32 random bytes.
CREATE FUNCTION webhook._new_secret() RETURNS text
    LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
    AS $$ SELECT 'whsec_' || encode(webhook._random_bytes(32), 'base64') $$;

-- Check a secret given to create_endpoint, alter_endpoint or rotate_secret (NULL passes).
CREATE FUNCTION webhook._check_secret(secret text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key bytea;
BEGIN
    IF secret IS NULL THEN
        RETURN;
    END IF;
    IF secret NOT LIKE 'whsec\_%' THEN
        RAISE EXCEPTION 'endpoint secret must start with "whsec_"'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A Standard Webhooks secret is whsec_ followed by base64 of at least 16 random bytes; leave it out to have one generated.';
    END IF;
    BEGIN
        key := decode(substr(secret, 7), 'base64');
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'endpoint secret is not valid base64 after "whsec_"'
            USING ERRCODE = 'invalid_parameter_value';
    END;
    IF length(key) < 16 THEN
        RAISE EXCEPTION 'endpoint secret is too short'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It decodes to %s bytes; at least 16 are needed.', length(key));
    END IF;
END
$$;

-- Check the arguments shared by create_endpoint and alter_endpoint.
CREATE FUNCTION webhook._check_endpoint(url text, format text, token text, secret text,
    events text[], channels text[], keywords text[], headers jsonb, on_response regprocedure,
    rate_limit integer)
    RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
    v jsonb;
BEGIN
    IF url IS NOT NULL THEN
        PERFORM webhook._check_url(url);
    END IF;
    IF format IS NOT NULL AND format <> ALL (webhook._builtin_formats()) THEN
        PERFORM webhook._check_user_function(webhook._function(format || '(jsonb, webhook.endpoint)'),
                                             'format', format);
    END IF;
    IF token IS NOT NULL AND (token = '' OR token ~ '[\r\n]') THEN
        RAISE EXCEPTION 'endpoint token must be non-empty and on one line'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM webhook._check_secret(secret);
    IF rate_limit <= 0 THEN
        RAISE EXCEPTION 'endpoint rate_limit must be a positive number of deliveries per second'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave it NULL for no limit.';
    END IF;
    IF array_ndims(events) > 1 OR array_ndims(channels) > 1 OR array_ndims(keywords) > 1 THEN
        RAISE EXCEPTION 'events, channels and keywords filters must be one-dimensional arrays'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(events, NULL) IS NOT NULL OR '' = ANY (events) THEN
        RAISE EXCEPTION 'events filter must not contain null or empty names'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(channels, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'channels filter must not contain null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(keywords, NULL) IS NOT NULL OR '' = ANY (keywords) THEN
        RAISE EXCEPTION 'keywords filter must not contain null or empty keywords'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF headers IS NOT NULL THEN
        IF jsonb_typeof(headers) <> 'object' THEN
            RAISE EXCEPTION 'endpoint headers must be a JSON object of strings'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example ''{"Authorization": "Bearer abc"}''.';
        END IF;
        FOR k, v IN SELECT * FROM jsonb_each(headers) LOOP
            IF k !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' THEN
                RAISE EXCEPTION 'invalid header name "%"', k
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Header names are HTTP tokens: letters, digits and !#$%&''*+-.^_`|~.';
            END IF;
            IF lower(k) IN ('host', 'content-length', 'transfer-encoding', 'connection',
                            'webhook-id', 'webhook-timestamp', 'webhook-signature') THEN
                RAISE EXCEPTION 'header "%" is set by webhook and cannot be overridden', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF jsonb_typeof(v) <> 'string' THEN
                RAISE EXCEPTION 'value of header "%" must be a string', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF v->>0 ~ '[\r\n\x01-\x08\x0b\x0c\x0e-\x1f\x7f]' THEN
                RAISE EXCEPTION 'value of header "%" contains a line break or control character', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
    END IF;
    IF on_response IS NOT NULL AND on_response <> 0 THEN
        PERFORM webhook._check_user_function(on_response, 'on_response', on_response::text);
    END IF;
END
$$;

CREATE FUNCTION webhook.create_endpoint(url text, name text = NULL, format text = 'slackchat',
    token text = NULL, secret text = NULL, events text[] = NULL, channels text[] = NULL,
    keywords text[] = NULL, headers jsonb = '{}', verify boolean = true,
    on_response regprocedure = NULL, rate_limit integer = NULL)
    RETURNS webhook.endpoint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r webhook.endpoint;
    new_id bigint := nextval(pg_get_serial_sequence('webhook.endpoint', 'id'));
BEGIN
    IF url IS NULL THEN
        RAISE EXCEPTION 'endpoint url must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF format IS NULL OR verify IS NULL THEN
        RAISE EXCEPTION 'format and verify must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF name = '' THEN
        RAISE EXCEPTION 'endpoint name must not be empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Leave it out to have one generated.';
    END IF;
    PERFORM webhook._check_endpoint(url, format, token, secret, events, channels, keywords,
                                    coalesce(headers, '{}'), on_response, rate_limit);
    IF EXISTS (SELECT 1 FROM webhook.endpoint e WHERE e.name = create_endpoint.name) THEN
        RAISE EXCEPTION 'endpoint "%" already exists', create_endpoint.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Choose another name, or change the existing one with webhook.alter_endpoint().';
    END IF;
    INSERT INTO webhook.endpoint (id, name, url, format, token, secret, events, channels, keywords,
                                  headers, verify, on_response, rate_limit, state, state_reason,
                                  verified_at, verify_next_at)
    VALUES (new_id,
            coalesce(create_endpoint.name, 'endpoint_' || new_id),
            create_endpoint.url,
            create_endpoint.format,
            coalesce(create_endpoint.token, encode(webhook._random_bytes(24), 'hex')),
            coalesce(create_endpoint.secret, webhook._new_secret()),
            nullif(create_endpoint.events, '{}'),
            nullif(create_endpoint.channels, '{}'),
            nullif(create_endpoint.keywords, '{}'),
            coalesce(create_endpoint.headers, '{}'),
            create_endpoint.verify,
            -- not nullif(), which returns an oid: the text is the qualified signature
            CASE WHEN create_endpoint.on_response <> 0 THEN create_endpoint.on_response::text END,
            create_endpoint.rate_limit,
            CASE WHEN create_endpoint.verify THEN 'pending' ELSE 'verified' END,
            -- NULL, or why nothing will happen: no worker serves this database
            CASE WHEN create_endpoint.verify THEN webhook._served()
                 ELSE concat_ws('; ', 'verification skipped (verify => false)', webhook._served()) END,
            CASE WHEN create_endpoint.verify THEN NULL ELSE now() END,
            CASE WHEN create_endpoint.verify THEN now() END)
    RETURNING * INTO r;
    PERFORM webhook._wake();
    RETURN r;
END
$$;

-- Look up an endpoint for change, or raise the error every API function gives.
CREATE FUNCTION webhook._endpoint(id bigint) RETURNS webhook.endpoint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r webhook.endpoint;
BEGIN
    SELECT * INTO r FROM webhook.endpoint e WHERE e.id = _endpoint.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'endpoint % does not exist', coalesce(id::text, 'NULL')
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION webhook.alter_endpoint(id bigint, url text = NULL, name text = NULL,
    format text = NULL, token text = NULL, secret text = NULL, events text[] = NULL,
    channels text[] = NULL, keywords text[] = NULL, headers jsonb = NULL,
    verify boolean = NULL, on_response regprocedure = NULL, rate_limit integer = NULL)
    RETURNS webhook.endpoint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old webhook.endpoint := webhook._endpoint(id);
    r webhook.endpoint;
    rehandshake boolean;
BEGIN
    -- rate_limit => 0 removes the limit
    PERFORM webhook._check_endpoint(url, format, token, secret, events, channels, keywords,
                                    headers, on_response, nullif(rate_limit, 0));
    IF alter_endpoint.name = '' THEN
        RAISE EXCEPTION 'endpoint name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF alter_endpoint.name IS NOT NULL AND alter_endpoint.name <> old.name
       AND EXISTS (SELECT 1 FROM webhook.endpoint e WHERE e.name = alter_endpoint.name) THEN
        RAISE EXCEPTION 'endpoint "%" already exists', alter_endpoint.name
            USING ERRCODE = 'duplicate_object';
    END IF;
    r := old;
    r.url := coalesce(alter_endpoint.url, old.url);
    r.name := coalesce(alter_endpoint.name, old.name);
    r.format := coalesce(alter_endpoint.format, old.format);
    r.token := coalesce(alter_endpoint.token, old.token);
    r.secret := coalesce(alter_endpoint.secret, old.secret);
    -- an empty array clears a filter (NULL keeps it)
    IF alter_endpoint.events IS NOT NULL THEN r.events := nullif(alter_endpoint.events, '{}'); END IF;
    IF alter_endpoint.channels IS NOT NULL THEN r.channels := nullif(alter_endpoint.channels, '{}'); END IF;
    IF alter_endpoint.keywords IS NOT NULL THEN r.keywords := nullif(alter_endpoint.keywords, '{}'); END IF;
    r.headers := coalesce(alter_endpoint.headers, old.headers);
    r.verify := coalesce(alter_endpoint.verify, old.verify);
    -- '-'::regprocedure (0) clears on_response
    IF alter_endpoint.on_response IS NOT NULL THEN
        r.on_response := CASE WHEN alter_endpoint.on_response <> 0 THEN alter_endpoint.on_response::text END;
    END IF;
    IF alter_endpoint.rate_limit IS NOT NULL THEN
        r.rate_limit := nullif(alter_endpoint.rate_limit, 0);
    END IF;

    rehandshake := r.url IS DISTINCT FROM old.url OR r.token IS DISTINCT FROM old.token
                   OR (r.verify AND NOT old.verify);
    IF NOT r.verify AND old.state IN ('pending', 'unverified') THEN
        r.state := 'verified';
        r.state_reason := concat_ws('; ', 'verification skipped (verify => false)', webhook._served());
        r.verified_at := now();
        r.verify_next_at := NULL;
    ELSIF rehandshake AND r.verify AND old.state <> 'disabled' THEN
        -- a disabled endpoint stays disabled: webhook.enable_endpoint() runs the handshake
        r.state := 'pending';
        r.state_reason := webhook._served();
        r.verified_at := NULL;
        r.verify_attempts := 0;
        r.verify_next_at := now();
    END IF;
    r.updated_at := now();

    UPDATE webhook.endpoint e SET
        name = r.name, url = r.url, format = r.format, token = r.token, secret = r.secret,
        events = r.events, channels = r.channels, keywords = r.keywords, headers = r.headers,
        verify = r.verify, on_response = r.on_response, rate_limit = r.rate_limit, state = r.state,
        state_reason = r.state_reason, verified_at = r.verified_at,
        verify_attempts = r.verify_attempts, verify_next_at = r.verify_next_at,
        updated_at = r.updated_at
    WHERE e.id = r.id
    RETURNING * INTO r;
    PERFORM webhook._wake();
    RETURN r;
END
$$;

CREATE FUNCTION webhook.drop_endpoint(id bigint) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhook._endpoint(id);
    IF EXISTS (SELECT 1 FROM webhook.moderation m WHERE m.endpoint_id = drop_endpoint.id) THEN
        RAISE EXCEPTION 'endpoint % is the moderation hook of %', id,
                (SELECT string_agg(m.rel::text, ', ' ORDER BY m.rel::text) FROM webhook.moderation m
                  WHERE m.endpoint_id = drop_endpoint.id)
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Call webhook.unmoderate() on those tables first.';
    END IF;
    DELETE FROM webhook.delivery d WHERE d.endpoint_id = drop_endpoint.id;
    DELETE FROM webhook.endpoint e WHERE e.id = drop_endpoint.id;
END
$$;

CREATE FUNCTION webhook.verify_endpoint(id bigint) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r webhook.endpoint := webhook._endpoint(id);
BEGIN
    IF NOT r.verify THEN
        RAISE EXCEPTION 'endpoint % does not take a verification handshake', r.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Turn it on with webhook.alter_endpoint(id, verify => true).';
    END IF;
    IF r.state = 'disabled' THEN
        RAISE EXCEPTION 'endpoint % is disabled', r.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'webhook.enable_endpoint() enables it and runs the handshake.';
    END IF;
    UPDATE webhook.endpoint e
       SET state = 'pending', state_reason = webhook._served(), verified_at = NULL, verify_attempts = 0,
           verify_next_at = now(), updated_at = now()
     WHERE e.id = r.id;
    PERFORM webhook._wake();
END
$$;

CREATE FUNCTION webhook.enable_endpoint(id bigint) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r webhook.endpoint := webhook._endpoint(id);
BEGIN
    IF r.state IN ('verified', 'pending') THEN
        RETURN;
    END IF;
    -- a disabled or unverified endpoint proves itself again before it gets events
    UPDATE webhook.endpoint e
       SET state = CASE WHEN r.verify THEN 'pending' ELSE 'verified' END,
           state_reason = CASE WHEN r.verify THEN webhook._served()
                               ELSE concat_ws('; ', 'verification skipped (verify => false)', webhook._served()) END,
           verified_at = CASE WHEN r.verify THEN NULL ELSE now() END,
           verify_attempts = 0,
           verify_next_at = CASE WHEN r.verify THEN now() END,
           failing_since = NULL,
           updated_at = now()
     WHERE e.id = r.id;
    PERFORM webhook._wake();
END
$$;

CREATE FUNCTION webhook.disable_endpoint(id bigint, reason text = NULL) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r webhook.endpoint := webhook._endpoint(id);
BEGIN
    UPDATE webhook.endpoint e
       SET state = 'disabled', state_reason = coalesce(reason, 'disabled by hand'),
           verify_next_at = NULL, updated_at = now()
     WHERE e.id = r.id;
END
$$;

-- A new secret (generated, or the one given) that signs every request from
-- now on; the old one signs them too until keep_old has passed, so that
-- receivers can move to the new one without a gap. Rotating again before
-- then drops the older of the two.
CREATE FUNCTION webhook.rotate_secret(id bigint, secret text = NULL,
    keep_old interval = '24 hours') RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r webhook.endpoint := webhook._endpoint(id);
    new_secret text := coalesce(rotate_secret.secret, webhook._new_secret());
BEGIN
    PERFORM webhook._check_secret(rotate_secret.secret);
    IF keep_old IS NULL THEN
        RAISE EXCEPTION 'keep_old must not be null' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'It is how long requests are signed with the old secret too; 0 drops it at once.';
    END IF;
    IF keep_old < interval '0' THEN
        RAISE EXCEPTION 'keep_old must not be negative' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'It is how long requests are signed with the old secret too; 0 drops it at once.';
    END IF;
    BEGIN
        PERFORM now() + keep_old;
    EXCEPTION WHEN datetime_field_overflow THEN
        RAISE EXCEPTION 'keep_old is too large' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'It is how long requests are signed with the old secret too; 0 drops it at once.';
    END;
    IF new_secret = r.secret THEN
        RAISE EXCEPTION 'the new secret is the endpoint''s current secret'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give another secret, or leave it out to have one generated.';
    END IF;
    UPDATE webhook.endpoint e
       SET secret = new_secret,
           previous_secret = CASE WHEN keep_old > interval '0' THEN r.secret END,
           previous_secret_until = CASE WHEN keep_old > interval '0' THEN now() + keep_old END,
           updated_at = now()
     WHERE e.id = r.id;
    RETURN new_secret;
END
$$;

-- Judge and record a handshake's outcome as the worker does (record.c), for
-- the tests. status NULL: no response, error says why; retry_ms < 0: no
-- retries left.
CREATE FUNCTION webhook._handshake_result(endpoint_id bigint, url text, token text,
    challenge text, status integer, body text, error text, retry_ms bigint)
    RETURNS void LANGUAGE c SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'webhook_handshake_result';
