-- Backups of projects with restic (issue 11). backup_config is the one
-- repository location of the deployment (credentials as JSON); each
-- project gets its own repository under it with its own password in
-- backup_keys, which `project delete --purge` destroys. backups records
-- what was backed up (for freshness without asking hosts); stale copies
-- are projects' copies left on hosts they were restored away from. Times
-- are Unix milliseconds.
CREATE TABLE backup_config (
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  repository   TEXT NOT NULL,
  credentials  TEXT NOT NULL DEFAULT '{}',
  version      BIGINT NOT NULL,
  updated_at   BIGINT NOT NULL
);

CREATE TABLE backup_keys (
  project_id  TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
  password    TEXT NOT NULL,
  created_at  BIGINT NOT NULL
);

CREATE TABLE backups (
  project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  id           TEXT NOT NULL,
  short_id     TEXT NOT NULL,
  host_id      TEXT NOT NULL,
  taken_at     BIGINT NOT NULL,
  files        BIGINT NOT NULL DEFAULT 0,
  bytes        BIGINT NOT NULL DEFAULT 0,
  bytes_added  BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (project_id, id)
);
CREATE INDEX backups_taken ON backups (project_id, taken_at);

CREATE TABLE project_stale_copies (
  project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  host_id     TEXT NOT NULL,
  marked_at   BIGINT NOT NULL,
  PRIMARY KEY (project_id, host_id)
);
