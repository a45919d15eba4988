-- telemed users, expert profiles, patient identity protection and the hash-chained audit trail
-- (docs/security.md). Same SQL in both storage modes.

-- --- users -------------------------------------------------------------------------------------------------

ALTER TABLE users
    ADD COLUMN updated_at          timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN disabled_at         timestamptz,
    ADD COLUMN password_changed_at timestamptz;

-- The controlled list of clinical specialties experts declare and consultations ask for
-- (names after the 医疗机构诊疗科目名录, the NHC list of clinical departments).
CREATE TABLE specialties (
    code    text PRIMARY KEY CONSTRAINT specialties_code_form CHECK (code ~ '^[a-z][a-z_]{1,39}$'),
    name_en text NOT NULL,
    name_zh text NOT NULL
);
INSERT INTO specialties (code, name_en, name_zh) VALUES
    ('general_practice', 'General practice', '全科医学科'),
    ('internal_medicine', 'Internal medicine', '内科'),
    ('cardiology', 'Cardiology', '心血管内科'),
    ('respiratory', 'Respiratory medicine', '呼吸内科'),
    ('gastroenterology', 'Gastroenterology', '消化内科'),
    ('neurology', 'Neurology', '神经内科'),
    ('nephrology', 'Nephrology', '肾内科'),
    ('endocrinology', 'Endocrinology', '内分泌科'),
    ('hematology', 'Hematology', '血液内科'),
    ('rheumatology', 'Rheumatology and immunology', '风湿免疫科'),
    ('infectious_disease', 'Infectious diseases', '感染科'),
    ('geriatrics', 'Geriatrics', '老年医学科'),
    ('general_surgery', 'General surgery', '普通外科'),
    ('orthopedics', 'Orthopaedics', '骨科'),
    ('neurosurgery', 'Neurosurgery', '神经外科'),
    ('cardiothoracic_surgery', 'Cardiothoracic surgery', '心胸外科'),
    ('urology', 'Urology', '泌尿外科'),
    ('obstetrics_gynecology', 'Obstetrics and gynaecology', '妇产科'),
    ('pediatrics', 'Paediatrics', '儿科'),
    ('neonatology', 'Neonatology', '新生儿科'),
    ('emergency', 'Emergency medicine', '急诊医学科'),
    ('critical_care', 'Critical care medicine', '重症医学科'),
    ('anesthesiology', 'Anaesthesiology', '麻醉科'),
    ('oncology', 'Oncology', '肿瘤科'),
    ('ophthalmology', 'Ophthalmology', '眼科'),
    ('otorhinolaryngology', 'Otorhinolaryngology', '耳鼻咽喉科'),
    ('stomatology', 'Stomatology', '口腔科'),
    ('dermatology', 'Dermatology', '皮肤科'),
    ('psychiatry', 'Psychiatry', '精神科'),
    ('rehabilitation', 'Rehabilitation medicine', '康复医学科'),
    ('radiology', 'Radiology', '放射科'),
    ('ultrasound', 'Ultrasound medicine', '超声医学科'),
    ('laboratory_medicine', 'Laboratory medicine', '医学检验科'),
    ('pathology', 'Pathology', '病理科'),
    ('traditional_chinese_medicine', 'Traditional Chinese medicine', '中医科');

