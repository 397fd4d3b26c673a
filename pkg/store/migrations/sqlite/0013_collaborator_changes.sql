-- Collaborator changes reach watchers (see the Postgres migration of this
-- number): on SQLite every commit is seen through PRAGMA data_version, so
-- there is no schema change here; this file keeps the version numbers of
-- both backends in step.
SELECT 1;
