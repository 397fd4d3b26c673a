package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
)

// Routes of the transfer API (see agentapi/transfer.go). The control plane
// drives a move step by step; each step here is idempotent, and nothing
// outside the pool's transfer area changes before a commit.
func (s *server) transferRoutes(mux *http.ServeMux) {
	p := agentapi.ProjectsPath + "/{id}/transfer"
	mux.HandleFunc("GET "+p, s.reply(s.handleTransferVolumes))
	mux.HandleFunc("POST "+p+"/snapshot", s.reply(withBody(s.handleTransferSnapshot)))
	mux.HandleFunc("POST "+p+"/send", s.handleSend)
	mux.HandleFunc("POST "+p+"/receive", s.reply(s.handleReceive))
	mux.HandleFunc("POST "+p+"/expect", s.reply(withBody(s.handleExpect)))
	mux.HandleFunc("POST "+p+"/push", s.handlePush)
	mux.HandleFunc("POST "+p+"/commit", s.reply(withBody(s.handleCommit)))
	mux.HandleFunc("DELETE "+p, s.reply(s.handleDropTransfer))
	mux.HandleFunc("DELETE "+p+"/{name}", s.reply(s.handleDropTransferVolume))
	mux.HandleFunc("POST "+agentapi.ProjectsPath+"/{id}/freeze", s.reply(withBody(s.handleFreeze)))
}

func apiVolume(v storage.Volume) agentapi.TransferVolume {
	return agentapi.TransferVolume{Name: v.Name, Identity: v.Identity, CreatedAt: v.CreatedAt.Format(time.RFC3339),
		Transfer: v.Transfer, Staged: v.Staged}
}

func (s *server) handleTransferVolumes(r *http.Request) (any, error) {
	id := r.PathValue("id")
	st := s.proj.st
	ok, err := st.Exists(id)
	if err != nil {
		return nil, err
	}
	vols, err := st.Volumes(r.Context(), id)
	if err != nil {
		return nil, err
	}
	out := agentapi.TransferVolumes{Kind: st.Capabilities().Kind, Exists: ok, Volumes: []agentapi.TransferVolume{}}
	for _, v := range vols {
		out.Volumes = append(out.Volumes, apiVolume(v))
	}
	return out, nil
}

func (s *server) handleTransferSnapshot(r *http.Request, req agentapi.TransferSnapshotRequest) (any, error) {
	v, err := s.proj.st.TransferSnapshot(r.Context(), r.PathValue("id"), req.Tag)
	if err != nil {
		return nil, err
	}
	return apiVolume(v), nil
}

// lazyWriter sends the 200 header with the first byte, so an error found
// before the stream begins is still answered as an error reply.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "application/octet-stream")
		l.w.Header().Set("Trailer", agentapi.SendErrorTrailer)
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

// handleSend streams one volume. An error after the stream began goes
// into the trailer (the receiving side also notices a cut stream).
func (s *server) handleSend(w http.ResponseWriter, r *http.Request) {
	var req agentapi.SendRequest
	if err := decode(r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	id := r.PathValue("id")
	lw := &lazyWriter{w: w}
	var err error
	switch req.Method {
	case agentapi.TransferBtrfs:
		_, err = s.proj.st.Send(r.Context(), id, storage.Step{Name: req.Name, Parent: req.Parent}, lw)
	case agentapi.TransferTar:
		_, err = s.proj.st.SendTar(r.Context(), id, req.Name, lw)
	default:
		err = perr(agentapi.CodeInvalid, "transfer method %q is not %q or %q", req.Method, agentapi.TransferBtrfs, agentapi.TransferTar)
	}
	switch {
	case err == nil && !lw.started:
		lw.Write(nil) //nolint:errcheck // an empty stream is still a stream
	case err != nil && !lw.started:
		s.writeErr(w, r, err)
	case err != nil:
		s.log.Error("send failed", "project", id, "volume", req.Name, "err", err)
		w.Header().Set(agentapi.SendErrorTrailer, err.Error())
	}
}

func (s *server) handleReceive(r *http.Request) (any, error) {
	id := r.PathValue("id")
	// A direct stream of the project still arriving (its network cut,
	// the move relayed now) is superseded.
	if err := s.direct.end(r.Context(), id); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	var n int64
	var err error
	switch q.Get("method") {
	case agentapi.TransferBtrfs:
		n, err = s.proj.st.Receive(r.Context(), id, storage.Volume{Name: q.Get("name"), Identity: q.Get("identity")}, r.Body)
	case agentapi.TransferTar:
		n, err = s.proj.st.ReceiveTar(r.Context(), id, r.Body)
	default:
		err = perr(agentapi.CodeInvalid, "transfer method %q is not %q or %q", q.Get("method"), agentapi.TransferBtrfs, agentapi.TransferTar)
	}
	// Whatever the sender still has is of no use now.
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20)) //nolint:errcheck
	if err != nil {
		return nil, err
	}
	return agentapi.TransferResult{Bytes: n}, nil
}

// handleCommit makes what was received the project. A project whose
// container runs here is live and is never replaced.
func (s *server) handleCommit(r *http.Request, req agentapi.CommitTransferRequest) (any, error) {
	id := r.PathValue("id")
	if err := storage.CheckID(id); err != nil {
		return nil, err
	}
	defer s.proj.lock(id)()
	if err := s.notRunning(r.Context(), id); err != nil {
		return nil, err
	}
	return nil, s.proj.st.Commit(r.Context(), id, storage.CommitRequest{Home: req.Home, Snapshots: req.Snapshots, QuotaBytes: req.QuotaBytes})
}

func (s *server) notRunning(ctx context.Context, id string) error {
	// What the agent knows never misses a container that runs here (only
	// the agent starts them): podman is asked only when it may (a move's
	// commit is downtime, and a podman command most of a second of it).
	s.proj.mu.Lock()
	_, maybe := s.proj.running[id]
	known := s.proj.running != nil
	s.proj.mu.Unlock()
	if known && !maybe {
		return nil
	}
	c, err := s.proj.container(ctx, id)
	if errors.Is(err, podman.ErrNotFound) {
		return nil
	}
	if err != nil && c.Name != "" && c.Labels[podman.LabelHost] != s.proj.hostID {
		// Another host's container on a podman store they share (local
		// hosts): the project runs there now, not on this host.
		return nil
	}
	if err != nil {
		return err
	}
	if c.Running() {
		return perr(agentapi.CodeConflict, "project %s runs on this host; a transfer never replaces a running project", id)
	}
	return nil
}

func (s *server) handleDropTransfer(r *http.Request) (any, error) {
	// A direct stream still arriving (its source gone, or the network
	// between them cut) ends first and removes what it half received.
	if err := s.direct.end(r.Context(), r.PathValue("id")); err != nil {
		return nil, err
	}
	return nil, s.proj.st.DropTransfer(r.Context(), r.PathValue("id"))
}

func (s *server) handleDropTransferVolume(r *http.Request) (any, error) {
	return nil, s.proj.st.DropTransferVolume(r.Context(), r.PathValue("id"), r.PathValue("name"))
}

func (s *server) handleFreeze(r *http.Request, req agentapi.FreezeRequest) (any, error) {
	id := r.PathValue("id")
	if err := storage.CheckID(id); err != nil {
		return nil, err
	}
	defer s.proj.lock(id)()
	if req.Frozen {
		if err := s.notRunning(r.Context(), id); err != nil {
			return nil, err
		}
	}
	return nil, s.proj.st.Freeze(r.Context(), id, req.Frozen)
}
