package storage

// Pool returns the pool's path, for tests that look at what is on it.
func (m *Manager) Pool() string { return m.pool }
