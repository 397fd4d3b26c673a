-- Server mode: accounts can be disabled, API keys identify callers of
-- `cocalc-hosts serve` (only a SHA-256 of each key is kept: keys are 256
-- random bits, so a fast hash is enough and the clear key is never
-- stored), and the audit log records who did what through the server,
-- append-only. Times are Unix milliseconds.
ALTER TABLE accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

CREATE TABLE api_keys (
  id          TEXT PRIMARY KEY,
  account_id  TEXT NOT NULL REFERENCES accounts(id),
  name        TEXT NOT NULL DEFAULT '',
  hash        TEXT NOT NULL UNIQUE,
  created_at  BIGINT NOT NULL,
  expires_at  BIGINT,
  revoked_at  BIGINT
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE audit_log (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  at          BIGINT NOT NULL,
  account_id  TEXT NOT NULL,
  as_account  TEXT NOT NULL DEFAULT '',
  key_id      TEXT NOT NULL DEFAULT '',
  method      TEXT NOT NULL,
  path        TEXT NOT NULL,
  status      INTEGER NOT NULL,
  kind        TEXT NOT NULL DEFAULT '',
  remote      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_account ON audit_log (account_id, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed'); END;
