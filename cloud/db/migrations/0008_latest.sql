-- The newest sample of every (patient, kind): what tiles, patient lists and "latest vitals" read, one indexed
-- row each instead of one probe of the vitals index per pair (docs/cloud-ingest.md, "Latest values").
-- Same SQL in both storage modes: a plain table maintained by the ingest writer in the transaction of the COPY
-- (one upsert per pair and batch, the batch's newest sample), so a continuous aggregate is not needed here.

CREATE TABLE vitals_latest (
    patient_id text NOT NULL,
    kind_id    smallint NOT NULL,
    time       timestamptz NOT NULL,
    value      double precision NOT NULL,
    device_id  text,
    quality    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (patient_id, kind_id)
) WITH (fillfactor = 50);  -- every batch rewrites its rows: room on the page keeps the updates HOT

-- Merges the newest sample per pair of vitals rows at or after p_since into vitals_latest and returns how many
-- pairs moved forward. The backfill below, and the repair after vitals were written around the ingest writer
-- (a bulk import): `SELECT telemed_refresh_vitals_latest(now() - interval '1 day')`.
-- The rules are the writer's (cloud/ingest/store.py _LATEST): a pair only ever moves to a strictly newer
-- sample, so replays of old data never regress it and a refresh can run next to ingest; samples stamped more
-- than 5 minutes ahead of the database clock (an edge's clock far off) never become the latest value.
CREATE FUNCTION telemed_refresh_vitals_latest(p_since timestamptz) RETURNS bigint
LANGUAGE sql AS $$
    WITH merged AS (
        INSERT INTO vitals_latest AS l (patient_id, kind_id, time, value, device_id, quality)
        SELECT DISTINCT ON (patient_id, kind_id) patient_id, kind_id, time, value, device_id, quality
          FROM vitals
         WHERE time >= p_since AND time <= now() + interval '5 minutes'
         ORDER BY patient_id, kind_id, time DESC
        ON CONFLICT (patient_id, kind_id) DO UPDATE
           SET time = EXCLUDED.time, value = EXCLUDED.value, device_id = EXCLUDED.device_id,
               quality = EXCLUDED.quality
         WHERE EXCLUDED.time > l.time
        RETURNING 1)
    SELECT count(*) FROM merged
$$;

-- Readers look back at most 7 days (docs/api.md): the backfill reads the last 8, not the whole raw retention.
SELECT telemed_refresh_vitals_latest(now() - INTERVAL '8 days');

-- The 15-minute rollup (vitals_15m, same columns as vitals_1m / vitals_1h) is mode-specific:
-- 0008_latest.plain.sql (a table the ingest writer maintains) and 0008_latest.timescale.sql (a continuous
-- aggregate). A week's chart in 1000 points has 15-minute buckets: reading them whole from this rollup
-- costs 672 rows per series instead of 10,080 minute rows (docs/api.md).
