-- telemed tele-consultations (docs/consultations.md): the consultation and its workflow state, attachments,
-- offers to matched experts, the event timeline, experts' signing keys and the signed reports.
-- Same SQL in both storage modes.

-- The province (GB/T 2260 code) a site lies in: matching offers a consultation to experts licensed there.
ALTER TABLE sites ADD COLUMN region text CONSTRAINT sites_region_form CHECK (region ~ '^[1-8][0-9]0000$');

CREATE TABLE consultations (
    consultation_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id          text NOT NULL REFERENCES patients,
    site_id             text NOT NULL REFERENCES sites,
    requester_id        uuid NOT NULL REFERENCES users,
    -- cloud/consult/workflow.py State
    state               text NOT NULL DEFAULT 'draft' CONSTRAINT consultations_state CHECK (state IN (
                            'draft', 'requested', 'offered', 'accepted', 'in_session', 'report_submitted',
                            'closed', 'cancelled', 'escalated')),
    urgency             text NOT NULL DEFAULT 'routine'
                        CONSTRAINT consultations_urgency CHECK (urgency IN ('routine', 'urgent', 'emergency')),
    specialty           text REFERENCES specialties,  -- required from submission on (checked by the service)
    icd10_codes         text[] NOT NULL DEFAULT '{}',  -- working diagnoses, from the bundled list
    language            text NOT NULL DEFAULT 'zh' CONSTRAINT consultations_language CHECK (language ~ '^[a-z]{2,3}$'),
    chief_complaint     text NOT NULL DEFAULT ''
                        CONSTRAINT consultations_complaint_len CHECK (length(chief_complaint) <= 2000),
    clinical_notes      text NOT NULL DEFAULT ''
                        CONSTRAINT consultations_notes_len CHECK (length(clinical_notes) <= 20000),
    question            text NOT NULL DEFAULT ''
                        CONSTRAINT consultations_question_len CHECK (length(question) <= 4000),
    triage              jsonb,  -- the triage suggestion at submission
    vitals_snapshot     jsonb,  -- latest value of each kind at submission
    news2               jsonb,  -- NEWS2 at submission (proto.news2)
    assigned_expert_id  uuid REFERENCES users,
    rating              smallint CONSTRAINT consultations_rating CHECK (rating BETWEEN 1 AND 5),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    requested_at        timestamptz,
    accepted_at         timestamptz,
    session_started_at  timestamptz,
    report_submitted_at timestamptz,
    closed_at           timestamptz,
    cancelled_at        timestamptz,
    escalated_at        timestamptz,
    breached_at         timestamptz,  -- the overall SLA ran out before the report (told to admins once)
    CONSTRAINT consultations_assigned CHECK (state NOT IN ('accepted', 'in_session', 'report_submitted', 'closed')
                                             OR assigned_expert_id IS NOT NULL)
);
CREATE INDEX consultations_site ON consultations (site_id, created_at DESC);
CREATE INDEX consultations_patient ON consultations (patient_id, created_at DESC);
CREATE INDEX consultations_assigned ON consultations (assigned_expert_id, state) WHERE assigned_expert_id IS NOT NULL;
-- The SLA scheduler scans the running ones.
CREATE INDEX consultations_running ON consultations (state)
    WHERE state IN ('requested', 'offered', 'accepted', 'in_session', 'escalated');

-- DICOM studies attached to a consultation (Study Instance UIDs of dicom_manifests / dicom_instances).
CREATE TABLE consultation_attachments (
    consultation_id    uuid NOT NULL REFERENCES consultations ON DELETE CASCADE,
    study_instance_uid text NOT NULL CONSTRAINT consultation_attachments_uid
                       CHECK (study_instance_uid ~ '^[0-9]+(\.[0-9]+)*$' AND length(study_instance_uid) <= 64),
    added_at           timestamptz NOT NULL,
    added_by           uuid NOT NULL REFERENCES users,
    PRIMARY KEY (consultation_id, study_instance_uid)
);

-- Offers of a consultation to matched experts, one at a time, with the score explanation at offer time
-- (the learned re-ranking trains on `factors` and the outcome).
CREATE TABLE consultation_offers (
    offer_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq             bigint GENERATED ALWAYS AS IDENTITY,  -- the order offers were made in
    consultation_id uuid NOT NULL REFERENCES consultations ON DELETE CASCADE,
    expert_id       uuid NOT NULL REFERENCES users,
    rank            smallint,
    score           double precision,
    method          text NOT NULL CONSTRAINT consultation_offers_method CHECK (method IN ('rules', 'learned', 'admin')),
    factors         jsonb NOT NULL DEFAULT '{}'::jsonb,
    explanation     jsonb NOT NULL DEFAULT '{}'::jsonb,
    offered_at      timestamptz NOT NULL,
    reminded_at     timestamptz,
    responded_at    timestamptz,
    outcome         text NOT NULL DEFAULT 'pending' CONSTRAINT consultation_offers_outcome
                    CHECK (outcome IN ('pending', 'accepted', 'declined', 'expired', 'withdrawn')),
    decline_reason  text CONSTRAINT consultation_offers_reason_len CHECK (length(decline_reason) <= 1000)
);
-- Matching never offers a consultation twice to one expert; an admin may (the expert is back on duty).
CREATE INDEX consultation_offers_consultation ON consultation_offers (consultation_id, expert_id);
CREATE UNIQUE INDEX consultation_offers_one_pending ON consultation_offers (consultation_id) WHERE outcome = 'pending';
CREATE INDEX consultation_offers_expert ON consultation_offers (expert_id, outcome);

-- The timeline: every transition and notable event (reminders, attachments, matches), oldest first.
CREATE TABLE consultation_events (
    event_id        bigserial PRIMARY KEY,
    consultation_id uuid NOT NULL REFERENCES consultations ON DELETE CASCADE,
    at              timestamptz NOT NULL,
    event           text NOT NULL,
    from_state      text,
    to_state        text,
    actor_id        uuid REFERENCES users,
    actor_role      text NOT NULL
                    CONSTRAINT consultation_events_role CHECK (actor_role IN ('requester', 'expert', 'admin', 'system')),
    detail          jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX consultation_events_timeline ON consultation_events (consultation_id, event_id);

-- Experts' Ed25519 report-signing keys: the public key in the clear, the private key AES-256-GCM encrypted
-- under the identity key ring (cloud/identity/crypto.py, associated data binds it to this row). Retired keys
-- stay so that old reports still verify.
CREATE TABLE expert_signing_keys (
    fingerprint     text PRIMARY KEY CONSTRAINT expert_signing_keys_fingerprint CHECK (fingerprint ~ '^[0-9a-f]{16}$'),
    expert_id       uuid NOT NULL REFERENCES users,
    public_key      text NOT NULL,  -- base64 of the raw 32-byte key (proto.keys.public_to_text)
    private_key_enc bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    retired_at      timestamptz
);
CREATE UNIQUE INDEX expert_signing_keys_current ON expert_signing_keys (expert_id) WHERE retired_at IS NULL;

-- The signed report: `body` is what was signed (as canonical JSON), `signature` base64 Ed25519.
CREATE TABLE consultation_reports (
    consultation_id uuid PRIMARY KEY REFERENCES consultations,
    expert_id       uuid NOT NULL REFERENCES users,
    body            jsonb NOT NULL,
    signature       text NOT NULL,
    key_fingerprint text NOT NULL REFERENCES expert_signing_keys,
    signed_at       timestamptz NOT NULL
);
