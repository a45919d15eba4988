-- vitals_15m, plain PostgreSQL mode: a table maintained in the ingest transaction like vitals_1m / vitals_1h
-- (cloud/ingest/store.py merges the batch's increments), filled here from vitals_1m, the long-term record.
CREATE TABLE vitals_15m (LIKE vitals_1m INCLUDING ALL) WITH (fillfactor = 70);

INSERT INTO vitals_15m (bucket, patient_id, kind_id, min, max, sum, count)
SELECT date_bin(INTERVAL '15 minutes', bucket, timestamptz '1970-01-01 00:00Z'), patient_id, kind_id,
       min(min), max(max), sum(sum), sum(count)
  FROM vitals_1m
 GROUP BY 1, 2, 3;
