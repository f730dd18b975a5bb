-- lsrecd schema, part 1: tables and indexes.
-- Times are INTEGER milliseconds since the Unix epoch (UTC). Booleans are INTEGER 0/1.
-- Tables are not STRICT so that older sqlite3 shells (before 3.37) can still read the file.

-- Every channel lsrecd has seen in the account or has in its configuration.
-- A row is written only when something observable changes, so idle polls cost no writes;
-- the time of the last poll is in daemon_state ('last_poll_at').
CREATE TABLE channels (
    channel_id         TEXT PRIMARY KEY NOT NULL,
    label              TEXT,
    channel_name       TEXT,
    channel_status     TEXT,
    is_recording       INTEGER NOT NULL DEFAULT 0 CHECK (is_recording IN (0, 1)),
    immediate_on_air   INTEGER NOT NULL DEFAULT 0 CHECK (immediate_on_air IN (0, 1)),
    record_upload_type TEXT,
    record_format      TEXT,
    created_time       INTEGER,
    configured         INTEGER NOT NULL DEFAULT 0 CHECK (configured IN (0, 1)),
    observed_at        INTEGER,
    missing_since      INTEGER
);

CREATE INDEX channels_by_label ON channels (label);

-- Every recording file Live Station reported, keyed by its recordId. Never deleted by lsrecd.
CREATE TABLE records (
    record_id           INTEGER PRIMARY KEY NOT NULL,
    channel_id          TEXT NOT NULL,
    record_type         TEXT NOT NULL,
    status              TEXT NOT NULL,
    record_seq          INTEGER,
    stream_seq          INTEGER,
    record_begin_time   INTEGER,
    created_time        INTEGER,
    should_delete_time  INTEGER,
    duration            INTEGER,
    file_name           TEXT,
    upload_path         TEXT,
    object_storage_url  TEXT,
    resolution          TEXT,
    video_bitrate       INTEGER,
    video_frame_rate    REAL,
    audio_bitrate       INTEGER,
    audio_codec         TEXT,
    first_seen_at       INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    status_changed_at   INTEGER NOT NULL,
    last_polled_at      INTEGER,
    expiry_warned_at    INTEGER,
    upload_requested_at INTEGER
);

CREATE INDEX records_by_channel ON records (channel_id, record_begin_time);
CREATE INDEX records_by_status ON records (status);
CREATE INDEX records_by_should_delete_time ON records (should_delete_time)
    WHERE object_storage_url IS NULL;

-- One row per status a record was seen in: its first sighting and every real change.
CREATE TABLE record_status_history (
    id              INTEGER PRIMARY KEY,
    record_id       INTEGER NOT NULL REFERENCES records (record_id) ON DELETE CASCADE,
    status          TEXT NOT NULL,
    previous_status TEXT,
    observed_at     INTEGER NOT NULL
);

CREATE INDEX record_status_history_by_record ON record_status_history (record_id, observed_at);

-- One row per schedule firing. Every occurrence ends in exactly one final state.
CREATE TABLE occurrences (
    id          INTEGER PRIMARY KEY,
    schedule    TEXT NOT NULL,
    channel_id  TEXT NOT NULL,
    fire_time   INTEGER NOT NULL,
    window_end  INTEGER,
    state       TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (state IN ('PENDING', 'ARMED', 'RECORDING', 'COMPLETED', 'MISSED', 'FAILED')),
    detail      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (schedule, fire_time)
);

CREATE INDEX occurrences_by_state ON occurrences (state, fire_time);

-- A final state is final, whoever writes to the file.
CREATE TRIGGER occurrences_final_state_is_kept
BEFORE UPDATE OF state ON occurrences
WHEN OLD.state IN ('COMPLETED', 'MISSED', 'FAILED') AND NEW.state <> OLD.state
BEGIN
    SELECT RAISE(ABORT, 'occurrence is in a final state');
END;

-- Every startRecord / stopRecord / upload attempt. The PENDING row is committed before the call.
CREATE TABLE actions (
    id            INTEGER PRIMARY KEY,
    channel_id    TEXT NOT NULL,
    operation     TEXT NOT NULL CHECK (operation IN ('startRecord', 'stopRecord', 'upload')),
    trigger       TEXT NOT NULL,
    attempt       INTEGER NOT NULL DEFAULT 1,
    state         TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (state IN ('PENDING', 'SUCCEEDED', 'FAILED', 'AMBIGUOUS', 'RECONCILED')),
    http_status   INTEGER,
    error_code    TEXT,
    error_message TEXT,
    requested_at  INTEGER NOT NULL,
    finished_at   INTEGER,
    occurrence_id INTEGER REFERENCES occurrences (id) ON DELETE SET NULL,
    record_ids    TEXT
);

CREATE INDEX actions_by_state ON actions (state, requested_at);
CREATE INDEX actions_by_channel ON actions (channel_id, requested_at);
CREATE INDEX actions_by_occurrence ON actions (occurrence_id) WHERE occurrence_id IS NOT NULL;

-- What an operator would want to be told.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    channel_id TEXT,
    record_id  INTEGER,
    message    TEXT NOT NULL
);

CREATE INDEX events_by_at ON events (at);
CREATE INDEX events_by_kind ON events (kind, at);

-- Recordings lsrecd itself started (the only ones it will ever stop).
CREATE TABLE owned_recordings (
    id              INTEGER PRIMARY KEY,
    channel_id      TEXT NOT NULL,
    trigger         TEXT NOT NULL,
    start_action_id INTEGER REFERENCES actions (id) ON DELETE SET NULL,
    started_at      INTEGER NOT NULL,
    stopped_at      INTEGER,
    stop_reason     TEXT
);

CREATE UNIQUE INDEX owned_recordings_one_open_per_channel
    ON owned_recordings (channel_id) WHERE stopped_at IS NULL;
CREATE INDEX owned_recordings_by_start_action ON owned_recordings (start_action_id)
    WHERE start_action_id IS NOT NULL;

-- `lsrecd start CHANNEL` claims, until `lsrecd stop CHANNEL` or max_duration.
CREATE TABLE manual_claims (
    id           INTEGER PRIMARY KEY,
    channel_id   TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    ended_at     INTEGER,
    end_reason   TEXT
);

CREATE UNIQUE INDEX manual_claims_one_open_per_channel
    ON manual_claims (channel_id) WHERE ended_at IS NULL;

-- Small key/value facts: the poll heartbeat and settings the views read.
CREATE TABLE daemon_state (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
