-- telemed core schema, part shared by both storage modes (docs/cloud-ingest.md).
-- The mode-specific parts (vitals storage and its rollups) are 0001_core.plain.sql / 0001_core.timescale.sql,
-- applied right after this file in the same transaction.

CREATE TABLE sites (
    site_id     text PRIMARY KEY,
    name        text NOT NULL,
    name_zh     text,
    timezone    text NOT NULL DEFAULT 'Asia/Shanghai',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE edges (
    edge_id      text PRIMARY KEY,
    site_id      text NOT NULL REFERENCES sites,
    name         text,
    public_key   text NOT NULL,  -- base64 raw Ed25519 (proto.keys.public_to_text)
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_seen_at timestamptz
);
CREATE INDEX edges_site ON edges (site_id);

CREATE TABLE patients (
    patient_id  text PRIMARY KEY,  -- pseudonymous id as on the wire
    site_id     text NOT NULL REFERENCES sites,
    ward        text,
    bed         text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patients_site ON patients (site_id);

CREATE TABLE devices (
    device_id    text PRIMARY KEY,
    site_id      text REFERENCES sites,
    device_type  text,
    model        text,
    address      text,
    battery_pct  real,
    state        text,
    last_seen_at timestamptz,
    created_at   timestamptz DEFAULT now()
);

CREATE TABLE device_assignments (
    device_id     text REFERENCES devices,
    patient_id    text REFERENCES patients,
    assigned_at   timestamptz NOT NULL,
    unassigned_at timestamptz,
    PRIMARY KEY (device_id, assigned_at)
);

-- Seeded from proto.vocabulary by the migration runner at every run (idempotent upsert).
CREATE TABLE vital_kinds (
    kind_id  smallint PRIMARY KEY,  -- the vocabulary's wire id
    name     text UNIQUE NOT NULL,
    unit     text NOT NULL,         -- UCUM
    loinc    text
);

-- Exactly-once: a message id is written here in the same transaction as its rows.
CREATE TABLE ingested_messages (
    message_id  uuid PRIMARY KEY,
    edge_id     text NOT NULL,
    stream      text NOT NULL,
    sequence    bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    samples     integer NOT NULL DEFAULT 0
);
-- Only for expiring the dedupe record (telemed_expire_ingested); append-only, so BRIN suffices.
CREATE INDEX ingested_messages_received_brin ON ingested_messages USING brin (received_at);

CREATE TABLE events (
    event_id   uuid PRIMARY KEY,
    edge_id    text NOT NULL,
    event_type text NOT NULL,
    at         timestamptz NOT NULL,
    body       jsonb NOT NULL
);
CREATE INDEX events_edge_at ON events (edge_id, at DESC);

CREATE TABLE edge_alerts (
    alert_id    uuid,
    edge_id     text,
    patient_id  text,
    rule        text,
    priority    text,
    category    text,
    state       text,
    raised_at   timestamptz,
    body        jsonb,
    received_at timestamptz DEFAULT now(),
    PRIMARY KEY (alert_id, raised_at, state)
);
CREATE INDEX edge_alerts_patient ON edge_alerts (patient_id, raised_at DESC);

CREATE TABLE dicom_manifests (
    study_instance_uid text PRIMARY KEY,
    edge_id            text,
    patient_id         text,
    completed_at       timestamptz,
    body               jsonb,
    received_at        timestamptz DEFAULT now()
);
CREATE INDEX dicom_manifests_patient ON dicom_manifests (patient_id, completed_at DESC);

CREATE TABLE edge_status (
    edge_id text PRIMARY KEY,
    state   text,
    at      timestamptz,
    body    jsonb
);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    edge_id     text,
    message_id  uuid,
    reason      text NOT NULL,
    detail      text NOT NULL,
    raw         bytea NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at DESC);
CREATE INDEX dead_letters_edge ON dead_letters (edge_id, received_at DESC);

-- Forget message ids received before p_before: an edge never resends what is that old (its outbox evicts
-- first), so the dedupe record need not outlive it.
CREATE FUNCTION telemed_expire_ingested(p_before timestamptz) RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM ingested_messages WHERE received_at < p_before RETURNING 1)
    SELECT count(*) FROM gone
$$;
