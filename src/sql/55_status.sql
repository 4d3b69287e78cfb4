--
-- Health: per endpoint from the delivery table, per worker from shared memory.
-- Neither view is granted to PUBLIC (90_privileges.sql).
--

-- Each figure reads a range of the endpoint's entries in the delivery_endpoint
-- indexes: its backlog and failures, the attempts of its last hour (by
-- attempted_at, when a result was recorded; a delivery keeps only its last
-- attempt's duration and error), its newest success, its newest error.
CREATE VIEW webhook.endpoint_status AS
SELECT e.id, e.name, e.state,
       -- why nothing is delivered, as it is now: a reason stored while the
       -- database was not served may have been made good since (a worker
       -- clears those as it starts), or the database no longer served
       CASE WHEN s.why IS NULL OR pg_catalog.strpos(e.state_reason, s.why) > 0 THEN e.state_reason
            ELSE pg_catalog.concat_ws('; ', e.state_reason, s.why) END AS state_reason,
       c.pending, c.failed, h.delivered_1h, h.failed_1h,
       ok.delivered_at AS last_delivered_at,
       err.last_error, err.attempted_at AS last_error_at,
       h.p50_ms_1h, h.p99_ms_1h
  FROM webhook.endpoint e
  CROSS JOIN (SELECT webhook._served() AS why) s
  CROSS JOIN LATERAL (
    SELECT pg_catalog.count(*) FILTER (WHERE d.status = 'pending') AS pending,
           pg_catalog.count(*) FILTER (WHERE d.status = 'failed') AS failed
      FROM webhook.delivery d
     WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'failed')) c
  CROSS JOIN LATERAL (
    SELECT pg_catalog.count(*) FILTER (WHERE d.status = 'delivered') AS delivered_1h,
           pg_catalog.count(*) FILTER (WHERE d.status = 'failed') AS failed_1h,
           pg_catalog.percentile_cont(0.5) WITHIN GROUP
               (ORDER BY pg_catalog.date_part('epoch', d.duration) * 1000) AS p50_ms_1h,
           pg_catalog.percentile_cont(0.99) WITHIN GROUP
               (ORDER BY pg_catalog.date_part('epoch', d.duration) * 1000) AS p99_ms_1h
      FROM webhook.delivery d
     WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'delivered', 'failed')
       AND d.attempted_at > pg_catalog.now() - interval '1 hour') h
  LEFT JOIN LATERAL (
    SELECT d.delivered_at
      FROM webhook.delivery d
     WHERE d.endpoint_id = e.id AND d.status = 'delivered' AND d.attempted_at IS NOT NULL
     ORDER BY d.attempted_at DESC
     LIMIT 1) ok ON true
  LEFT JOIN LATERAL (
    SELECT d.last_error, d.attempted_at
      FROM webhook.delivery d
     WHERE d.endpoint_id = e.id AND d.last_error IS NOT NULL AND d.attempted_at IS NOT NULL
     ORDER BY d.attempted_at DESC
     LIMIT 1) err ON true;

COMMENT ON VIEW webhook.endpoint_status IS 'per endpoint: state, backlog, failures, the last hour''s deliveries and durations';

CREATE FUNCTION webhook._worker_status(OUT database name, OUT pid integer, OUT started_at timestamptz,
    OUT in_flight integer, OUT deliveries bigint, OUT failures bigint, OUT retries bigint,
    OUT last_round_at timestamptz)
    RETURNS SETOF record
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'webhook_worker_status';

CREATE VIEW webhook.worker_status AS
SELECT * FROM webhook._worker_status();

COMMENT ON VIEW webhook.worker_status IS 'per running delivery worker, any database: counters since it started';
