--
-- operations: rotate_secret, rate_limit, redeliver_failed, with every bad
-- input and its error. (What the worker sends is tested in
-- test/t/013_rotation.pl, 014_recovery.pl and 015_rate_limit.pl.)
--
\set SHOW_CONTEXT never

SELECT id AS ep FROM webhook.create_endpoint('https://example.com/ops', name => 'ops',
    secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', verify => false) \gset

--
-- rotate_secret
--

-- A new secret is generated as create_endpoint makes one; the old one is
-- kept for 24 hours. (One transaction: now() is the rotation's.)
BEGIN;
SELECT webhook.rotate_secret(:ep) AS new_secret \gset
SELECT :'new_secret' ~ '^whsec_[A-Za-z0-9+/]+=*$' AS whsec_form,
       length(decode(substr(:'new_secret', 7), 'base64')) AS secret_bytes,
       secret = :'new_secret' AS is_current, previous_secret,
       previous_secret_until - now() AS old_kept_for, updated_at = now() AS updated
  FROM webhook.endpoint WHERE id = :ep;
COMMIT;

-- A secret given is taken, checked as create_endpoint checks one; rotating
-- again before keep_old passes drops the older secret.
BEGIN;
SELECT webhook.rotate_secret(:ep, 'whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=', keep_old => '1 hour');
SELECT secret, previous_secret = :'new_secret' AS previous_is_last,
       previous_secret_until - now() AS old_kept_for
  FROM webhook.endpoint WHERE id = :ep;
COMMIT;

-- keep_old => 0: the old secret is dropped at once.
SELECT webhook.rotate_secret(:ep, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', keep_old => '0') AS secret;
SELECT secret, previous_secret, previous_secret_until FROM webhook.endpoint WHERE id = :ep;

-- Errors: a bad or unchanged secret, a negative or NULL keep_old, unknown ids.
SELECT webhook.rotate_secret(:ep, 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.rotate_secret(:ep, 'whsec_c2hvcnQ=');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.rotate_secret(:ep, 'whsec_not*base64!');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.rotate_secret(:ep, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.rotate_secret(:ep, keep_old => '-1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.rotate_secret(:ep, keep_old => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.rotate_secret(:ep, keep_old => '1000000 years');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.rotate_secret(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.rotate_secret(NULL);
\echo :LAST_ERROR_SQLSTATE
-- none of them changed the endpoint
SELECT secret, previous_secret FROM webhook.endpoint WHERE id = :ep;

-- A previous secret written by hand is checked like the secret.
UPDATE webhook.endpoint SET previous_secret = 'not-a-secret', previous_secret_until = now() + '1 hour'
 WHERE id = :ep;
\echo :LAST_ERROR_SQLSTATE

--
-- rate_limit
--

SELECT name, rate_limit FROM webhook.create_endpoint('https://example.com/limited',
    name => 'limited', rate_limit => 20, verify => false);
SELECT id AS limited FROM webhook.endpoint WHERE name = 'limited' \gset
-- NULL keeps it, a number changes it, 0 removes it
SELECT rate_limit FROM webhook.alter_endpoint(:limited, name => 'limited');
SELECT rate_limit FROM webhook.alter_endpoint(:limited, rate_limit => 5);
SELECT rate_limit FROM webhook.alter_endpoint(:limited, rate_limit => 0);
SELECT rate_limit FROM webhook.alter_endpoint(:limited, rate_limit => 1);

-- Errors: zero or less at creation, less than zero when altered, by hand.
SELECT webhook.create_endpoint('https://example.com/', rate_limit => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', rate_limit => -5);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(:limited, rate_limit => -1);
\echo :LAST_ERROR_SQLSTATE
UPDATE webhook.endpoint SET rate_limit = 0 WHERE id = :limited;
\echo :LAST_ERROR_SQLSTATE
SELECT name, rate_limit FROM webhook.endpoint ORDER BY id;

--
-- redeliver_failed
--

-- Deliveries as the worker leaves them (inserted by hand: no worker serves
-- this database): failed two days ago, failed an hour ago, failed and
-- already sent again, delivered, pending, and another endpoint's failure.
INSERT INTO webhook.delivery (endpoint_id, event_id, event, status, attempts, response_status, last_error, created_at)
VALUES (:ep, 2001, '{"id": 2001, "type": "order.paid"}', 'failed', 8, 503, 'HTTP 503', now() - interval '2 days'),
       (:ep, 2002, '{"id": 2002, "type": "order.paid"}', 'failed', 8, NULL, 'Connection refused', now() - interval '1 hour'),
       (:ep, 2003, '{"id": 2003, "type": "order.paid"}', 'failed', 8, 500, 'HTTP 500', now() - interval '1 hour'),
       (:ep, 2003, '{"id": 2003, "type": "order.paid"}', 'delivered', 1, 200, NULL, now() - interval '30 minutes'),
       (:ep, 2004, '{"id": 2004, "type": "order.paid"}', 'delivered', 1, 200, NULL, now() - interval '1 hour'),
       (:ep, 2005, '{"id": 2005, "type": "order.paid"}', 'pending', 2, NULL, NULL, now() - interval '1 hour'),
       (:limited, 2006, '{"id": 2006, "type": "order.paid"}', 'failed', 8, 500, 'HTTP 500', now() - interval '1 hour');
SELECT max(id) AS before FROM webhook.delivery \gset

-- Since a day ago: the failure of an hour ago only.
SELECT webhook.redeliver_failed(:ep, since => now() - interval '1 day');
SELECT endpoint_id = :ep AS same_endpoint, event_id, event, status, attempts, in_flight,
       response_status, last_error, next_attempt_at <= now() AS due
  FROM webhook.delivery WHERE id > :before ORDER BY id;
-- All: the older failure now; what was sent again already is not sent twice.
SELECT webhook.redeliver_failed(:ep);
SELECT webhook.redeliver_failed(:ep);
-- the failed deliveries stay as they were, beside their new attempts
SELECT endpoint_id = :ep AS ep, event_id, status, attempts, last_error
  FROM webhook.delivery ORDER BY id;

-- Errors: unknown endpoint, NULL.
SELECT webhook.redeliver_failed(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.redeliver_failed(NULL);
\echo :LAST_ERROR_SQLSTATE

--
-- Not for PUBLIC: a role with USAGE on the schema cannot call them.
--
CREATE ROLE regress_webhook_ops;
GRANT USAGE ON SCHEMA webhook TO regress_webhook_ops;
SET ROLE regress_webhook_ops;
SELECT webhook.rotate_secret(:ep);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.redeliver_failed(:ep);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE USAGE ON SCHEMA webhook FROM regress_webhook_ops;
DROP ROLE regress_webhook_ops;

SELECT webhook.drop_endpoint(id) FROM webhook.endpoint;
