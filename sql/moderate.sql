--
-- moderate: installing and removing Hookbox moderation hooks, and every bad
-- input with its error. (The hook calls themselves are in test/t/006_seeds.pl.)
--
\set SHOW_CONTEXT never

CREATE TABLE pub (id serial PRIMARY KEY, channel_id text, payload jsonb, who text,
    to_sender boolean NOT NULL DEFAULT false, not_bool text);
CREATE TABLE dm (id serial PRIMARY KEY, sender text, recipient text, payload jsonb);
CREATE VIEW pub_view AS SELECT * FROM pub;
SELECT id AS mod_ep FROM webhook.create_endpoint('http://127.0.0.1:9/hook', verify => false) \gset

-- A publish hook with every option, and a message hook.
SELECT webhook.moderate('pub', :mod_ep, sender => 'who', only_to_sender => 'to_sender');
SELECT webhook.moderate('dm', :mod_ep, action => 'message', sender => 'sender',
    recipient => 'recipient', recipient_exists => 'recipient IS NOT NULL');
SELECT rel, action, channel, payload, sender, recipient, recipient_exists, only_to_sender, sql
  FROM webhook.moderation ORDER BY rel::text;
SELECT tgname, tgrelid::regclass, tgtype FROM pg_trigger WHERE tgname = 'webhook_moderate' ORDER BY 2::text;

-- Errors.
SELECT webhook.moderate('pub', :mod_ep);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.moderate('pub_view', :mod_ep);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.moderate('dm', 999999);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.unmoderate('dm');
SELECT webhook.moderate('dm', :mod_ep, action => 'subscribe');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.moderate('dm', :mod_ep, payload => 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.moderate('dm', :mod_ep, action => 'message');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.moderate('dm', :mod_ep, action => 'message', recipient => 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.moderate('pub_view'::regclass::oid::regclass, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.unmoderate('pub');
SELECT webhook.moderate('pub', :mod_ep, only_to_sender => 'not_bool');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.moderate('pub', :mod_ep, channel => 'no_such_column');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.moderate('pub', :mod_ep, sender => 'who +');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.moderate('pub', :mod_ep, action => 'message', recipient => 'who', recipient_exists => 'now()');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.unmoderate('pub');
\echo :LAST_ERROR_SQLSTATE

-- The endpoint of a hook cannot be dropped while the hook uses it.
SELECT webhook.moderate('dm', :mod_ep, action => 'message', recipient => 'recipient');
SELECT webhook.drop_endpoint(:mod_ep);
\echo :LAST_ERROR_SQLSTATE

-- A disabled hook endpoint rejects rows.
SELECT webhook.disable_endpoint(:mod_ep);
INSERT INTO dm (sender, recipient, payload) VALUES ('a', 'b', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM dm;
-- A partitioned table is moderated whole: a row going to a partition, or
-- written to it directly, meets the hook of the partitioned table.
CREATE TABLE pdm (id int, sender text, recipient text, payload jsonb) PARTITION BY RANGE (id);
CREATE TABLE pdm1 PARTITION OF pdm FOR VALUES FROM (0) TO (10);
SELECT webhook.moderate('pdm', :mod_ep, action => 'message', recipient => 'recipient');
INSERT INTO pdm VALUES (1, 'a', 'b', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO pdm1 VALUES (2, 'a', 'b', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.unmoderate('pdm');
DROP TABLE pdm;

-- The trigger function refuses to run any other way than as installed.
CREATE TRIGGER wrong AFTER INSERT ON pub FOR EACH ROW EXECUTE FUNCTION webhook._moderate();
INSERT INTO pub (channel_id, payload) VALUES ('c', '{}');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER wrong ON pub;
CREATE TRIGGER orphan BEFORE INSERT ON pub FOR EACH ROW EXECUTE FUNCTION webhook._moderate();
INSERT INTO pub (channel_id, payload) VALUES ('c', '{}');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER orphan ON pub;

-- Dropping a moderated table forgets its hook; then the endpoint can go.
DROP TABLE dm;
SELECT count(*) FROM webhook.moderation;
SELECT webhook.drop_endpoint(:mod_ep);
DROP VIEW pub_view;
DROP TABLE pub;
