-- lsrecd schema, part 2: views for operators.
-- Each view keeps the INTEGER millisecond columns and adds readable UTC text (`*_utc`).
-- "Now" in a view is SQLite's clock: (julianday('now') - 2440587.5) * 86400000 is epoch ms,
-- written this way so that sqlite3 shells older than 3.38 (no unixepoch()) can read the views.

-- Records being recorded right now, and whether lsrecd started that recording.
CREATE VIEW active_recordings AS
SELECT
    r.record_id,
    r.channel_id,
    c.label,
    c.channel_name,
    r.record_type,
    r.file_name,
    r.record_begin_time,
    strftime('%Y-%m-%dT%H:%M:%fZ', r.record_begin_time / 1000.0, 'unixepoch') AS record_begin_utc,
    CAST(((julianday('now') - 2440587.5) * 86400000.0 - r.record_begin_time) / 60000 AS INTEGER)
        AS running_minutes,
    CASE WHEN o.id IS NULL THEN 0 ELSE 1 END AS owned,
    o.trigger AS owned_trigger,
    o.started_at AS owned_since,
    strftime('%Y-%m-%dT%H:%M:%fZ', o.started_at / 1000.0, 'unixepoch') AS owned_since_utc,
    r.should_delete_time,
    r.updated_at
FROM records r
LEFT JOIN channels c ON c.channel_id = r.channel_id
LEFT JOIN owned_recordings o ON o.channel_id = r.channel_id AND o.stopped_at IS NULL
WHERE r.status = 'RECORDING';

-- Every record Live Station still holds only temporarily: not uploaded, not deleted, not failed,
-- with a known deletion time. `expiring_records` narrows it to the retention warning window.
CREATE VIEW unuploaded_records AS
SELECT
    r.record_id,
    r.channel_id,
    c.label,
    r.record_type,
    r.status,
    r.file_name,
    r.record_begin_time,
    strftime('%Y-%m-%dT%H:%M:%fZ', r.record_begin_time / 1000.0, 'unixepoch') AS record_begin_utc,
    r.should_delete_time,
    strftime('%Y-%m-%dT%H:%M:%fZ', r.should_delete_time / 1000.0, 'unixepoch') AS should_delete_utc,
    r.expiry_warned_at,
    r.upload_requested_at
FROM records r
LEFT JOIN channels c ON c.channel_id = r.channel_id
WHERE r.object_storage_url IS NULL
  AND r.should_delete_time IS NOT NULL
  AND r.status NOT IN ('DELETED', 'TRANSFER_FINISH', 'PROCESSING_FAIL');

-- Records that Live Station deletes within the retention warning (daemon_state
-- 'retention.warn_before_ms', written by the daemon from retention.warn_before; default 24 h)
-- and that nobody has uploaded. Already-passed deletion times stay listed (negative hours_left)
-- until Live Station reports the record DELETED.
CREATE VIEW expiring_records AS
WITH clock (now_ms, warn_ms) AS (
    SELECT
        CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER),
        COALESCE(
            (SELECT CAST(value AS INTEGER) FROM daemon_state WHERE key = 'retention.warn_before_ms'),
            86400000)
)
SELECT
    u.record_id,
    u.channel_id,
    u.label,
    u.record_type,
    u.status,
    u.file_name,
    u.record_begin_time,
    u.record_begin_utc,
    u.should_delete_time,
    u.should_delete_utc,
    ROUND((u.should_delete_time - clock.now_ms) / 3600000.0, 1) AS hours_left,
    u.expiry_warned_at,
    u.upload_requested_at
FROM unuploaded_records u, clock
WHERE u.should_delete_time <= clock.now_ms + clock.warn_ms;

-- Everything that went wrong, in one shape: failed or ambiguous actions, MISSED/FAILED
-- occurrences and failure events. `recent_failures` narrows it to the last 7 days.
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
WHERE e.kind IN ('failed', 'auth_failure', 'clock_skew', 'channel_missing', 'upload_failed');

CREATE VIEW recent_failures AS
SELECT f.*
FROM failures f
WHERE f.at >= CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) - 7 * 86400000
ORDER BY f.at DESC;
