package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
)

// startProjects makes the project runtime, finds the containers that run
// on this host, and starts the activity loop.
func (s *server) startProjects(ctx context.Context) error {
	r, err := newRuntime(ctx, s.cfg, s.log)
	if err != nil {
		return err
	}
	r.pm.OnFailure = s.metrics.podmanFailed
	if err := r.rediscover(ctx); err != nil {
		return fmt.Errorf("agent: %w (is podman installed and working?)", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.proj, s.selfStop, s.cancel = r, make(chan struct{}), cancel
	go r.loop(lctx, s.cfg, s.selfStop)
	return nil
}

// stopProjects ends the activity loop and, where the agent is the host,
// stops the projects.
func (s *server) stopProjects() {
	if s.proj == nil {
		return
	}
	s.cancel()
	if s.cfg.StopProjectsOnExit {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.proj.StopAll(ctx, "host stopped"); err != nil {
			s.log.Error("stop projects on exit", "err", err)
		}
	}
	if err := s.proj.saveState(); err != nil {
		s.log.Error("save agent state", "err", err)
	}
}

// idleStopHost carries out the host's idle policy.
func (s *server) idleStopHost() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.proj.selfStopHost(ctx, s.cfg); err != nil {
		s.log.Error("host idle stop", "err", err)
	}
}

func (s *server) projectRoutes(mux *http.ServeMux) {
	p := agentapi.ProjectsPath
	mux.HandleFunc("GET "+p, s.reply(s.handleListProjects))
	mux.HandleFunc("GET "+p+"/{id}", s.reply(s.handleProject))
	mux.HandleFunc("PUT "+p+"/{id}", s.reply(withBody(s.handleCreateProject)))
	mux.HandleFunc("DELETE "+p+"/{id}", s.reply(s.handleDeleteProject))
	mux.HandleFunc("POST "+p+"/{id}/start", s.reply(withBody(s.handleStartProject)))
	mux.HandleFunc("POST "+p+"/{id}/stop", s.reply(s.handleStopProject))
	mux.HandleFunc("POST "+p+"/{id}/halt", s.reply(s.handleHaltProject))
	mux.HandleFunc("PUT "+p+"/{id}/quota", s.reply(withBody(s.handleQuota)))
	mux.HandleFunc("GET "+p+"/{id}/snapshots", s.reply(s.handleSnapshots))
	mux.HandleFunc("POST "+p+"/{id}/snapshots", s.reply(withBody(s.handleCreateSnapshot)))
	mux.HandleFunc("DELETE "+p+"/{id}/snapshots/{name}", s.reply(s.handleDeleteSnapshot))
	mux.HandleFunc("POST "+p+"/{id}/restore", s.reply(withBody(s.handleRestore)))
	mux.HandleFunc("POST "+p+"/{id}/exec", s.handleExec)
	mux.HandleFunc("GET "+agentapi.ResourcesPath, s.reply(s.handleResources))
	mux.HandleFunc("GET "+agentapi.IdlePath, s.reply(s.handleIdle))
	mux.HandleFunc("PUT "+agentapi.IdlePath, s.reply(withBody(s.handleSetIdle)))
	mux.HandleFunc("GET "+agentapi.ImagesPath, s.reply(s.handleImage))
	mux.HandleFunc("POST "+agentapi.BuildPath, s.handleBuild)
	mux.HandleFunc("POST "+agentapi.PullPath, s.reply(withBody(s.handlePull)))
}

// reply turns a handler that returns its answer into an http.HandlerFunc,
// so each handler says only what it does: an error is written by writeErr,
// a nil answer is 204 No Content, anything else is 200 with it as JSON.
func (s *server) reply(h func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		switch {
		case err != nil:
			s.writeErr(w, r, err)
		case v == nil:
			w.WriteHeader(http.StatusNoContent)
		default:
			writeJSON(w, http.StatusOK, v)
		}
	}
}

