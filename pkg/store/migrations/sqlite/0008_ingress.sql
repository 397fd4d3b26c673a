-- Who may reach a project through its host's ingress besides its owner,
-- the SSH public keys of accounts, and what each host's agent last said
-- about its ingress (where it listens, the certificate and host key that
-- clients pin). Times are Unix milliseconds.
CREATE TABLE project_collaborators (
  project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  account_id  TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  PRIMARY KEY (project_id, account_id)
);
CREATE INDEX project_collaborators_account ON project_collaborators (account_id);

CREATE TABLE account_ssh_keys (
  account_id   TEXT NOT NULL,
  fingerprint  TEXT NOT NULL,
  public_key   TEXT NOT NULL,
  comment      TEXT NOT NULL DEFAULT '',
  created_at   BIGINT NOT NULL,
  PRIMARY KEY (account_id, fingerprint)
);

CREATE TABLE host_ingress (
  host_id          TEXT PRIMARY KEY REFERENCES project_hosts(id),
  https_addr       TEXT NOT NULL DEFAULT '',
  ssh_addr         TEXT NOT NULL DEFAULT '',
  tls_cert_sha256  TEXT NOT NULL DEFAULT '',
  ssh_host_key     TEXT NOT NULL DEFAULT '',
  error            TEXT NOT NULL DEFAULT '',
  pushed_at        BIGINT NOT NULL
);
