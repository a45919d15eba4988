-- telemed core schema, plain PostgreSQL mode: vitals in daily range partitions, rollups as tables that the
-- ingest writer maintains incrementally in its own transaction (docs/cloud-ingest.md, "Storage modes").

CREATE TABLE vitals (
    time       timestamptz NOT NULL,
    patient_id text NOT NULL,
    kind_id    smallint NOT NULL,
    value      double precision NOT NULL,
    device_id  text,
    quality    integer NOT NULL DEFAULT 0,
    edge_id    text NOT NULL
) PARTITION BY RANGE (time);

-- Catches samples whose day has no partition (a clock far off, or an edge back after a long outage), so
-- that no sample is ever refused; telemed_maintain_vitals moves them into their day's partition once it exists.
CREATE TABLE vitals_default PARTITION OF vitals DEFAULT;

-- Partitioned indexes: every partition gets its own. BRIN on time: rows arrive roughly in time order.
CREATE INDEX vitals_time_brin ON vitals USING brin (time);
CREATE INDEX vitals_patient_kind_time ON vitals (patient_id, kind_id, time DESC);

CREATE TABLE vitals_1m (
    bucket     timestamptz NOT NULL,
    patient_id text NOT NULL,
    kind_id    smallint NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    sum        double precision NOT NULL,
    count      bigint NOT NULL,
    PRIMARY KEY (patient_id, kind_id, bucket)
) WITH (fillfactor = 70);  -- room on each page, so merging into a bucket is a HOT update (no index write)

CREATE TABLE vitals_1h (LIKE vitals_1m INCLUDING ALL) WITH (fillfactor = 70);

-- The UTC day partition of vitals for p_day: vitals_pYYYYMMDD holding [p_day, p_day + 1) UTC.
-- Rows of that day already in the default partition are moved into it (ATTACH would refuse otherwise).
-- Returns whether it was created.
CREATE FUNCTION telemed_ensure_vitals_partition(p_day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := 'vitals_p' || to_char(p_day, 'YYYYMMDD');
    v_from timestamptz := p_day::timestamp AT TIME ZONE 'UTC';
    v_to   timestamptz := (p_day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    -- One creator at a time (maintenance may run in several processes); held to the end of the transaction.
    PERFORM pg_advisory_xact_lock(hashtext('telemed_vitals_partitions'));
    IF to_regclass(quote_ident(v_name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE vitals INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', v_name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM vitals_default WHERE time >= %L AND time < %L RETURNING *) '
        'INSERT INTO %I SELECT * FROM moved', v_from, v_to, v_name);
    -- ATTACH takes only SHARE UPDATE EXCLUSIVE on vitals (PostgreSQL 12+), so ingest keeps writing meanwhile.
    EXECUTE format('ALTER TABLE vitals ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', v_name, v_from, v_to);
    RETURN true;
END
$$;

-- Partition upkeep for "now" = p_now (injectable for tests): create the partitions of the two days before
-- today (UTC; late data from an edge's backlog around midnight), today and the next p_ahead_days days, and
-- of every day that has rows waiting in the default partition and is still retained; drop partitions wholly
-- older than p_retention_days before today, and expired default rows.
CREATE FUNCTION telemed_maintain_vitals(p_now timestamptz, p_ahead_days integer, p_retention_days integer)
RETURNS TABLE (action text, partition_name text)
LANGUAGE plpgsql AS $$
DECLARE
    v_today  date := (p_now AT TIME ZONE 'UTC')::date;
    v_cutoff date := v_today - p_retention_days;
    v_day    date;
    v_rel    record;
    v_rows   bigint;
BEGIN
    IF p_ahead_days < 0 OR p_retention_days < 1 THEN
        RAISE EXCEPTION 'ahead days must be >= 0 and retention days >= 1 (got %, %)', p_ahead_days, p_retention_days;
    END IF;
    -- One upkeep at a time across processes and hosts (the same lock as partition creation).
    PERFORM pg_advisory_xact_lock(hashtext('telemed_vitals_partitions'));
    FOR v_day IN
        SELECT d::date FROM generate_series(greatest(v_today - 2, v_cutoff), v_today + p_ahead_days,
                                            interval '1 day') AS d
        UNION
        SELECT DISTINCT (time AT TIME ZONE 'UTC')::date FROM vitals_default
         WHERE time >= v_cutoff::timestamp AT TIME ZONE 'UTC'
           AND time < (v_today + p_ahead_days + 1)::timestamp AT TIME ZONE 'UTC'
        ORDER BY 1
    LOOP
        IF telemed_ensure_vitals_partition(v_day) THEN
            action := 'created'; partition_name := 'vitals_p' || to_char(v_day, 'YYYYMMDD');
            RETURN NEXT;
        END IF;
    END LOOP;
    -- Dropping a partition briefly takes an exclusive lock on vitals: ingest pauses for the moment it takes.
    FOR v_rel IN
        SELECT c.relname
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'vitals'::regclass AND c.relname ~ '^vitals_p[0-9]{8}$'
           AND to_date(substr(c.relname, 9), 'YYYYMMDD') < v_cutoff
         ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', v_rel.relname);
        action := 'dropped'; partition_name := v_rel.relname;
        RETURN NEXT;
    END LOOP;
    DELETE FROM vitals_default WHERE time < v_cutoff::timestamp AT TIME ZONE 'UTC';
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows > 0 THEN
        action := 'expired_default_rows'; partition_name := v_rows::text;
        RETURN NEXT;
    END IF;
END
$$;
