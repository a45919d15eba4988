-- vitals_15m, TimescaleDB mode: a continuous aggregate like vitals_1m / vitals_1h (0001_core.timescale.sql),
-- real-time, refreshed every 5 minutes over the last 7 days (inside the raw retention).
-- WITH NO DATA (a refresh cannot run in the migration's transaction): until the policy has run, reads are
-- computed from the raw rows. History beyond the policy's 7 days is materialised once, by hand, outside a
-- transaction: CALL refresh_continuous_aggregate('vitals_15m', NULL, now() - INTERVAL '7 days');
CREATE MATERIALIZED VIEW vitals_15m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '15 minutes', time) AS bucket,
       patient_id,
       kind_id,
       min(value) AS min,
       max(value) AS max,
       sum(value) AS sum,
       count(*) AS count
  FROM vitals
 GROUP BY time_bucket(INTERVAL '15 minutes', time), patient_id, kind_id
WITH NO DATA;

SELECT add_continuous_aggregate_policy('vitals_15m', start_offset => INTERVAL '7 days',
                                       end_offset => INTERVAL '15 minutes', schedule_interval => INTERVAL '5 minutes',
                                       if_not_exists => true);
CREATE INDEX vitals_15m_series ON vitals_15m (patient_id, kind_id, bucket DESC);
