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
	r, err := newRuntime(s.cfg, s.log)
	if err != nil {
		return err
	}
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
	mux.HandleFunc("GET "+p, s.handleListProjects)
	mux.HandleFunc("GET "+p+"/{id}", s.handleProject)
	mux.HandleFunc("PUT "+p+"/{id}", s.handleCreateProject)
	mux.HandleFunc("DELETE "+p+"/{id}", s.handleDeleteProject)
	mux.HandleFunc("POST "+p+"/{id}/start", s.handleStartProject)
	mux.HandleFunc("POST "+p+"/{id}/stop", s.handleStopProject)
	mux.HandleFunc("PUT "+p+"/{id}/quota", s.handleQuota)
	mux.HandleFunc("GET "+p+"/{id}/snapshots", s.handleSnapshots)
	mux.HandleFunc("POST "+p+"/{id}/snapshots", s.handleCreateSnapshot)
	mux.HandleFunc("DELETE "+p+"/{id}/snapshots/{name}", s.handleDeleteSnapshot)
	mux.HandleFunc("POST "+p+"/{id}/restore", s.handleRestore)
	mux.HandleFunc("POST "+p+"/{id}/exec", s.handleExec)
	mux.HandleFunc("GET "+agentapi.ResourcesPath, s.handleResources)
	mux.HandleFunc("GET "+agentapi.IdlePath, s.handleIdle)
	mux.HandleFunc("PUT "+agentapi.IdlePath, s.handleSetIdle)
	mux.HandleFunc("GET "+agentapi.ImagesPath, s.handleImage)
	mux.HandleFunc("POST "+agentapi.BuildPath, s.handleBuild)
	mux.HandleFunc("POST "+agentapi.PullPath, s.handlePull)
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

func (s *server) handleListProjects(w http.ResponseWriter, r *http.Request) {
	ps, err := s.proj.List(r.Context())
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *server) handleProject(w http.ResponseWriter, r *http.Request) {
	ps, err := s.proj.Status(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *server) handleCreateProject(w http.ResponseWriter, r *http.Request) {
	var req agentapi.CreateProjectRequest
	if err := decode(r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	ps, err := s.proj.Create(r.Context(), r.PathValue("id"), req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *server) handleDeleteProject(w http.ResponseWriter, r *http.Request) {
	if err := s.proj.Delete(r.Context(), r.PathValue("id")); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleStartProject(w http.ResponseWriter, r *http.Request) {
	var req agentapi.StartProjectRequest
	if err := decode(r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	ps, err := s.proj.Start(r.Context(), r.PathValue("id"), req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *server) handleStopProject(w http.ResponseWriter, r *http.Request) {
	ps, err := s.proj.Stop(r.Context(), r.PathValue("id"), "")
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *server) handleQuota(w http.ResponseWriter, r *http.Request) {
	var req agentapi.QuotaRequest
	if err := decode(r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	if err := s.proj.SetQuota(r.Context(), r.PathValue("id"), req.DiskBytes); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleSnapshots(w http.ResponseWriter, r *http.Request) {
	ss, err := s.proj.Snapshots(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ss)
}

func (s *server) handleCreateSnapshot(w http.ResponseWriter, r *http.Request) {
	var req agentapi.SnapshotRequest
	if err := decode(r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	snap, err := s.proj.Snapshot(r.Context(), r.PathValue("id"), req.Name)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

func (s *server) handleDeleteSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.proj.DeleteSnapshot(r.Context(), r.PathValue("id"), r.PathValue("name")); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleRestore(w http.ResponseWriter, r *http.Request) {
	var req agentapi.RestoreRequest
	if err := decode(r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	res, err := s.proj.Restore(r.Context(), r.PathValue("id"), req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *server) handleResources(w http.ResponseWriter, r *http.Request) {
	st, err := storageStatus(s.cfg)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	res, err := s.proj.Resources(r.Context(), st)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *server) handleIdle(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.proj.Idle())
}

func (s *server) handleSetIdle(w http.ResponseWriter, r *http.Request) {
	var req agentapi.IdlePolicy
	if err := decode(r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	p, err := s.proj.SetIdle(req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.log.Info("host idle policy set", "stop_after_seconds", p.StopAfterSeconds)
	writeJSON(w, http.StatusOK, p)
}

func (s *server) handleImage(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if err := CheckImage(name); err != nil {
		s.writeErr(w, r, err)
		return
	}
	ok, err := s.proj.pm.ImageExists(r.Context(), name)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, agentapi.ImageInfo{Name: name, Present: ok})
}

func (s *server) handlePull(w http.ResponseWriter, r *http.Request) {
	var req agentapi.PullImageRequest
	if err := decode(r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	if err := CheckImage(req.Name); err != nil {
		s.writeErr(w, r, err)
		return
	}
	if err := s.proj.ensureImage(r.Context(), req.Name, true); err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, agentapi.ImageInfo{Name: req.Name, Present: true})
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
	if _, err := podman.Bootstrapper(); err != nil {
		s.writeErr(w, r, perr(agentapi.CodeUnsupported, "%v", err))
		return
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