-- One row per expert (users with the expert role): what matching filters and scores on.
CREATE TABLE expert_profiles (
    user_id         uuid PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    -- codes of `specialties` (checked by the trigger below: arrays cannot carry foreign keys)
    specialties     text[] NOT NULL DEFAULT '{}',
    -- ICD-10 code prefixes the expert covers: a chapter letter, a category (E11) or a subcategory (I21.0)
    icd10_prefixes  text[] NOT NULL DEFAULT '{}'
                    CONSTRAINT expert_profiles_icd10_form
                    CHECK (array_to_string(icd10_prefixes, ',') ~ '^([A-Z]([0-9]{1,2}|[0-9]{2}\.[0-9A-Z]{1,2})?(,|$))*$'),
    -- 专业技术职务: 住院医师 resident, 主治医师 attending, 副主任医师 associate chief, 主任医师 chief physician
    title           text NOT NULL
                    CONSTRAINT expert_profiles_title CHECK (title IN ('resident', 'attending', 'associate_chief', 'chief')),
    years_practice  smallint NOT NULL CONSTRAINT expert_profiles_years CHECK (years_practice BETWEEN 0 AND 70),
    -- ISO 639 codes (zh, en, yue, ...)
    languages       text[] NOT NULL DEFAULT '{zh}'
                    CONSTRAINT expert_profiles_languages_form
                    CHECK (array_to_string(languages, ',') ~ '^([a-z]{2,3}(,|$))*$'),
    -- GB/T 2260 code of the province (or autonomous region / municipality) that issued the licence
    licence_region  text NOT NULL CONSTRAINT expert_profiles_region_form CHECK (licence_region ~ '^[1-8][0-9]0000$'),
    max_concurrent  smallint NOT NULL DEFAULT 3
                    CONSTRAINT expert_profiles_max_concurrent CHECK (max_concurrent BETWEEN 1 AND 50),
    on_duty         boolean NOT NULL DEFAULT false,
    online          boolean NOT NULL DEFAULT false,
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX expert_profiles_available ON expert_profiles (user_id) WHERE on_duty AND online;
CREATE INDEX expert_profiles_specialties ON expert_profiles USING gin (specialties);

CREATE FUNCTION expert_profiles_check_specialties() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(NEW.specialties) AS s(code)
               WHERE NOT EXISTS (SELECT 1 FROM specialties WHERE specialties.code = s.code)) THEN
        RAISE EXCEPTION 'unknown specialty in %', NEW.specialties USING ERRCODE = 'check_violation',
            CONSTRAINT = 'expert_profiles_specialties_known';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER expert_profiles_check_specialties BEFORE INSERT OR UPDATE OF specialties ON expert_profiles
    FOR EACH ROW EXECUTE FUNCTION expert_profiles_check_specialties();

-- --- patient identity ----------------------------------------------------------------------------------------
-- Identifying fields are AES-256-GCM ciphertexts (cloud/identity/crypto.py: format byte, key version, 96-bit
-- nonce, ciphertext and tag; associated data binds table, column and patient id). Lookups go through keyed
-- blind indexes (HMAC-SHA256 of the normalised value). Sex and the birth year stay plain (clinical queries);
-- the full birth date is encrypted.

ALTER TABLE patients
    ADD COLUMN name_enc             bytea,
    ADD COLUMN national_id_enc      bytea,
    ADD COLUMN phone_enc            bytea,
    ADD COLUMN birth_date_enc       bytea,
    ADD COLUMN identity_key_version integer,
    ADD COLUMN national_id_bidx     bytea CONSTRAINT patients_national_id_bidx_len CHECK (length(national_id_bidx) = 32),
    ADD COLUMN phone_bidx           bytea CONSTRAINT patients_phone_bidx_len CHECK (length(phone_bidx) = 32),
    ADD COLUMN index_key_version    integer,
    -- FHIR AdministrativeGender
    ADD COLUMN sex                  text CONSTRAINT patients_sex CHECK (sex IN ('female', 'male', 'other', 'unknown')),
    ADD COLUMN birth_year           smallint CONSTRAINT patients_birth_year CHECK (birth_year BETWEEN 1880 AND 2200),
    ADD COLUMN identity_updated_at  timestamptz,
    ADD COLUMN identity_updated_by  uuid REFERENCES users,
    ADD CONSTRAINT patients_identity_keyed
        CHECK ((name_enc IS NULL AND national_id_enc IS NULL AND phone_enc IS NULL AND birth_date_enc IS NULL)
               OR identity_key_version IS NOT NULL),
    ADD CONSTRAINT patients_index_keyed
        CHECK ((national_id_bidx IS NULL AND phone_bidx IS NULL) OR index_key_version IS NOT NULL);
