package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/tunnel"
)

// RelayUpgrade is the protocol a relay request upgrades to: after 101 the
// connection carries the bytes of the host's ingress port.
const RelayUpgrade = "cocalc-relay/1"

// hostTunnel takes a reverse-connected host's tunnel: the agent sends its
// host credential (never an API key) and upgrades to a WebSocket, over
// which this process reaches the host's agent and ingress.
func (s *Server) hostTunnel(w http.ResponseWriter, r *request) error {
	if s.Tunnels == nil {
		return errkind.New(errkind.Unavailable, "this server takes no host tunnels")
	}
	host, err := tunnel.Authenticate(r.Request, s.Store.HostTunnelSum)
	if err != nil {
		return err
	}
	// The tunnel lives as long as the agent's connection and the server.
	ctx, cancel := s.hijackedContext(r.Request)
	defer cancel()
	s.Log.Info("tunnel", "host", host, "remote", r.RemoteAddr, "state", "connected")
	// Recorded so that `show`, and a process that does not hold it, can
	// say where the tunnel is (best effort: the tunnel works without).
	if err := s.Store.TunnelConnected(ctx, host, s.Name, s.Now()); err != nil {
		s.Log.Warn("tunnel", "host", host, "err", err)
	}
	err = s.Tunnels.Accept(ctx, w, r.Request, host)
	s.Log.Info("tunnel", "host", host, "remote", r.RemoteAddr, "state", "closed")
	// Not with ctx: it has ended with the connection.
	if err := s.Store.TunnelClosed(context.WithoutCancel(ctx), host, s.Name); err != nil {
		s.Log.Warn("tunnel", "host", host, "err", err)
	}
	if err != nil {
		return &streamed{err, http.StatusSwitchingProtocols}
	}
	return nil
}

// relayIngress carries a client's connection to a reverse-connected
// host's HTTPS or SSH ingress (Upgrade: cocalc-relay/1). The server only
// relays bytes: TLS, connect tokens and certificates are checked on the
// host, as for a host reached directly, so the relay needs no key.
func (s *Server) relayIngress(w http.ResponseWriter, r *request) error {
	target := r.PathValue("target")
	if target != tunnel.TargetHTTPS && target != tunnel.TargetSSH {
		return errkind.Errorf(errkind.NotFound, "no relay to %q: use https or ssh", target)
	}
	if r.Header.Get("Upgrade") != RelayUpgrade {
		return errkind.Errorf(errkind.Invalid, "a relay request upgrades: send Connection: Upgrade, Upgrade: %s", RelayUpgrade)
	}
	h, err := s.Hosts.Get(r.Context(), r.PathValue("host"))
	if err != nil {
		return err
	}
	if s.Tunnels == nil || !s.Tunnels.Connected(h.ID) {
		return errkind.Errorf(errkind.Unavailable, "host %s has no tunnel to this server (is it reverse-connected, and its agent running?)", h.Name)
	}
	up, err := s.Tunnels.Dial(r.Context(), h.ID, target)
	if err != nil {
		return err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		return errkind.New(errkind.Internal, "relay: this connection cannot be taken over")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return &streamed{fmt.Errorf("relay: %w", err), http.StatusSwitchingProtocols}
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", RelayUpgrade)
	if err := brw.Flush(); err != nil {
		conn.Close()
		up.Close()
		return &streamed{err, http.StatusSwitchingProtocols}
	}
	// Bytes the client sent after its request are in brw's buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			conn.Close()
			up.Close()
			return &streamed{err, http.StatusSwitchingProtocols}
		}
	}
	tunnel.Pipe(conn, up)
	return nil
}
