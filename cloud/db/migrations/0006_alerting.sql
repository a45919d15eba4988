-- telemed cloud alerting (docs/alerting.md): incidents merged from the edges' and the cloud's alarm
-- evaluation, their timeline, on-call departments, rotations and overrides, escalation policies,
-- notification channels, contact points and the delivery log, and the alarm engines' saved state.
-- Same SQL in both storage modes.

-- --- on call ---------------------------------------------------------------------------------------------

CREATE TABLE alerting_departments (
    site_id       text NOT NULL REFERENCES sites ON DELETE CASCADE,
    department_id text NOT NULL CONSTRAINT alerting_departments_id_form CHECK (department_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name          text NOT NULL,
    name_zh       text,
    head_user_id  uuid REFERENCES users ON DELETE SET NULL,
    wards         text[] NOT NULL DEFAULT '{}',
    is_default    boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, department_id)
);
-- At most one default department per site: it covers the wards no other department names.
CREATE UNIQUE INDEX alerting_departments_default ON alerting_departments (site_id) WHERE is_default;

CREATE TABLE oncall_rotations (
    rotation_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id         text NOT NULL,
    department_id   text NOT NULL,
    tier            text NOT NULL CONSTRAINT oncall_rotations_tier CHECK (tier IN ('primary', 'secondary')),
    members         uuid[] NOT NULL CONSTRAINT oncall_rotations_members CHECK (cardinality(members) > 0),
    period          text NOT NULL DEFAULT 'daily' CONSTRAINT oncall_rotations_period CHECK (period IN ('daily', 'weekly')),
    handoff_time    time NOT NULL DEFAULT '08:00',
    handoff_weekday smallint NOT NULL DEFAULT 0 CONSTRAINT oncall_rotations_weekday CHECK (handoff_weekday BETWEEN 0 AND 6),
    anchor_date     date NOT NULL,
    timezone        text NOT NULL DEFAULT 'Asia/Shanghai',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (site_id, department_id) REFERENCES alerting_departments ON DELETE CASCADE,
    -- One rota per tier of a department.
    UNIQUE (site_id, department_id, tier)
);

CREATE TABLE oncall_overrides (
    override_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id       text NOT NULL,
    department_id text NOT NULL,
    tier          text NOT NULL CONSTRAINT oncall_overrides_tier CHECK (tier IN ('primary', 'secondary')),
    user_id       uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    reason        text,
    created_by    uuid REFERENCES users ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT oncall_overrides_window CHECK (ends_at > starts_at),
    FOREIGN KEY (site_id, department_id) REFERENCES alerting_departments ON DELETE CASCADE
);
CREATE INDEX oncall_overrides_window ON oncall_overrides (site_id, department_id, tier, ends_at);

-- The escalation policy of a site (department_id = '') or of one department; cloud/alerting/escalation.py
-- documents the JSON (steps, delays_s, repeat, ack_timeout_s, resolve_hold_s).
CREATE TABLE escalation_policies (
    site_id       text NOT NULL REFERENCES sites ON DELETE CASCADE,
    department_id text NOT NULL DEFAULT '',
    policy        jsonb NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    uuid REFERENCES users ON DELETE SET NULL,
    PRIMARY KEY (site_id, department_id)
);

-- --- incidents ---------------------------------------------------------------------------------------------

-- One row per alarm episode, keyed by the alarm's deterministic alert_id (docs/alerting-rules.md, "Merge
-- rule"): the edge's and the cloud's messages of one episode are one incident. Times named *_at that come
-- from alarm messages (raised_at, alarm_changed_at, cleared_at) are event times; the others are wall clock.
CREATE TABLE incidents (
    incident_id      uuid PRIMARY KEY,
    site_id          text NOT NULL,
    edge_id          text,
    patient_id       text NOT NULL,
    department_id    text,
    rule             text NOT NULL,
    category         text NOT NULL CONSTRAINT incidents_category CHECK (category IN ('clinical', 'technical', 'advisory')),
    priority         text NOT NULL CONSTRAINT incidents_priority CHECK (priority IN ('high', 'medium', 'low')),
    state            text NOT NULL CONSTRAINT incidents_state CHECK (state IN ('triggered', 'acknowledged', 'resolved')),
    alarm_state      text NOT NULL CONSTRAINT incidents_alarm_state CHECK (alarm_state IN ('active', 'cleared')),
    message          text NOT NULL,
    device_id        text,
    kind             text,
    value            double precision,
    news2_total      smallint,
    sources          text[] NOT NULL DEFAULT '{}',
    raised_at        timestamptz NOT NULL,
    alarm_changed_at timestamptz NOT NULL,
    cleared_at       timestamptz,
    opened_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  uuid REFERENCES users ON DELETE SET NULL,
    acknowledged_by_name text,
    ack_deadline     timestamptz,
    resolved_at      timestamptz,
    resolved_by      uuid REFERENCES users ON DELETE SET NULL,
    resolved_by_name text,
    resolution       text CONSTRAINT incidents_resolution CHECK (resolution IN ('manual', 'auto')),
    resolve_after    timestamptz,
    -- escalation progress (cloud/alerting/escalation.py Progress) and the next page, NULL when not paging
    escalation_started_at timestamptz,
    escalation_steps      integer NOT NULL DEFAULT 0,
    escalation_last_at    timestamptz,
    next_page_at          timestamptz
);
CREATE INDEX incidents_site_recent ON incidents (site_id, opened_at DESC);
CREATE INDEX incidents_patient_recent ON incidents (patient_id, opened_at DESC);
CREATE INDEX incidents_open ON incidents (site_id, state, priority) WHERE state <> 'resolved';
-- The service's sweep: pages due, acknowledgements running out, holds ending.
CREATE INDEX incidents_next_page ON incidents (next_page_at) WHERE next_page_at IS NOT NULL;
CREATE INDEX incidents_ack_deadline ON incidents (ack_deadline) WHERE state = 'acknowledged';
CREATE INDEX incidents_resolve_after ON incidents (resolve_after) WHERE state <> 'resolved' AND resolve_after IS NOT NULL;

