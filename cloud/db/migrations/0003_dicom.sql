-- DICOM instances received from edges by STOW-RS (cloud/dicomweb, docs/edge-dicom.md). One row per SOP
-- instance: the upload is idempotent on sop_instance_uid, and `path` names the object in the DICOM object
-- store (dicom.store_dir). Same SQL in both storage modes.

CREATE TABLE dicom_instances (
    sop_instance_uid    text PRIMARY KEY CONSTRAINT dicom_instances_uid CHECK (length(sop_instance_uid) <= 64),
    study_instance_uid  text NOT NULL,
    series_instance_uid text NOT NULL,
    sop_class_uid       text NOT NULL,
    transfer_syntax_uid text NOT NULL,
    size_bytes          bigint NOT NULL CONSTRAINT dicom_instances_size CHECK (size_bytes > 0),
    sha256              text NOT NULL CONSTRAINT dicom_instances_sha256 CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    edge_id             text NOT NULL,
    patient_id          text,  -- the manifest's pseudonymous id when the manifest arrived first, else DICOM's
    stored_at           timestamptz NOT NULL DEFAULT now(),
    path                text NOT NULL
);
CREATE INDEX dicom_instances_study ON dicom_instances (study_instance_uid, series_instance_uid);
CREATE INDEX dicom_instances_patient ON dicom_instances (patient_id, stored_at DESC);
