-- telemed core schema, TimescaleDB mode: vitals as a hypertable with compression and retention policies, and
-- vitals_1m / vitals_1h as continuous aggregates with the same columns as the plain mode's rollup tables
-- (bucket, patient_id, kind_id, min, max, sum, count; avg = sum / count). TimescaleDB 2.x API.

CREATE TABLE vitals (
    time       timestamptz NOT NULL,
    patient_id text NOT NULL,
    kind_id    smallint NOT NULL,
    value      double precision NOT NULL,
    device_id  text,
    quality    integer NOT NULL DEFAULT 0,
    edge_id    text NOT NULL
);

-- Daily chunks, like the plain mode's daily partitions; create_hypertable adds the (time DESC) index.
SELECT create_hypertable('vitals', 'time', chunk_time_interval => INTERVAL '1 day', if_not_exists => true);
CREATE INDEX vitals_patient_kind_time ON vitals (patient_id, kind_id, time DESC);

-- Compressed chunks are segmented per series, so a patient's chart reads one segment per kind.
ALTER TABLE vitals SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'patient_id, kind_id',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('vitals', compress_after => INTERVAL '2 days', if_not_exists => true);

-- Retention: telemed_maintain_vitals below re-applies retention.raw_days from the settings at every migrate.
SELECT add_retention_policy('vitals', drop_after => INTERVAL '30 days', if_not_exists => true);

-- WITH NO DATA: a continuous aggregate created WITH DATA cannot run inside the migration's transaction.
-- materialized_only = false: reads combine the materialisation with the newest raw rows (real-time aggregation).
CREATE MATERIALIZED VIEW vitals_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', time) AS bucket,
       patient_id,
       kind_id,
       min(value) AS min,
       max(value) AS max,
       sum(value) AS sum,
       count(*) AS count
  FROM vitals
 GROUP BY time_bucket(INTERVAL '1 minute', time), patient_id, kind_id
WITH NO DATA;

CREATE MATERIALIZED VIEW vitals_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       patient_id,
       kind_id,
       min(value) AS min,
       max(value) AS max,
       sum(value) AS sum,
       count(*) AS count
  FROM vitals
 GROUP BY time_bucket(INTERVAL '1 hour', time), patient_id, kind_id
WITH NO DATA;

-- Refresh windows stay inside the raw retention, or a refresh over dropped chunks would empty the aggregate.
SELECT add_continuous_aggregate_policy('vitals_1m', start_offset => INTERVAL '7 days',
                                       end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute',
                                       if_not_exists => true);
SELECT add_continuous_aggregate_policy('vitals_1h', start_offset => INTERVAL '7 days',
                                       end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes',
                                       if_not_exists => true);
CREATE INDEX vitals_1m_series ON vitals_1m (patient_id, kind_id, bucket DESC);
CREATE INDEX vitals_1h_series ON vitals_1h (patient_id, kind_id, bucket DESC);

-- Same signature as the plain mode's: TimescaleDB creates chunks on demand and drops them by its retention
-- policy, so upkeep here is making that policy match the configured retention (p_ahead_days is not needed).
CREATE FUNCTION telemed_maintain_vitals(p_now timestamptz, p_ahead_days integer, p_retention_days integer)
RETURNS TABLE (action text, partition_name text)
LANGUAGE plpgsql AS $$
DECLARE
    v_want interval := make_interval(days => p_retention_days);
    v_have interval;
BEGIN
    IF p_ahead_days < 0 OR p_retention_days < 1 THEN
        RAISE EXCEPTION 'ahead days must be >= 0 and retention days >= 1 (got %, %)', p_ahead_days, p_retention_days;
    END IF;
    SELECT (config ->> 'drop_after')::interval INTO v_have
      FROM timescaledb_information.jobs
     WHERE proc_name = 'policy_retention' AND hypertable_name = 'vitals';
    IF v_have IS DISTINCT FROM v_want THEN
        PERFORM remove_retention_policy('vitals', if_exists => true);
        PERFORM add_retention_policy('vitals', drop_after => v_want);
        action := 'retention_policy'; partition_name := v_want::text;
        RETURN NEXT;
    END IF;
END
$$;
