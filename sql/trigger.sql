--
-- trigger: the capture trigger function refuses to be installed any other
-- way than webhook.track() installs it, and the small C helpers check their
-- arguments.
--
\set SHOW_CONTEXT never

CREATE TABLE t (id int PRIMARY KEY, channel_id text);

-- A row-level trigger.
CREATE TRIGGER bad AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION webhook._capture('1');
INSERT INTO t VALUES (1, 'c');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad ON t;

-- A statement-level trigger without a transition table.
CREATE TRIGGER bad AFTER INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('1');
INSERT INTO t VALUES (1, 'c');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad ON t;

-- No argument, a bad argument, a source that does not exist.
CREATE TRIGGER bad AFTER INSERT ON t REFERENCING NEW TABLE AS webhook_new
    FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture();
INSERT INTO t VALUES (1, 'c');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad ON t;
CREATE TRIGGER bad AFTER INSERT ON t REFERENCING NEW TABLE AS webhook_new
    FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('abc');
INSERT INTO t VALUES (1, 'c');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad ON t;
CREATE TRIGGER bad AFTER INSERT ON t REFERENCING NEW TABLE AS webhook_new
    FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('999999');
INSERT INTO t VALUES (1, 'c');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad ON t;

-- None of these inserted anything, or queued anything.
SELECT count(*) AS rows FROM t;
SELECT count(*) AS events FROM webhook.queue;

-- The helpers.
SELECT webhook._random_bytes(0);
\echo :LAST_ERROR_SQLSTATE
SELECT length(webhook._random_bytes(32)) AS random_bytes;
SELECT webhook._check_url('https://example.com:8443/a?b=c') AS normalized;
SELECT webhook._strip('{"a": null, "b": "", "c": [], "d": {}, "e": 0, "f": false, "g": "x"}') AS stripped;
SELECT webhook._strip('[null, ""]') AS not_an_object;
SELECT webhook._table_name('t'), webhook._schema_name('t'), webhook._table_name(0::oid::regclass) IS NULL AS gone;

DROP TABLE t;
