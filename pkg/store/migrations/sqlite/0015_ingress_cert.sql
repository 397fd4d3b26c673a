-- The CA-issued certificate a host's HTTPS ingress serves (as its agent
-- last reported it; empty issuer: its self-signed one), and the control
-- plane's last attempt to get one over ACME (cert_error empty: it worked).
-- cert_error and cert_tried_at are written only by that attempt, not by an
-- access-list push.
ALTER TABLE host_ingress ADD COLUMN cert_issuer TEXT NOT NULL DEFAULT '';
ALTER TABLE host_ingress ADD COLUMN cert_name TEXT NOT NULL DEFAULT '';
ALTER TABLE host_ingress ADD COLUMN cert_not_before BIGINT;
ALTER TABLE host_ingress ADD COLUMN cert_not_after BIGINT;
ALTER TABLE host_ingress ADD COLUMN cert_error TEXT NOT NULL DEFAULT '';
ALTER TABLE host_ingress ADD COLUMN cert_tried_at BIGINT;
