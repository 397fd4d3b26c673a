package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// TunnelStore keeps what the control plane knows of reverse-connected
// hosts' credentials: their SHA-256 only.
type TunnelStore interface {
	// PutHostTunnel records (or replaces) the sum of host's credential.
	PutHostTunnel(ctx context.Context, hostID, sum string, at time.Time) error
	// HostTunnelSum returns it, or an errkind.NotFound error for a host
	// that is not reverse-connected.
	HostTunnelSum(ctx context.Context, hostID string) (string, error)
}

func (s *SQLStore) PutHostTunnel(ctx context.Context, hostID, sum string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO host_tunnels (host_id, credential_sha256, created_at) VALUES ($1,$2,$3)
 ON CONFLICT (host_id) DO UPDATE SET credential_sha256 = excluded.credential_sha256, created_at = excluded.created_at`, hostID, sum, ms(at))
	return s.err("put host tunnel", err)
}

func (s *SQLStore) HostTunnelSum(ctx context.Context, hostID string) (string, error) {
	var sum string
	err := s.db.QueryRowContext(ctx, `SELECT credential_sha256 FROM host_tunnels WHERE host_id = $1`, hostID).Scan(&sum)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errkind.Errorf(errkind.NotFound, "host %s has no tunnel", hostID)
	}
	return sum, s.err("host tunnel", err)
}
