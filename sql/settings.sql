--
-- settings: the webhook.* settings, their defaults, and the checks on their values
--
\set SHOW_CONTEXT never

SELECT name, setting, unit, context, vartype, min_val, max_val, boot_val
  FROM pg_settings WHERE name LIKE 'webhook.%' ORDER BY name;

SHOW webhook.databases;
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
SET webhook.databases = 'other';
\echo :LAST_ERROR_SQLSTATE

-- The checks on their values are in test/t/010_settings.pl: only ALTER
-- SYSTEM reaches them, and this suite changes no server's configuration.

-- The prefix is reserved: no other webhook.* name can be set.
SET webhook.nonexistent = 1;
\echo :LAST_ERROR_SQLSTATE
SHOW webhook.nonexistent;
\echo :LAST_ERROR_SQLSTATE
