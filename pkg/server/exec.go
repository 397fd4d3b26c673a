package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// streamed is an error a stream route already told its client in its own
// way (the connection is no longer an HTTP exchange): it is logged and
// audited, not answered.
type streamed struct {
	err error
	// status is what the exchange began with (101 for an upgrade).
	status int
}

func (e *streamed) Error() string { return e.err.Error() }
func (e *streamed) Unwrap() error { return e.err }

// hijackedContext is the context of a connection taken over from the
// HTTP server (an exec session, a tunnel): it outlives the request and
// http.Server.Shutdown, so it ends when the server quits, or on cancel.
func (s *Server) hijackedContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// execProject runs a command in a project for `project exec` and
// `project shell`, over the agent's own exec protocol (see agentapi.Exec):
// the client upgrades its request to cocalc-exec/1 with the ExecRequest in
// the X-Cocalc-Exec header, then both sides exchange frames — stdin,
// stdin closed and window sizes one way, stdout, stderr and the exit code
// the other — which the server relays to and from the project's agent.
// What is wrong before the command runs (bad request, no such project,
// not yours) is an ordinary error answer; after the upgrade an error is an
// error frame carrying the same {kind, message} as an error answer.
func (s *Server) execProject(w http.ResponseWriter, r *request) error {
	req, err := agentapi.ParseExecHeaders(r.Header)
	if err != nil {
		return errkind.Wrap(errkind.Invalid, err)
	}
	if len(req.Command) == 0 {
		return errkind.Errorf(errkind.Invalid, "no command given: cocalc-hosts project exec %s -- COMMAND [ARGS...]", r.PathValue("project"))
	}
	id := r.PathValue("project")
	if _, err := s.Projects.Get(r.Context(), r.id.caller(), id); err != nil {
		return err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return errkind.New(errkind.Internal, "exec: this connection cannot be taken over")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return &streamed{fmt.Errorf("exec: %w", err), http.StatusSwitchingProtocols}
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", agentapi.ExecUpgrade)
	if err := brw.Flush(); err != nil {
		return &streamed{err, http.StatusSwitchingProtocols}
	}

	// The session lives as long as the command, the client's connection
	// and the server.
	ctx, cancel := s.hijackedContext(r.Request)
	defer cancel()
	var wmu sync.Mutex
	eio := agentapi.ExecIO{
		Stdout: agentapi.FrameWriter{Mu: &wmu, W: conn, Typ: agentapi.FrameStdout},
		Stderr: agentapi.FrameWriter{Mu: &wmu, W: conn, Typ: agentapi.FrameStderr},
	}
	stdin, stdinW := io.Pipe()
	defer stdin.Close()
	if req.Stdin {
		eio.Stdin = stdin
	}
	resize := make(chan agentapi.WindowSize, 4)
	if req.TTY {
		eio.Resize = resize
	}
	go relayInput(ctx, cancel, brw.Reader, req, stdinW, resize)

	code, err := s.Projects.Exec(ctx, r.id.caller(), id, req, eio)
	wmu.Lock()
	defer wmu.Unlock()
	if err != nil {
		b, _ := json.Marshal(wireError(err))
		agentapi.WriteFrame(conn, agentapi.FrameError, b) //nolint:errcheck // the client may be gone
		return &streamed{err, http.StatusSwitchingProtocols}
	}
	agentapi.WriteFrame(conn, agentapi.FrameExit, agentapi.ExitPayload(code)) //nolint:errcheck
	return nil
}

// relayInput reads the client's frames into the command's stdin and
// window size until the client goes away, which ends the session.
// Frames the request did not ask for (stdin without Stdin, sizes without
// TTY) are dropped: nothing reads them.
func relayInput(ctx context.Context, cancel context.CancelFunc, in *bufio.Reader, req agentapi.ExecRequest, stdin *io.PipeWriter, resize chan<- agentapi.WindowSize) {
	defer cancel()
	defer stdin.Close()
	for {
		typ, p, err := agentapi.ReadFrame(in)
		if err != nil {
			return
		}
		switch typ {
		case agentapi.FrameStdin:
			if !req.Stdin {
				continue
			}
			if _, err := stdin.Write(p); err != nil && !errors.Is(err, io.ErrClosedPipe) {
				return
			}
		case agentapi.FrameCloseStdin:
			stdin.Close()
		case agentapi.FrameResize:
			if ws, ok := agentapi.ParseResize(p); ok && req.TTY {
				select {
				case resize <- ws:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// Bodies and lines of the image build stream.
type (
	ImageBuildRequest struct {
		Name    string   `json:"name"`
		Suite   string   `json:"suite"`
		Include []string `json:"include"`
		Mirror  string   `json:"mirror"`
		Rebuild bool     `json:"rebuild"`
	}
	// BuildLine is one line of a build's answer (application/x-ndjson):
	// progress lines, then a result or an error.
	BuildLine struct {
		Progress string      `json:"progress,omitempty"`
		Result   *ImageBuilt `json:"result,omitempty"`
		Error    *WireError  `json:"error,omitempty"`
	}
	ImageBuilt struct {
		Host   model.Host `json:"host"`
		Cached bool       `json:"cached"`
	}
)

// buildImage builds an image on a host (`image build`), answering with its
// progress as it comes. What fails before the first line of progress
// (bad name, no such host, not allowed) is an ordinary error answer.
func (s *Server) buildImage(w http.ResponseWriter, r *request) error {
	var b ImageBuildRequest
	if err := r.decode(&b); err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	var mu sync.Mutex
	started := false
	send := func(l BuildLine) {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		json.NewEncoder(w).Encode(l) //nolint:errcheck // the client went away
		rc.Flush()                   //nolint:errcheck
	}
	h, cached, err := s.Projects.BuildImage(r.Context(), r.id.caller(), projects.BuildImageRequest{Host: r.PathValue("host"),
		Name: b.Name, Suite: b.Suite, Include: b.Include, Mirror: b.Mirror, Rebuild: b.Rebuild},
		func(line string) { send(BuildLine{Progress: line}) })
	mu.Lock()
	answered := started
	mu.Unlock()
	switch {
	case err != nil && !answered:
		return err
	case err != nil:
		we := wireError(err)
		send(BuildLine{Error: &we})
		return &streamed{err, http.StatusOK}
	}
	send(BuildLine{Result: &ImageBuilt{Host: h, Cached: cached}})
	return nil
}