// withBody decodes the request body (see decode) into a Req for h.
func withBody[Req any](h func(r *http.Request, req Req) (any, error)) func(*http.Request) (any, error) {
	return func(r *http.Request) (any, error) {
		var req Req
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h(r, req)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

var codeStatus = map[string]int{
	agentapi.CodeInvalid:     http.StatusBadRequest,
	agentapi.CodeNotFound:    http.StatusNotFound,
	agentapi.CodeConflict:    http.StatusConflict,
	agentapi.CodeNotRunning:  http.StatusConflict,
	agentapi.CodeUnsupported: http.StatusNotImplemented,
	agentapi.CodeInternal:    http.StatusInternalServerError,
	agentapi.CodeNoRoom:      http.StatusConflict,
	// The agent's backup configuration, not the caller's, needs renewal.
	agentapi.CodeBackupConfig: http.StatusUnauthorized,
	agentapi.CodeUnavailable:  http.StatusServiceUnavailable,
	agentapi.CodeUnreachable:  http.StatusBadGateway,
}

func (s *server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	code := codeOf(err)
	if code == agentapi.CodeInternal {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, codeStatus[code], agentapi.ErrorReply{Error: err.Error(), Code: code})
}

// decode reads a JSON body strictly: unknown fields are a client bug
// worth reporting rather than silently ignoring.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return perr(agentapi.CodeInvalid, "bad request body: %v", err)
	}
	return nil
}

func (s *server) handleListProjects(r *http.Request) (any, error) {
	return s.proj.List(r.Context())
}

func (s *server) handleProject(r *http.Request) (any, error) {
	return s.proj.Status(r.Context(), r.PathValue("id"))
}

func (s *server) handleCreateProject(r *http.Request, req agentapi.CreateProjectRequest) (any, error) {
	return s.proj.Create(r.Context(), r.PathValue("id"), req)
}

func (s *server) handleDeleteProject(r *http.Request) (any, error) {
	return nil, s.proj.Delete(r.Context(), r.PathValue("id"))
}

func (s *server) handleStartProject(r *http.Request, req agentapi.StartProjectRequest) (any, error) {
	return s.proj.Start(r.Context(), r.PathValue("id"), req)
}

func (s *server) handleStopProject(r *http.Request) (any, error) {
	return s.proj.Stop(r.Context(), r.PathValue("id"), "")
}

func (s *server) handleHaltProject(r *http.Request) (any, error) {
	return s.proj.Halt(r.Context(), r.PathValue("id"))
}

func (s *server) handleQuota(r *http.Request, req agentapi.QuotaRequest) (any, error) {
	return nil, s.proj.SetQuota(r.Context(), r.PathValue("id"), req.DiskBytes)
}

func (s *server) handleSnapshots(r *http.Request) (any, error) {
	return s.proj.Snapshots(r.Context(), r.PathValue("id"))
}

func (s *server) handleCreateSnapshot(r *http.Request, req agentapi.SnapshotRequest) (any, error) {
	return s.proj.Snapshot(r.Context(), r.PathValue("id"), req.Name)
}

func (s *server) handleDeleteSnapshot(r *http.Request) (any, error) {
	return nil, s.proj.DeleteSnapshot(r.Context(), r.PathValue("id"), r.PathValue("name"))
}

func (s *server) handleRestore(r *http.Request, req agentapi.RestoreRequest) (any, error) {
	return s.proj.Restore(r.Context(), r.PathValue("id"), req)
}

func (s *server) handleResources(r *http.Request) (any, error) {
	return s.resources(r.Context(), r.URL.Query().Get("known") == "1")
}

func (s *server) handleIdle(r *http.Request) (any, error) {
	return s.withStopper(s.proj.Idle()), nil
}

// withStopper says in p who stops this host when it is idle.
func (s *server) withStopper(p agentapi.IdlePolicy) agentapi.IdlePolicy {
	p.StoppedBy = s.cfg.IdleStopper()
	return p
}

