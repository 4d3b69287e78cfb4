--
-- privileges: application roles write to tracked tables without any rights
-- on webhook.*, and cannot read endpoints or call the API unless granted.
--
\set SHOW_CONTEXT never

CREATE ROLE regress_webhook_app;
CREATE ROLE regress_webhook_owner;
CREATE ROLE regress_webhook_reader;

-- Chat tables the application role may use, tracked by the superuser.
CREATE SCHEMA privchat;
CREATE TABLE privchat.message (id int PRIMARY KEY, channel_id text NOT NULL, content text);
CREATE TABLE privchat.reaction (id int PRIMARY KEY, message_id int REFERENCES privchat.message, emoji text);
GRANT USAGE ON SCHEMA privchat TO regress_webhook_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON privchat.message, privchat.reaction TO regress_webhook_app;
SELECT webhook.track('privchat.message');
SELECT webhook.track('privchat.reaction', 'reaction');
DELETE FROM webhook.queue;

-- The application role has no rights on webhook.*.
SELECT has_schema_privilege('regress_webhook_app', 'webhook', 'USAGE') AS schema_usage,
       has_table_privilege('regress_webhook_app', 'webhook.queue', 'INSERT') AS queue_insert,
       has_function_privilege('regress_webhook_app', 'webhook._capture()', 'EXECUTE') AS capture_execute;

-- Its changes are captured all the same: the trigger runs as the extension's owner.
SET ROLE regress_webhook_app;
INSERT INTO privchat.message VALUES (1, 'general', 'hi'), (2, 'general', 'there');
INSERT INTO privchat.reaction VALUES (1, 1, '+1');
UPDATE privchat.message SET content = 'hello' WHERE id = 1;
DELETE FROM privchat.message WHERE id = 2;
-- and it cannot see them, nor endpoints, nor call the API
SELECT count(*) FROM webhook.queue;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM webhook.endpoint;
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('privchat.message');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit('hello', '{}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT type, kind, op, update_type, channel, message, record, old_record, source
  FROM webhook.queue ORDER BY id;
DELETE FROM webhook.queue;

-- With USAGE on the schema, PUBLIC's lack of rights on each object shows.
GRANT USAGE ON SCHEMA webhook TO regress_webhook_app;
SET ROLE regress_webhook_app;
SELECT * FROM webhook.endpoint;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM webhook.queue;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM webhook.delivery;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM webhook.source;
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(1, url => 'https://evil.example/');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.drop_endpoint(1);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.track('privchat.message');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.untrack('privchat.message');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.emit('hello', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.redeliver(1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM webhook.endpoint_status;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM webhook.worker_status;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM webhook._worker_status();
\echo :LAST_ERROR_SQLSTATE
-- nor can it install capture triggers of its own, even with TRIGGER on the table
RESET ROLE;
GRANT TRIGGER ON privchat.message TO regress_webhook_app;
SET ROLE regress_webhook_app;
CREATE TRIGGER mine AFTER INSERT ON privchat.message REFERENCING NEW TABLE AS webhook_new
    FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('1');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- EXECUTE on an explicit-event function is all a role needs to queue events.
GRANT EXECUTE ON FUNCTION webhook.emit(text, jsonb, text),
                          webhook.request_update(text, text) TO regress_webhook_app;
SET ROLE regress_webhook_app;
SELECT webhook.emit('order.paid', '{"order": 1}', 'shop') IS NOT NULL AS queued;
SELECT webhook.request_update('general') IS NOT NULL AS queued;
SELECT webhook.republish('general', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM webhook.queue;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT type, channel, data FROM webhook.queue ORDER BY id;
DELETE FROM webhook.queue;

-- Endpoint columns can be granted without the token and the secret.
SELECT id AS ep FROM webhook.create_endpoint('https://example.com/hooks', name => 'priv',
                                              token => 'secret-token') \gset
GRANT USAGE ON SCHEMA webhook TO regress_webhook_reader;
GRANT SELECT (id, name, url, state) ON webhook.endpoint TO regress_webhook_reader;
SET ROLE regress_webhook_reader;
SELECT name, url, state FROM webhook.endpoint;
SELECT token FROM webhook.endpoint;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM webhook.endpoint;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- A monitoring role: SELECT on the two views, EXECUTE on the functions they
-- call (README's grants block); the endpoints' secrets stay hidden.
GRANT SELECT ON webhook.endpoint_status, webhook.worker_status TO regress_webhook_reader;
GRANT EXECUTE ON FUNCTION webhook._worker_status(), webhook._served() TO regress_webhook_reader;
SET ROLE regress_webhook_reader;
SELECT name, state, pending, failed, delivered_1h, failed_1h, last_error FROM webhook.endpoint_status;
SELECT count(*) >= 0 AS workers FROM webhook.worker_status;
SELECT * FROM webhook.delivery;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE ALL ON webhook.endpoint_status, webhook.worker_status FROM regress_webhook_reader;
REVOKE ALL ON FUNCTION webhook._worker_status(), webhook._served() FROM regress_webhook_reader;

SELECT webhook.drop_endpoint(:ep);

-- A table owner without rights on webhook.* can still alter, rename and drop
-- its tables, tracked or not (the DDL event triggers run as the extension's owner).
CREATE SCHEMA privowned AUTHORIZATION regress_webhook_owner;
SET ROLE regress_webhook_owner;
CREATE TABLE privowned.untracked (id int);
ALTER TABLE privowned.untracked ADD COLUMN note text;
DROP TABLE privowned.untracked;
CREATE TABLE privowned.message (id int PRIMARY KEY, channel_id text, body text);
RESET ROLE;
SELECT webhook.track('privowned.message');
SET ROLE regress_webhook_owner;
ALTER TABLE privowned.message ADD COLUMN edited boolean NOT NULL DEFAULT false;
ALTER TABLE privowned.message RENAME TO post;
INSERT INTO privowned.post VALUES (1, 'general', 'hi');
RESET ROLE;
SELECT type, kind, op, update_type, channel, record, source FROM webhook.queue ORDER BY id;
DELETE FROM webhook.queue;
SET ROLE regress_webhook_owner;
DROP TABLE privowned.post;
RESET ROLE;
SELECT count(*) AS sources FROM webhook.source WHERE rel::text LIKE 'privowned.%';

-- Superuser-only settings.
SET ROLE regress_webhook_app;
SHOW webhook.timeout;
SHOW webhook.blocked_networks;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Clean up.
SELECT webhook.untrack('privchat.reaction');
SELECT webhook.untrack('privchat.message');
DROP SCHEMA privchat CASCADE;
DROP SCHEMA privowned;
REVOKE ALL ON SCHEMA webhook FROM regress_webhook_app, regress_webhook_reader;
REVOKE ALL ON FUNCTION webhook.emit(text, jsonb, text), webhook.request_update(text, text)
    FROM regress_webhook_app;
REVOKE ALL ON webhook.endpoint FROM regress_webhook_reader;
DROP ROLE regress_webhook_app;
DROP ROLE regress_webhook_owner;
DROP ROLE regress_webhook_reader;
