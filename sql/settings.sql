--
-- settings: the webhook.* settings, their defaults, and the checks on their values
--
\set SHOW_CONTEXT never

SELECT name, setting, unit, context, vartype, min_val, max_val, boot_val
  FROM pg_settings WHERE name LIKE 'webhook.%' ORDER BY name;

SHOW webhook.database_name;
SHOW webhook.max_concurrency;
SHOW webhook.endpoint_concurrency;
SHOW webhook.timeout;
SHOW webhook.retry_schedule;
SHOW webhook.disable_after;
SHOW webhook.retention;
SHOW webhook.batch_size;
SHOW webhook.max_response_size;
SHOW webhook.blocked_networks;

-- None can be changed in a session: they are read by the worker.
SET webhook.timeout = '5s';
\echo :LAST_ERROR_SQLSTATE
SET webhook.retry_schedule = '1s';
\echo :LAST_ERROR_SQLSTATE
SET webhook.database_name = 'other';
\echo :LAST_ERROR_SQLSTATE

-- ALTER SYSTEM checks the value before writing it.
-- retry_schedule: a comma-separated list of durations
ALTER SYSTEM SET webhook.retry_schedule = 'bogus';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.retry_schedule = '5s,5x';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.retry_schedule = '-5s';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.retry_schedule = '5 seconds';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.retry_schedule = '100000d';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.retry_schedule = ' 500ms, 1.5s ,2min,5m, 1h,1d ';
ALTER SYSTEM SET webhook.retry_schedule = '';
ALTER SYSTEM RESET webhook.retry_schedule;
-- blocked_networks: a comma-separated list of CIDR blocks
ALTER SYSTEM SET webhook.blocked_networks = '10.0.0.0/33';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.blocked_networks = 'fd00::/129';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.blocked_networks = '10.0.0.0/8, localhost';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.blocked_networks = '10.0.0.0/';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.blocked_networks = '300.1.2.3';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.blocked_networks = '10.0.0.0/8, 192.168.0.0/16, 127.0.0.1, ::1, fd00::/8';
ALTER SYSTEM RESET webhook.blocked_networks;
-- numbers and units are checked against their bounds
ALTER SYSTEM SET webhook.timeout = 0;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.timeout = '2h';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.max_concurrency = 0;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.endpoint_concurrency = 5000;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.batch_size = 'many';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.max_response_size = '1GB';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.retention = '-1';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.disable_after = '1 fortnight';
\echo :LAST_ERROR_SQLSTATE

-- The prefix is reserved: no other webhook.* name can be set.
SET webhook.nonexistent = 1;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhook.nonexistent = 1;
\echo :LAST_ERROR_SQLSTATE
SHOW webhook.nonexistent;
\echo :LAST_ERROR_SQLSTATE

-- Nothing was left in postgresql.auto.conf.
SELECT count(*) FROM pg_file_settings WHERE name LIKE 'webhook.%';