func (s *server) handleSetIdle(r *http.Request, req agentapi.IdlePolicy) (any, error) {
	// Without a way to stop the host the agent would only exit and be
	// restarted, forever.
	if req.StopAfterSeconds > 0 && s.cfg.IdleStopper() == "" {
		return nil, perr(agentapi.CodeUnsupported,
			"this host cannot be stopped when idle (an adopted machine, or a cloud that cannot stop VMs); idle projects are still stopped after their --idle-timeout")
	}
	p, err := s.proj.SetIdle(req)
	if err != nil {
		return nil, err
	}
	s.log.Info("host idle policy set", "stop_after_seconds", p.StopAfterSeconds)
	return s.withStopper(p), nil
}

func (s *server) handleImage(r *http.Request) (any, error) {
	name := r.URL.Query().Get("name")
	if err := CheckImage(name); err != nil {
		return nil, err
	}
	ok, err := s.proj.pm.ImageExists(r.Context(), name)
	if err != nil {
		return nil, err
	}
	return agentapi.ImageInfo{Name: name, Present: ok}, nil
}

func (s *server) handlePull(r *http.Request, req agentapi.PullImageRequest) (any, error) {
	if err := CheckImage(req.Name); err != nil {
		return nil, err
	}
	if err := s.proj.ensureImage(r.Context(), req.Name, true); err != nil {
		return nil, err
	}
	return agentapi.ImageInfo{Name: req.Name, Present: true}, nil
}

// handleBuild builds an image and streams the tools' output as JSON lines;
// the last line says how it ended.
func (s *server) handleBuild(w http.ResponseWriter, r *http.Request) {
	var req agentapi.BuildImageRequest
	if err := decode(r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	if err := CheckImage(req.Name); err != nil {
		s.writeErr(w, r, err)
		return
	}
	spec, err := podman.BuildSpec{Suite: req.Suite, Variant: req.Variant, Include: req.Include, Mirror: req.Mirror}.Normalize()
	if err != nil {
		s.writeErr(w, r, perr(agentapi.CodeInvalid, "%v", err))
		return
	}
	// An air-gapped host builds from a root filesystem put in its image
	// cache, without a bootstrap tool.
	if req.Rebuild || !podman.IsCached(s.cfg.ImageCacheDir, spec) {
		if _, err := podman.Bootstrapper(); err != nil {
			s.writeErr(w, r, perr(agentapi.CodeUnsupported, "%v", err))
			return
		}
		if err := podman.CheckMirror(r.Context(), spec); err != nil {
			s.writeErr(w, r, perr(agentapi.CodeInvalid, "%v", err))
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	lw := &lineWriter{w: w}
	s.log.Info("building image", "name", req.Name, "suite", spec.Suite, "include", strings.Join(spec.Include, ","))
	cached, err := s.proj.pm.BuildImage(r.Context(), req.Name, spec, s.cfg.ImageCacheDir, req.Rebuild, lw)
	lw.flushPartial()
	end := agentapi.BuildEvent{Done: true, Cached: cached}
	if err != nil {
		end.Error = err.Error()
		s.log.Error("image build failed", "name", req.Name, "err", err)
	}
	lw.emit(end)
}

// lineWriter turns tool output into BuildEvent lines.
type lineWriter struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	buf bytes.Buffer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		i := bytes.IndexByte(l.buf.Bytes(), '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(l.buf.Next(i+1)), "\r\n")
		l.emitLocked(agentapi.BuildEvent{Line: line})
	}
	return len(p), nil
}

func (l *lineWriter) flushPartial() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.emitLocked(agentapi.BuildEvent{Line: l.buf.String()})
		l.buf.Reset()
	}
}

func (l *lineWriter) emit(ev agentapi.BuildEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.emitLocked(ev)
}

func (l *lineWriter) emitLocked(ev agentapi.BuildEvent) {
	b, _ := json.Marshal(ev)
	l.w.Write(append(b, '\n')) //nolint:errcheck // a client that left stops reading; the build goes on
	if f, ok := l.w.(http.Flusher); ok {
		f.Flush()
	}
}
