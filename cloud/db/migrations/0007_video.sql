-- telemed video consultation recording (docs/video.md, "Recording"): the patient's consent to record a
-- consultation's call, and the recordings the site's edge made while it stood. Same SQL in both storage modes.

-- A consent is recorded by a county doctor of the requesting side (who asked the patient) and stands until
-- someone revokes it; a later consent is a new row, so the history of who agreed and who withdrew stays.
CREATE TABLE video_consents (
    consent_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    consultation_id uuid NOT NULL REFERENCES consultations ON DELETE CASCADE,
    granted_by      uuid NOT NULL REFERENCES users,
    granted_at      timestamptz NOT NULL DEFAULT now(),
    -- Who gave consent: the patient, or a guardian/relative for a patient who cannot (cloud/video/consent.py).
    given_by        text NOT NULL DEFAULT 'patient'
                    CONSTRAINT video_consents_given_by CHECK (given_by IN ('patient', 'guardian')),
    note            text NOT NULL DEFAULT '' CONSTRAINT video_consents_note_len CHECK (length(note) <= 500),
    revoked_by      uuid REFERENCES users,
    revoked_at      timestamptz,
    CONSTRAINT video_consents_revocation CHECK ((revoked_at IS NULL) = (revoked_by IS NULL)),
    CONSTRAINT video_consents_order CHECK (revoked_at IS NULL OR revoked_at >= granted_at)
);
-- At most one standing consent per consultation.
CREATE UNIQUE INDEX video_consents_standing ON video_consents (consultation_id) WHERE revoked_at IS NULL;
CREATE INDEX video_consents_consultation ON video_consents (consultation_id, granted_at DESC);

-- A recording made by the site's edge, stored encrypted: `storage_key` names the blob in the recording
-- store (the edge's sealed container, AES-256-GCM under a per-recording key), `wrapped_key` is that key
-- encrypted under the identity key ring (cloud/identity/crypto.py layout, bound to this row).
CREATE TABLE video_recordings (
    recording_id    uuid PRIMARY KEY,
    consultation_id uuid NOT NULL REFERENCES consultations ON DELETE CASCADE,
    edge_id         text NOT NULL REFERENCES edges,
    consent_id      uuid REFERENCES video_consents,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz NOT NULL,
    media_type      text NOT NULL,
    bytes           bigint NOT NULL CONSTRAINT video_recordings_bytes CHECK (bytes >= 0),  -- stored (sealed) size
    media_bytes     bigint NOT NULL CONSTRAINT video_recordings_media_bytes CHECK (media_bytes >= 0),  -- plaintext
    sha256          text NOT NULL CONSTRAINT video_recordings_sha256 CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    wrapped_key     bytea NOT NULL,
    storage_key     text NOT NULL,
    status          text NOT NULL DEFAULT 'stored' CONSTRAINT video_recordings_status CHECK (status IN ('stored', 'purged')),
    received_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT video_recordings_order CHECK (ended_at >= started_at)
);
CREATE INDEX video_recordings_consultation ON video_recordings (consultation_id, started_at);
