-- telemed authentication and audit (docs/api.md, "Authentication"): users, login sessions, login throttling
-- and the access log. Same SQL in both storage modes.

CREATE TABLE users (
    user_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username      text NOT NULL UNIQUE
                  CONSTRAINT users_username_form CHECK (username ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    display_name  text NOT NULL DEFAULT '',
    password_hash text NOT NULL,  -- scrypt$n$r$p$salt$hash (cloud/api/auth/passwords.py), never the password
    roles         text[] NOT NULL DEFAULT '{}'
                  CONSTRAINT users_roles_known CHECK (roles <@ ARRAY['admin', 'county_doctor', 'expert', 'on_call']),
    site_id       text REFERENCES sites,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled      boolean NOT NULL DEFAULT false,
    -- A county doctor works at one county hospital; scoping (cloud/api/auth/scoping.py) relies on it.
    CONSTRAINT users_county_doctor_site CHECK (NOT 'county_doctor' = ANY (roles) OR site_id IS NOT NULL)
);

-- Opaque bearer tokens, stored as their SHA-256 only (cloud/api/auth/tokens.py).
CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY CONSTRAINT sessions_token_hash_sha256 CHECK (length(token_hash) = 32),
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    user_agent  text,
    ip          text
);
CREATE INDEX sessions_user_live ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Failed logins per (username, client address): the sliding window of cloud/api/auth/ratelimit.py.
-- Shared by every API replica; a success clears the pair, old rows are pruned at each attempt.
CREATE TABLE login_attempts (
    username text NOT NULL,
    ip       text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_pair ON login_attempts (username, ip, at DESC);

-- Every read and write of patient data (cloud/api/audit.py). The users issue hash-chains these rows.
CREATE TABLE access_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    user_id    uuid REFERENCES users,
    username   text NOT NULL,
    event      text NOT NULL,
    patient_id text,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip         text
);
CREATE INDEX access_log_patient ON access_log (patient_id, at DESC);
CREATE INDEX access_log_user ON access_log (user_id, at DESC);
