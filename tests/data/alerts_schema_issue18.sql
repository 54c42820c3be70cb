CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    rule_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    route TEXT NOT NULL DEFAULT '',
    labels_json TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '',
    value REAL, threshold REAL, eta_s REAL,
    started_ns INTEGER, updated_ns INTEGER NOT NULL, resolved_ns INTEGER,
    acked_by TEXT, acked_ns INTEGER, ack_comment TEXT,
    seq INTEGER NOT NULL DEFAULT 0,
    episode INTEGER NOT NULL DEFAULT 0,
    notified INTEGER NOT NULL DEFAULT 0,
    receivers_json TEXT NOT NULL DEFAULT '[]',
    last_notified_ns INTEGER,
    suppressed_by TEXT,
    case_key TEXT, case_id TEXT,
    measured_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    from_state TEXT NOT NULL, to_state TEXT NOT NULL, severity TEXT NOT NULL,
    value REAL, threshold REAL,
    event TEXT, seq INTEGER, receivers_json TEXT NOT NULL DEFAULT '[]', note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS history_fp ON history(fingerprint, id);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY,
    matchers_json TEXT NOT NULL,
    starts_ns INTEGER NOT NULL, ends_ns INTEGER NOT NULL,
    comment TEXT NOT NULL, created_by TEXT NOT NULL, created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    receiver TEXT NOT NULL, case_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL, case_id TEXT,
    opened_ns INTEGER, closed_ns INTEGER,
    PRIMARY KEY (receiver, case_key)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL, seq INTEGER NOT NULL, receiver TEXT NOT NULL,
    event TEXT NOT NULL, case_key TEXT,
    body_json TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL, next_attempt_ns INTEGER NOT NULL,
    delivered_ns INTEGER, failed_ns INTEGER, last_error TEXT,
    UNIQUE (fingerprint, seq, receiver)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(fingerprint, receiver, id)
    WHERE delivered_ns IS NULL AND failed_ns IS NULL;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_ns, id)
    WHERE delivered_ns IS NULL AND failed_ns IS NULL;
CREATE INDEX IF NOT EXISTS outbox_queue ON outbox(COALESCE(case_key, fingerprint), receiver, id)
    WHERE delivered_ns IS NULL AND failed_ns IS NULL;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL, user TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT ''
);
PRAGMA user_version = 1;
