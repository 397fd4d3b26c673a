package model

import "time"

// APIKey identifies a caller of a cocalc-hosts server as an account. The
// key itself is shown once when it is made; only its hash is stored.
type APIKey struct {
	ID        string     `json:"id"`
	Account   string     `json:"account"`
	Name      string     `json:"name,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Usable reports whether the key may still be used at now.
func (k APIKey) Usable(now time.Time) bool {
	return k.RevokedAt == nil && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// AuditEntry is one request to a server: who made it, what, and how it
// ended. The audit log is append-only.
type AuditEntry struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Account string    `json:"account"`
	// As is the account an admin acted for (--as), if any.
	As     string `json:"as,omitempty"`
	KeyID  string `json:"key_id,omitempty"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status"`
	// Kind is the error kind of a refused or failed request.
	Kind   string `json:"kind,omitempty"`
	Remote string `json:"remote,omitempty"`
}
