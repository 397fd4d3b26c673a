-- Who may see a host depends on its collaborators (store.Watch): adding or
-- removing one NOTIFYs the hosts channel with the host's id, as a change
-- of the host row does, so that the host appears in (or leaves) that
-- account's event stream at once instead of at the host's next change.
CREATE FUNCTION cocalc_notify_host_collaborators() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('cocalc_hosts', OLD.host_id);
  ELSE
    PERFORM pg_notify('cocalc_hosts', NEW.host_id);
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER host_collaborators_changed AFTER INSERT OR DELETE ON host_collaborators
  FOR EACH ROW EXECUTE FUNCTION cocalc_notify_host_collaborators();
