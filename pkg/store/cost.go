package store

// CostStore holds the pricing cache and usage computed from cloud_vm_log.
type CostStore interface{}
