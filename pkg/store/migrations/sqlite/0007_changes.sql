-- Change notifications: SQLite has no NOTIFY. A store publishes its own
-- job changes and sees other connections' commits through PRAGMA
-- data_version (see store.Subscribe), so there is no schema change here;
-- this file keeps the version numbers of both backends in step.
SELECT 1;
