package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// TunnelStore keeps what the control plane knows of reverse-connected
// hosts' credentials: their SHA-256 only.
type TunnelStore interface {
	// PutHostTunnel records (or replaces) the sum of host's credential.
	PutHostTunnel(ctx context.Context, hostID, sum string, at time.Time) error
	// HostTunnelSum returns it, or an errkind.NotFound error for a host
	// that is not reverse-connected.
	HostTunnelSum(ctx context.Context, hostID string) (string, error)
	// TunnelConnected records that holder (a `serve` process) holds
	// host's tunnel since at; TunnelClosed clears that, unless another
	// holder took the tunnel over meanwhile.
	TunnelConnected(ctx context.Context, hostID, holder string, at time.Time) error
	TunnelClosed(ctx context.Context, hostID, holder string) error
	// HostTunnel says who holds host's tunnel, or an errkind.NotFound
	// error for a host that is not reverse-connected.
	HostTunnel(ctx context.Context, hostID string) (model.HostTunnel, error)
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

func (s *SQLStore) TunnelConnected(ctx context.Context, hostID, holder string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE host_tunnels SET holder = $2, connected_at = $3 WHERE host_id = $1`, hostID, holder, ms(at))
	return s.err("record tunnel holder", err)
}

func (s *SQLStore) TunnelClosed(ctx context.Context, hostID, holder string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE host_tunnels SET holder = '', connected_at = NULL WHERE host_id = $1 AND holder = $2`, hostID, holder)
	return s.err("clear tunnel holder", err)
}

func (s *SQLStore) HostTunnel(ctx context.Context, hostID string) (model.HostTunnel, error) {
	var t model.HostTunnel
	var at sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT holder, connected_at FROM host_tunnels WHERE host_id = $1`, hostID).Scan(&t.Holder, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return t, errkind.Errorf(errkind.NotFound, "host %s has no tunnel", hostID)
	}
	t.ConnectedAt = nullMS(at)
	return t, s.err("host tunnel", err)
}
