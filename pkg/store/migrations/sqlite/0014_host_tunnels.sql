-- Hosts that dial out to `serve` (create --reverse): the SHA-256 of each
-- one's tunnel credential (the credential itself is only on the host).
-- Times are Unix milliseconds.
CREATE TABLE host_tunnels (
  host_id            TEXT PRIMARY KEY REFERENCES project_hosts(id),
  credential_sha256  TEXT NOT NULL,
  created_at         BIGINT NOT NULL
);