-- One registration per person and site (for one blind-index key version; the service checks across versions).
CREATE UNIQUE INDEX patients_national_id_lookup ON patients (site_id, national_id_bidx) WHERE national_id_bidx IS NOT NULL;
CREATE INDEX patients_phone_lookup ON patients (site_id, phone_bidx) WHERE phone_bidx IS NOT NULL;
-- Rotation finds the rows still under an older key.
CREATE INDEX patients_identity_key_version ON patients (identity_key_version) WHERE identity_key_version IS NOT NULL;
CREATE INDEX patients_index_key_version ON patients (index_key_version) WHERE index_key_version IS NOT NULL;

-- Key check values of the identity keys in use (HMAC of a fixed label, never the key): every process
-- compares its key ring with them at start, so two replicas with different key files fail loudly instead
-- of writing data the other cannot read.
CREATE TABLE identity_keys (
    purpose     text NOT NULL CONSTRAINT identity_keys_purpose CHECK (purpose IN ('data', 'index')),
    version     integer NOT NULL CONSTRAINT identity_keys_version CHECK (version > 0),
    check_value bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (purpose, version)
);

-- --- audit chain ---------------------------------------------------------------------------------------------
-- access_log becomes a hash chain (cloud/audit/chain.py): entry_hash = SHA-256(prev_hash || canonical JSON of
-- the entry). Appends are serialised by an advisory lock and take ids from the sequence under it, so ids grow
-- along the chain (a rolled-back append leaves a gap: the links, not the ids, prove that nothing is missing).
-- Rows written before this migration have no hashes; the first append seals them into the chain in id order.

ALTER TABLE access_log
    ADD COLUMN entity     text,
    ADD COLUMN entity_id  text,
    ADD COLUMN prev_hash  bytea CONSTRAINT access_log_prev_hash_len CHECK (length(prev_hash) = 32),
    ADD COLUMN entry_hash bytea CONSTRAINT access_log_entry_hash_len CHECK (length(entry_hash) = 32),
    ADD CONSTRAINT access_log_hashed_together CHECK ((prev_hash IS NULL) = (entry_hash IS NULL));
CREATE INDEX access_log_event ON access_log (event, id DESC);
CREATE INDEX access_log_entity ON access_log (entity, entity_id, id DESC) WHERE entity IS NOT NULL;
CREATE INDEX access_log_at ON access_log USING brin (at);
-- Rows still waiting to be sealed (written before this migration): normally none.
CREATE INDEX access_log_unsealed ON access_log (id) WHERE entry_hash IS NULL;

-- The last sealed entry: tail truncation (deleting the newest rows) leaves it pointing past the end.
CREATE TABLE audit_chain_head (
    singleton  boolean PRIMARY KEY DEFAULT true CONSTRAINT audit_chain_head_one CHECK (singleton),
    seq        bigint NOT NULL,
    entry_hash bytea NOT NULL CONSTRAINT audit_chain_head_hash_len CHECK (length(entry_hash) = 32),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Move the head from (old_seq, old_hash) to the new last entry, or fail if another writer moved it first (or,
-- for the first append, created it): raised as an error so the append can be committed in the same round trip.
CREATE FUNCTION audit_chain_advance(old_seq bigint, old_hash bytea, new_seq bigint, new_hash bytea)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF old_seq IS NULL THEN
        INSERT INTO audit_chain_head (seq, entry_hash) VALUES (new_seq, new_hash);
    ELSE
        UPDATE audit_chain_head SET seq = new_seq, entry_hash = new_hash, updated_at = now()
         WHERE seq = old_seq AND entry_hash = old_hash;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the audit chain head moved during an append' USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;
END $$;

-- Append-only: sealed rows never change and no row is deleted. Only sealing a pre-chain row (setting its
-- hashes, nothing else) is an allowed update. The owner can still disable this; the chain detects that.
CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.entry_hash IS NULL
       AND (NEW.id, NEW.at, NEW.user_id, NEW.username, NEW.event, NEW.patient_id, NEW.detail, NEW.ip, NEW.entity,
            NEW.entity_id)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.at, OLD.user_id, OLD.username, OLD.event, OLD.patient_id, OLD.detail, OLD.ip, OLD.entity,
            OLD.entity_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'access_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only();
