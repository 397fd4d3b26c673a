-- Times are Unix milliseconds (BIGINT) on both backends so one SQL set
-- serves both. JSON is TEXT for the same reason.
CREATE TABLE accounts (
  id          TEXT PRIMARY KEY,
  admin       INTEGER NOT NULL DEFAULT 0,
  created_at  BIGINT NOT NULL
);

CREATE TABLE project_hosts (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL,
  owner         TEXT NOT NULL,
  provider      TEXT NOT NULL,
  region        TEXT NOT NULL DEFAULT '',
  zone          TEXT NOT NULL DEFAULT '',
  status        TEXT NOT NULL,
  spec          TEXT NOT NULL DEFAULT '{}',
  runtime       TEXT NOT NULL DEFAULT '{}',
  hourly_price  REAL NOT NULL DEFAULT 0,
  last_action   TEXT NOT NULL DEFAULT '',
  last_error    TEXT NOT NULL DEFAULT '',
  shared        INTEGER NOT NULL DEFAULT 0,
  missing_count INTEGER NOT NULL DEFAULT 0,
  created_at    BIGINT NOT NULL,
  updated_at    BIGINT NOT NULL,
  deleted_at    BIGINT
);
CREATE UNIQUE INDEX project_hosts_live_name ON project_hosts (name) WHERE deleted_at IS NULL;
CREATE INDEX project_hosts_provider ON project_hosts (provider);

CREATE TABLE host_collaborators (
  host_id    TEXT NOT NULL REFERENCES project_hosts(id),
  account_id TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (host_id, account_id)
);

CREATE TABLE host_jobs (
  id           TEXT PRIMARY KEY,
  host_id      TEXT NOT NULL,
  action       TEXT NOT NULL,
  payload      TEXT NOT NULL DEFAULT '{}',
  state        TEXT NOT NULL,
  attempts     INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  run_after    BIGINT NOT NULL,
  lease_owner  TEXT,
  lease_until  BIGINT,
  last_error   TEXT NOT NULL DEFAULT '',
  created_at   BIGINT NOT NULL,
  updated_at   BIGINT NOT NULL,
  finished_at  BIGINT
);
-- At most one active job per host. Enqueue relies on this index (ON
-- CONFLICT) rather than on a racy check-then-insert.
CREATE UNIQUE INDEX host_jobs_one_active ON host_jobs (host_id) WHERE state IN ('queued', 'running');
CREATE INDEX host_jobs_claim ON host_jobs (state, run_after);

CREATE TABLE cloud_vm_log (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  host_id         TEXT NOT NULL,
  job_id          TEXT NOT NULL DEFAULT '',
  ts              BIGINT NOT NULL,
  action          TEXT NOT NULL,
  status          TEXT NOT NULL,
  provider        TEXT NOT NULL,
  spec            TEXT NOT NULL DEFAULT '',
  runtime         TEXT NOT NULL DEFAULT '',
  error           TEXT NOT NULL DEFAULT '',
  pricing_version TEXT NOT NULL DEFAULT '',
  host_status     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX cloud_vm_log_host ON cloud_vm_log (host_id, id);

CREATE TRIGGER cloud_vm_log_no_update BEFORE UPDATE ON cloud_vm_log
BEGIN SELECT RAISE(ABORT, 'cloud_vm_log is append-only: UPDATE is not allowed'); END;
CREATE TRIGGER cloud_vm_log_no_delete BEFORE DELETE ON cloud_vm_log
BEGIN SELECT RAISE(ABORT, 'cloud_vm_log is append-only: DELETE is not allowed'); END;

CREATE TABLE cloud_catalog_cache (
  provider   TEXT NOT NULL,
  kind       TEXT NOT NULL,
  scope      TEXT NOT NULL,
  payload    TEXT NOT NULL,
  fetched_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (provider, kind, scope)
);

CREATE TABLE cloud_pricing_cache (
  provider        TEXT NOT NULL,
  sku             TEXT NOT NULL,
  region          TEXT NOT NULL,
  unit            TEXT NOT NULL,
  unit_price      REAL NOT NULL,
  pricing_version TEXT NOT NULL,
  fetched_at      BIGINT NOT NULL,
  expires_at      BIGINT NOT NULL,
  PRIMARY KEY (provider, sku, region)
);

CREATE TABLE cloud_vm_usage (
  host_id          TEXT NOT NULL,
  period_start     BIGINT NOT NULL,
  period_end       BIGINT NOT NULL,
  compute_hours    REAL NOT NULL DEFAULT 0,
  storage_gb_hours REAL NOT NULL DEFAULT 0,
  egress_gb        REAL NOT NULL DEFAULT 0,
  cost             REAL NOT NULL DEFAULT 0,
  source           TEXT NOT NULL,
  confidence       TEXT NOT NULL DEFAULT 'estimate',
  PRIMARY KEY (host_id, period_start, source)
);

-- Records that providers keep in our store (the sim provider's instances).
CREATE TABLE provider_state (
  provider   TEXT NOT NULL,
  key        TEXT NOT NULL,
  value      TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (provider, key)
);

-- Control-plane settings, such as this deployment's id (the label that
-- marks our VMs at every provider).
CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
