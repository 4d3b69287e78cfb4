--
-- Explicit events
--
-- The four functions below run as the extension's owner, so that granting
-- EXECUTE on one (and USAGE on the schema) is all a role needs to queue
-- events: no rights on webhook.queue, which holds every captured message.

CREATE FUNCTION webhook._enqueue(type text, channel text, chat_type text, data jsonb) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id bigint;
BEGIN
    -- A transaction id before the queue id: the worker's claims rely on it
    -- (see the claim floor in src/queue.c).
    PERFORM pg_catalog.pg_current_xact_id();
    INSERT INTO webhook.queue (type, channel, chat_type, data)
    VALUES (_enqueue.type, _enqueue.channel, _enqueue.chat_type, _enqueue.data)
    RETURNING id INTO new_id;
    PERFORM webhook._wake();
    RETURN new_id;
END
$$;

-- slackchat's explicit events: a channel (and, but for update_notification,
-- its data) asked for by name. The three API functions below differ only in
-- the type they pass.
CREATE FUNCTION webhook._explicit_event(type text, channel text, channel_data jsonb,
    chat_type text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF type = 'update_notification' AND channel IS NULL THEN
        RAISE EXCEPTION 'channel must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF type <> 'update_notification' AND (channel IS NULL OR channel_data IS NULL) THEN
        RAISE EXCEPTION 'channel and channel_data must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN webhook._enqueue(type, channel, chat_type, channel_data);
END
$$;

CREATE FUNCTION webhook.request_update(channel text, chat_type text = NULL) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT webhook._explicit_event('update_notification', channel, NULL, chat_type) $$;

CREATE FUNCTION webhook.republish(channel text, channel_data jsonb, chat_type text = NULL) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT webhook._explicit_event('republish_request', channel, channel_data, chat_type) $$;

CREATE FUNCTION webhook.unpublish(channel text, channel_data jsonb, chat_type text = NULL) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT webhook._explicit_event('unpublish_request', channel, channel_data, chat_type) $$;

CREATE FUNCTION webhook.emit(event text, data jsonb, channel text = NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF event IS NULL THEN
        RAISE EXCEPTION 'event must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF event !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]*$' OR length(event) > 200 THEN
        RAISE EXCEPTION 'invalid event name "%"', event
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Event names are letters, digits and _.:- and start with a letter or digit.';
    END IF;
    IF event IN ('update_notification', 'republish_request', 'unpublish_request', 'url_verification') THEN
        RAISE EXCEPTION 'event name "%" is reserved', event
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use webhook.request_update(), webhook.republish() or webhook.unpublish() for these.';
    END IF;
    RETURN webhook._enqueue(event, channel, NULL, data);
END
$$;

CREATE FUNCTION webhook.redeliver(delivery bigint) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d webhook.delivery;
    new_id bigint;
BEGIN
    SELECT * INTO d FROM webhook.delivery x WHERE x.id = redeliver.delivery;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % does not exist', coalesce(delivery::text, 'NULL')
            USING ERRCODE = 'undefined_object';
    END IF;
    IF d.status = 'pending' THEN
        RAISE EXCEPTION 'delivery % is still pending', d.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'It will be attempted again at its next_attempt_at.';
    END IF;
    -- same event and endpoint, hence the same webhook-id: receivers can tell it is a resend
    INSERT INTO webhook.delivery (endpoint_id, event_id, event)
    VALUES (d.endpoint_id, d.event_id, d.event)
    RETURNING id INTO new_id;
    PERFORM webhook._wake(recheck => true);
    RETURN new_id;
END
$$;


-- After an outage: a new attempt of every failed delivery of the endpoint
-- created since `since` (all when NULL), as redeliver() makes one, with the
-- same webhook-id. A failed delivery that was already sent again (a later
-- delivery of the same event to the endpoint exists) is left out, so calling
-- this twice sends nothing twice.
CREATE FUNCTION webhook.redeliver_failed(endpoint bigint, since timestamptz = NULL) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep webhook.endpoint := webhook._endpoint(endpoint);
    n bigint;
BEGIN
    INSERT INTO webhook.delivery (endpoint_id, event_id, event)
    SELECT d.endpoint_id, d.event_id, d.event
      FROM webhook.delivery d
     WHERE d.endpoint_id = ep.id AND d.status = 'failed'
       AND (redeliver_failed.since IS NULL OR d.created_at >= redeliver_failed.since)
       AND NOT EXISTS (SELECT FROM webhook.delivery l
                        WHERE l.endpoint_id = d.endpoint_id AND l.event_id = d.event_id
                          AND l.id > d.id)
     ORDER BY d.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM webhook._wake(recheck => true);
    END IF;
    RETURN n;
END
$$;