-- Every alarm message of an incident, from either evaluator, merged on (alert_id, raised_at, state):
-- `sources` says who sent it. The alarm log keeps them all (high and medium alarms are never pruned).
CREATE TABLE incident_messages (
    incident_id uuid NOT NULL REFERENCES incidents ON DELETE CASCADE,
    raised_at   timestamptz NOT NULL,
    state       text NOT NULL,
    priority    text NOT NULL,
    sources     text[] NOT NULL,
    body        jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, raised_at, state)
);

-- The timeline: every transition (and page) of an incident, with who did it.
CREATE TABLE incident_events (
    event_id      bigserial PRIMARY KEY,
    incident_id   uuid NOT NULL REFERENCES incidents ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    event         text NOT NULL,
    from_state    text,
    to_state      text NOT NULL,
    actor_user_id uuid REFERENCES users ON DELETE SET NULL,
    actor         text NOT NULL,
    detail        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, event_id);

-- --- notifications -------------------------------------------------------------------------------------------

CREATE TABLE notification_channels (
    channel_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind       text NOT NULL CONSTRAINT notification_channels_kind CHECK (kind IN ('webhook', 'wecom', 'dingtalk', 'email')),
    name       text NOT NULL,
    site_id    text REFERENCES sites ON DELETE CASCADE,  -- NULL: usable for every site
    config     jsonb NOT NULL,  -- cloud/alerting/notify/channels.py (secrets: never returned by the API)
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- How to reach a user: a channel and the address on it (e-mail, WeCom userid, DingTalk mobile; none for webhooks).
CREATE TABLE user_contacts (
    user_id    uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    channel_id uuid NOT NULL REFERENCES notification_channels ON DELETE CASCADE,
    address    text NOT NULL DEFAULT '',
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, channel_id)
);

-- The delivery log: one row per page per channel, written with the page (so a restart resumes pending ones).
CREATE TABLE notification_deliveries (
    delivery_id     uuid PRIMARY KEY,
    incident_id     uuid NOT NULL REFERENCES incidents ON DELETE CASCADE,
    channel_id      uuid REFERENCES notification_channels ON DELETE SET NULL,
    channel_kind    text NOT NULL,
    recipient_id    uuid REFERENCES users ON DELETE SET NULL,
    address         text,
    step            integer NOT NULL,
    tier            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CONSTRAINT notification_deliveries_status CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    payload         jsonb NOT NULL,  -- the page (cloud/alerting/notify/page.py)
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz,
    finished_at     timestamptz
);
CREATE INDEX notification_deliveries_incident ON notification_deliveries (incident_id, created_at);
CREATE INDEX notification_deliveries_pending ON notification_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notification_deliveries_failed ON notification_deliveries (created_at DESC) WHERE status = 'failed';
CREATE INDEX notification_deliveries_channel ON notification_deliveries (channel_kind, created_at DESC);

-- --- evaluator state -----------------------------------------------------------------------------------------

-- Each edge's alarm engine (proto.alerting AlarmEngine.to_dict, zlib-compressed JSON), saved periodically so a
-- restarted service resumes where it stopped; `watermark` is the edge's latest sample time it had evaluated.
CREATE TABLE alerting_engine_state (
    edge_id   text PRIMARY KEY,
    site_id   text NOT NULL,
    watermark timestamptz NOT NULL,
    state     bytea NOT NULL,
    saved_at  timestamptz NOT NULL DEFAULT now()
);
