-- lsrecd schema, part 3: typed occurrence reasons, outages, and the failure kinds added since
-- part 2.

-- Why an occurrence is in its state, as a fixed word (`fire_time`, `start_rejected`, `not_live`,
-- …; docs/database.md lists them). `detail` keeps saying it for people; decisions use `reason`.
ALTER TABLE occurrences ADD COLUMN reason TEXT;

-- One row per outage: a start (or stop) lsrecd wants that keeps failing. Opened at the first
-- failure, updated at every attempt, closed when the recording starts (or stops) or the claim
-- ends. An open startRecord row is a claim that should be recording and is not.
CREATE TABLE outages (
    id          INTEGER PRIMARY KEY,
    channel_id  TEXT NOT NULL,
    operation   TEXT NOT NULL CHECK (operation IN ('startRecord', 'stopRecord')),
    trigger     TEXT NOT NULL,
    since       INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    first_error TEXT,
    last_error  TEXT,
    updated_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    outcome     TEXT CHECK (outcome IN ('done', 'abandoned'))
);

CREATE UNIQUE INDEX outages_one_open_per_channel ON outages (channel_id) WHERE ended_at IS NULL;
CREATE INDEX outages_by_since ON outages (since);

-- Claims that should be recording and are not, oldest first.
CREATE VIEW unrecorded_claims AS
SELECT
    o.channel_id,
    c.label,
    o.trigger,
    o.since,
    strftime('%Y-%m-%dT%H:%M:%fZ', o.since / 1000.0, 'unixepoch') AS since_utc,
    CAST(((julianday('now') - 2440587.5) * 86400000.0 - o.since) / 1000 AS INTEGER)
        AS unrecorded_seconds,
    o.attempts,
    o.first_error,
    o.last_error
FROM outages o
LEFT JOIN channels c ON c.channel_id = o.channel_id
WHERE o.operation = 'startRecord' AND o.ended_at IS NULL
ORDER BY o.since;

DROP VIEW recent_failures;
DROP VIEW failures;

CREATE VIEW failures AS
SELECT
    COALESCE(a.finished_at, a.requested_at) AS at,
    strftime('%Y-%m-%dT%H:%M:%fZ', COALESCE(a.finished_at, a.requested_at) / 1000.0, 'unixepoch')
        AS at_utc,
    'action' AS source,
    a.id AS source_id,
    a.channel_id,
    a.operation || ' ' || a.state || ' (' || a.trigger || ', attempt ' || a.attempt || ')' AS what,
    trim(
        COALESCE('HTTP ' || a.http_status || ' ', '')
        || COALESCE('error ' || a.error_code || ' ', '')
        || COALESCE(a.error_message, '')
    ) AS detail
FROM actions a
WHERE a.state IN ('FAILED', 'AMBIGUOUS')
UNION ALL
SELECT
    o.updated_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', o.updated_at / 1000.0, 'unixepoch'),
    'occurrence',
    o.id,
    o.channel_id,
    o.schedule || ' ' || o.state || ' (fire time '
        || strftime('%Y-%m-%dT%H:%M:%SZ', o.fire_time / 1000.0, 'unixepoch') || ')',
    COALESCE(o.detail, '')
FROM occurrences o
WHERE o.state IN ('MISSED', 'FAILED')
UNION ALL
SELECT
    e.at,
    strftime('%Y-%m-%dT%H:%M:%fZ', e.at / 1000.0, 'unixepoch'),
    'event',
    e.id,
    e.channel_id,
    e.kind,
    e.message
FROM events e
WHERE e.kind IN ('failed', 'unrecorded', 'auth_failure', 'clock_skew', 'channel_missing',
                 'upload_failed', 'database_unavailable');

CREATE VIEW recent_failures AS
SELECT f.*
FROM failures f
WHERE f.at >= CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) - 7 * 86400000
ORDER BY f.at DESC;
