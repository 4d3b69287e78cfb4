--
-- events: the explicit events (request_update, republish, unpublish, emit)
-- and redeliver.
--
\set SHOW_CONTEXT never

-- Show the queued events in order, then empty the queue.
\set queue 'WITH q AS (DELETE FROM webhook.queue RETURNING *) SELECT type, kind, op, update_type, channel, chat_type, message, record, old_record, data, source FROM q ORDER BY id;'

DELETE FROM webhook.queue;

-- Each returns the id of the event it queued.
SELECT webhook.request_update('general') AS update_id \gset
SELECT :update_id = max(id) AS returns_the_id FROM webhook.queue;

SELECT webhook.request_update('general', chat_type => 'group') IS NOT NULL;
SELECT webhook.republish('general', '{"title": "General", "members": ["ann", "bob"]}') IS NOT NULL;
SELECT webhook.republish('dm-1', '{}', 'private') IS NOT NULL;
SELECT webhook.unpublish('general', '{"title": "General"}') IS NOT NULL;
SELECT webhook.unpublish('dm-1', '{"reason": "closed"}', chat_type => 'private') IS NOT NULL;
SELECT webhook.emit('order.paid', '{"order": 42, "total": "9.90"}') IS NOT NULL;
SELECT webhook.emit('build:finished', '[1, 2, 3]', channel => 'ci') IS NOT NULL;
SELECT webhook.emit('Ping-2', NULL) IS NOT NULL;
:queue

-- Explicit events are transactional like captured ones.
BEGIN;
SELECT webhook.emit('rolled.back', '{}') IS NOT NULL;
ROLLBACK;
SELECT count(*) FROM webhook.queue;

-- Bad arguments.
SELECT webhook.request_update(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.republish('general', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.republish(NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.unpublish('general', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.unpublish(NULL, '{}', 'group');
\echo :LAST_ERROR_SQLSTATE
-- reserved event names
SELECT webhook.emit('update_notification', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit('republish_request', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit('unpublish_request', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit('url_verification', '{"challenge": "x"}');
\echo :LAST_ERROR_SQLSTATE
-- bad event names
SELECT webhook.emit('', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit(NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit('order paid', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit('.hidden', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit(E'line\nbreak', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit('événement', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit(repeat('x', 201), '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit(repeat('x', 200), '{}') IS NOT NULL AS two_hundred_is_fine;
-- nothing was queued by the failed calls
SELECT length(type) FROM webhook.queue ORDER BY id;
DELETE FROM webhook.queue;

--
-- redeliver: a finished delivery is queued again as a new pending delivery
-- of the same event to the same endpoint.
--
SELECT id AS ep FROM webhook.create_endpoint('https://example.com/redeliver', name => 'redeliver',
                                              verify => false) \gset
-- deliveries as the worker leaves them (inserted by hand: the worker does not serve this database)
INSERT INTO webhook.delivery (endpoint_id, event_id, event, status, attempts, response_status, last_error)
VALUES (:ep, 1001, '{"id": 1001, "type": "order.paid", "data": {"order": 42}}', 'failed', 8, 500, 'HTTP 500')
RETURNING id AS failed_id \gset
INSERT INTO webhook.delivery (endpoint_id, event_id, event, status, attempts, response_status)
VALUES (:ep, 1002, '{"id": 1002, "type": "order.paid", "data": {"order": 43}}', 'delivered', 1, 200)
RETURNING id AS delivered_id \gset
INSERT INTO webhook.delivery (endpoint_id, event_id, event, status, attempts)
VALUES (:ep, 1003, '{"id": 1003, "type": "order.paid", "data": {"order": 44}}', 'pending', 2)
RETURNING id AS pending_id \gset

SELECT webhook.redeliver(:failed_id) AS redelivered_id \gset
SELECT id = :redelivered_id AS is_new, endpoint_id = :ep AS same_endpoint, event_id, event,
       status, attempts, in_flight, response_status, last_error, next_attempt_at <= now() AS due
  FROM webhook.delivery WHERE id = :redelivered_id;
-- the failed delivery stays as it was
SELECT status, attempts, response_status, last_error FROM webhook.delivery WHERE id = :failed_id;
-- a delivered one can be sent again too
SELECT webhook.redeliver(:delivered_id) > :delivered_id AS redelivered;
SELECT event_id, status, count(*) FROM webhook.delivery GROUP BY 1, 2 ORDER BY 1, 2;

-- Errors: unknown delivery, NULL, a pending delivery.
SELECT webhook.redeliver(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.redeliver(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.redeliver(:pending_id);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.redeliver(:redelivered_id);
\echo :LAST_ERROR_SQLSTATE

-- drop_endpoint takes the endpoint's deliveries with it.
SELECT webhook.drop_endpoint(:ep);
SELECT count(*) FROM webhook.delivery;
