-- The boot disk's part of a usage row's storage cost (billed while the VM
-- exists, stopped too, where the machine price does not include it).
ALTER TABLE cloud_vm_usage ADD COLUMN boot_disk_cost REAL NOT NULL DEFAULT 0;
