-- Cost: usage rows become homogeneous segments of a host's history (one
-- state, one price, one disk size, split at UTC midnight), so that the
-- cost of any time window is an exact pro-rata sum of rows. Prices and
-- the pricing version they came from are kept on each row for audit.
ALTER TABLE cloud_vm_usage ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE cloud_vm_usage ADD COLUMN provider TEXT NOT NULL DEFAULT '';
ALTER TABLE cloud_vm_usage ADD COLUMN state TEXT NOT NULL DEFAULT '';
ALTER TABLE cloud_vm_usage ADD COLUMN hourly_price DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE cloud_vm_usage ADD COLUMN disk_gb INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cloud_vm_usage ADD COLUMN disk_price_gb_month DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE cloud_vm_usage ADD COLUMN compute_cost DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE cloud_vm_usage ADD COLUMN storage_cost DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE cloud_vm_usage ADD COLUMN pricing_version TEXT NOT NULL DEFAULT '';
ALTER TABLE cloud_vm_usage ADD COLUMN computed_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX cloud_vm_usage_window ON cloud_vm_usage (period_end, period_start);

CREATE INDEX cloud_pricing_cache_version ON cloud_pricing_cache (provider, pricing_version);
