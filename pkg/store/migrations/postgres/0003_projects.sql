-- Projects on hosts: a user's home directory plus a container. Times are
-- Unix milliseconds; a deleted project keeps its row (deleted_at) until it
-- is purged.
CREATE TABLE projects (
  id              TEXT PRIMARY KEY,
  title           TEXT NOT NULL DEFAULT '',
  owner           TEXT NOT NULL,
  host_id         TEXT NOT NULL REFERENCES project_hosts(id),
  image           TEXT NOT NULL,
  memory_bytes    BIGINT NOT NULL DEFAULT 0,
  cpus            DOUBLE PRECISION NOT NULL DEFAULT 0,
  pids_limit      INTEGER NOT NULL DEFAULT 0,
  disk_bytes      BIGINT NOT NULL DEFAULT 0,
  idle_timeout_s  BIGINT NOT NULL DEFAULT 0,
  state           TEXT NOT NULL,
  last_activity   BIGINT,
  last_action     TEXT NOT NULL DEFAULT '',
  last_error      TEXT NOT NULL DEFAULT '',
  created_at      BIGINT NOT NULL,
  updated_at      BIGINT NOT NULL,
  deleted_at      BIGINT
);
CREATE INDEX projects_host ON projects (host_id);
CREATE INDEX projects_owner ON projects (owner);

-- A host's own idle stop, as last set by `cocalc-hosts idle-stop`; the
-- agent keeps its copy and acts on it, this one is for display and for
-- setting it again on a host that comes back.
CREATE TABLE host_idle_policies (
  host_id        TEXT PRIMARY KEY REFERENCES project_hosts(id),
  stop_after_s   BIGINT NOT NULL,
  updated_at     BIGINT NOT NULL
);
