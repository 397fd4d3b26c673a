-- Change notifications (see store.Subscribe): every committed insert,
-- update or delete of a host, a project, or a job's state NOTIFYs a
-- channel with the row's id. Job heartbeats change no state and stay
-- silent. Postgres delivers notifications only at commit and folds
-- duplicates within a transaction.
CREATE FUNCTION cocalc_notify_change() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify(TG_ARGV[0], OLD.id);
  ELSE
    PERFORM pg_notify(TG_ARGV[0], NEW.id);
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER project_hosts_changed AFTER INSERT OR UPDATE OR DELETE ON project_hosts
  FOR EACH ROW EXECUTE FUNCTION cocalc_notify_change('cocalc_hosts');
CREATE TRIGGER projects_changed AFTER INSERT OR UPDATE OR DELETE ON projects
  FOR EACH ROW EXECUTE FUNCTION cocalc_notify_change('cocalc_projects');
CREATE TRIGGER jobs_changed AFTER INSERT OR UPDATE OF state OR DELETE ON jobs
  FOR EACH ROW EXECUTE FUNCTION cocalc_notify_change('cocalc_jobs');
