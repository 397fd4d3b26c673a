-- Moves and clones of projects between hosts: where each one is, so that
-- a crashed move resumes and `project show` tells the last one. The move's
-- record is JSON (model.Move); the columns are what it is looked up by.
CREATE TABLE project_moves (
  id          TEXT PRIMARY KEY,
  project_id  TEXT NOT NULL,
  state       TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL
);
CREATE INDEX project_moves_project ON project_moves (project_id, created_at);
