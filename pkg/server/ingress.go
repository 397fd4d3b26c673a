package server

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/proxypath"
	"github.com/sagemathinc/cocalc-hosts/pkg/tunnel"
)

// ingressProxy is the browser's way into a project on a reverse-connected
// host: the same /<project>/port/<n>/… path as on a host reached directly,
// sent to this server, which forwards the request over the host's tunnel
// to its HTTPS ingress (checking the host's pinned certificate). The
// server checks no token: the host does, as for any request, and sets its
// session cookie, which the browser then keeps for this server's name.
// A project whose host holds no tunnel here is not found: the server is
// no open proxy to other hosts.
func (s *Server) ingressProxy(w http.ResponseWriter, r *http.Request, t proxypath.Target) {
	hostID, pin, err := s.tunneledHost(r.Context(), t.Project)
	if err != nil {
		s.log(r, identity{}, errkind.Of(err).HTTPStatus(), err)
		http.Error(w, err.Error(), errkind.Of(err).HTTPStatus())
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The path and query go as they came (the host parses the
			// path as sent); only where they go changes.
			pr.Out.URL.Scheme, pr.Out.URL.Host = "https", hostID
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: s.ingressTransport(hostID, pin),
		// 0: an answer of known length goes out in one write (headers and
		// body in one TLS record); streams (server-sent events, answers of
		// unknown length: long polls, progress) are flushed as they come,
		// which ReverseProxy does by itself for those.
		FlushInterval: 0,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log(r, identity{}, http.StatusBadGateway, err)
			http.Error(w, "the project's host did not answer through its tunnel: "+err.Error(), http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(w, r)
}

// tunneledHost is the host of project id when that host's tunnel is held
// by this server, and its HTTPS ingress's certificate pin.
func (s *Server) tunneledHost(ctx context.Context, project string) (hostID, pin string, err error) {
	notHere := errkind.Errorf(errkind.NotFound, "no project %s is reached through this server", project)
	if s.Tunnels == nil {
		return "", "", notHere
	}
	p, err := s.Store.GetProject(ctx, project)
	if errkind.Is(err, errkind.NotFound) || (err == nil && (p.HostID == "" || p.DeletedAt != nil)) {
		return "", "", notHere
	}
	if err != nil {
		return "", "", err
	}
	h, err := s.Store.GetHost(ctx, p.HostID)
	if err != nil {
		return "", "", err
	}
	if !h.Spec.Reverse {
		return "", "", notHere
	}
	if !s.Tunnels.Connected(h.ID) {
		return "", "", errkind.Errorf(errkind.Unavailable, "project %s's host %s has no tunnel to this server now (is its `join` running?)", project, h.Name)
	}
	in, err := s.Store.GetHostIngress(ctx, h.ID)
	if err != nil || in.TLSCertSHA256 == "" {
		return "", "", errkind.Errorf(errkind.Unavailable, "host %s has reported no HTTPS ingress yet", h.Name)
	}
	return h.ID, in.TLSCertSHA256, nil
}

// ingressTransport is the connection pool to a host's HTTPS ingress over
// its tunnel, one per host and certificate (a new certificate, a new pool).
func (s *Server) ingressTransport(hostID, pin string) http.RoundTripper {
	key := hostID + " " + pin
	s.ingressMu.Lock()
	defer s.ingressMu.Unlock()
	if t, ok := s.ingressPools[key]; ok {
		return t
	}
	for k, t := range s.ingressPools {
		if strings.HasPrefix(k, hostID+" ") {
			t.CloseIdleConnections()
			delete(s.ingressPools, k)
		}
	}
	t := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			raw, err := s.Tunnels.Dial(ctx, hostID, tunnel.TargetHTTPS)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(raw, agentapi.PinnedTLS(pin))
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return conn, nil
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	if s.ingressPools == nil {
		s.ingressPools = map[string]*http.Transport{}
	}
	s.ingressPools[key] = t
	return t
}
