package store

// BootStore holds boot logs of the SSH bootstrap runner and pinned SSH host keys.
type BootStore interface{}
