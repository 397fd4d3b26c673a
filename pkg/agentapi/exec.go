package agentapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Exec runs a command in a project's container over a connection upgraded
// from HTTP (the agent is reached over a unix socket, possibly forwarded
// over SSH, so a plain byte stream is the simplest thing that works
// everywhere). After the upgrade both sides exchange frames:
//
//	1 byte type | 4 bytes big-endian length | payload
//
// The client sends stdin, stdin-closed and resize frames; the agent sends
// stdout, stderr, and finally one exit (or error) frame and closes.
const (
	ExecUpgrade = "cocalc-exec/1"
	// ExecHeader carries the ExecRequest (base64 of its JSON): an upgrade
	// request has no body.
	ExecHeader = "X-Cocalc-Exec"
)

// Frame types.
const (
	FrameStdin      byte = 0
	FrameStdout     byte = 1
	FrameStderr     byte = 2
	FrameExit       byte = 3 // payload: 4-byte big-endian exit code
	FrameResize     byte = 4 // payload: rows, cols as 2-byte big-endian
	FrameCloseStdin byte = 5
	FrameError      byte = 6 // payload: message; the command did not run
)

// MaxFrame bounds one frame's payload.
const MaxFrame = 1 << 20

// ExecRequest is a command to run in a project.
type ExecRequest struct {
	Command []string `json:"command"`
	// TTY runs the command on a terminal (for shells); stdout and stderr
	// then arrive together as stdout.
	TTY bool `json:"tty,omitempty"`
	// Stdin forwards the client's input; without it the command's input is
	// empty.
	Stdin   bool     `json:"stdin,omitempty"`
	Env     []string `json:"env,omitempty"`
	Workdir string   `json:"workdir,omitempty"`
	Rows    uint16   `json:"rows,omitempty"`
	Cols    uint16   `json:"cols,omitempty"`
}

// WindowSize is a terminal's size.
type WindowSize struct{ Rows, Cols uint16 }

// ExecIO are the client's ends of an exec session.
type ExecIO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Resize delivers terminal size changes (TTY sessions).
	Resize <-chan WindowSize
}

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("frame of %d bytes is larger than %d", len(payload), MaxFrame)
	}
	hdr := make([]byte, 5, 5+len(payload))
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	_, err := w.Write(append(hdr, payload...))
	return err
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes is larger than %d", n, MaxFrame)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, err
	}
	return hdr[0], buf, nil
}

// ExitPayload encodes an exit code.
func ExitPayload(code int) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(int32(code)))
	return b
}

// ResizePayload encodes a window size.
func ResizePayload(ws WindowSize) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, ws.Rows)
	binary.BigEndian.PutUint16(b[2:], ws.Cols)
	return b
}

// ParseResize decodes a window size.
func ParseResize(b []byte) (WindowSize, bool) {
	if len(b) != 4 {
		return WindowSize{}, false
	}
	return WindowSize{Rows: binary.BigEndian.Uint16(b), Cols: binary.BigEndian.Uint16(b[2:])}, true
}

// FrameWriter writes frames of one type from concurrent writers.
type FrameWriter struct {
	Mu  *sync.Mutex
	W   io.Writer
	Typ byte
}

func (f FrameWriter) Write(p []byte) (int, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	for off := 0; off < len(p); off += MaxFrame {
		end := min(off+MaxFrame, len(p))
		if err := WriteFrame(f.W, f.Typ, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// SetExecHeaders makes a request the upgrade that opens an exec session
// running req (to an agent, or to a server that relays it to one).
func SetExecHeaders(h http.Header, req ExecRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", ExecUpgrade)
	h.Set(ExecHeader, base64.StdEncoding.EncodeToString(b))
	return nil
}

// ParseExecHeaders reads the request of an exec session's upgrade. A field
// this version does not know is refused rather than ignored (a TTY or
// stdin that silently did not happen would be worse).
func ParseExecHeaders(h http.Header) (ExecRequest, error) {
	var req ExecRequest
	if !strings.EqualFold(h.Get("Upgrade"), ExecUpgrade) {
		return req, fmt.Errorf("exec needs a connection upgrade to %s (Connection: Upgrade, Upgrade: %s)", ExecUpgrade, ExecUpgrade)
	}
	raw, err := base64.StdEncoding.DecodeString(h.Get(ExecHeader))
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		err = dec.Decode(&req)
	}
	if err != nil {
		return req, fmt.Errorf("bad %s header (base64 of the JSON of an exec request): %v", ExecHeader, err)
	}
	return req, nil
}

// Exec runs req in project id and streams its output to io until it
// exits; it returns the command's exit code. Cancelling ctx ends the
// session (the agent then stops the command).
func (c *Client) Exec(ctx context.Context, id string, req ExecRequest, eio ExecIO) (int, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+ProjectPath(id, "exec"), nil)
	if err != nil {
		return -1, err
	}
	if err := SetExecHeaders(hr.Header, req); err != nil {
		return -1, err
	}
	resp, err := c.longHTTP().Do(hr)
	if err != nil {
		return -1, fmt.Errorf("agent exec: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return -1, readError(resp)
	}
	conn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return -1, errors.New("agent exec: the connection cannot be upgraded")
	}
	code, err := Session(ctx, conn, req, eio, func(p []byte) error {
		var er ErrorReply
		if json.Unmarshal(p, &er) == nil && er.Error != "" {
			return &Error{Status: http.StatusOK, Code: er.Code, Message: er.Error}
		}
		return &Error{Status: http.StatusOK, Code: CodeInternal, Message: string(p)}
	})
	var ae *Error
	if err != nil && ctx.Err() == nil && !errors.As(err, &ae) {
		err = fmt.Errorf("agent exec: %w", err)
	}
	return code, err
}

// Session is the client's side of an exec session on conn, upgraded
// already (by an agent, or by a server relaying one): it sends stdin and
// resizes from eio, writes the command's output to eio, and returns its
// exit code, or the error that errFrame makes of an error frame. It
// closes conn.
func Session(ctx context.Context, conn io.ReadWriteCloser, req ExecRequest, eio ExecIO, errFrame func([]byte) error) (int, error) {
	defer conn.Close()
	// Closing the connection when ctx ends unblocks the reads below.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var wmu sync.Mutex
	send := func(typ byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return WriteFrame(conn, typ, p)
	}
	if req.Stdin && eio.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := eio.Stdin.Read(buf)
				if n > 0 {
					if send(FrameStdin, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					send(FrameCloseStdin, nil) //nolint:errcheck // the session may be over
					return
				}
			}
		}()
	}
	if eio.Resize != nil {
		go func() {
			for {
				select {
				case ws, ok := <-eio.Resize:
					if !ok {
						return
					}
					if send(FrameResize, ResizePayload(ws)) != nil {
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	r := bufio.NewReader(conn)
	for {
		typ, p, err := ReadFrame(r)
		if err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return -1, fmt.Errorf("the session ended without an exit code: %w", err)
		}
		switch typ {
		case FrameStdout:
			if eio.Stdout != nil {
				eio.Stdout.Write(p) //nolint:errcheck // a closed local stdout must not kill the session
			}
		case FrameStderr:
			if eio.Stderr != nil {
				eio.Stderr.Write(p) //nolint:errcheck
			}
		case FrameExit:
			if len(p) != 4 {
				return -1, errors.New("malformed exit frame")
			}
			return int(int32(binary.BigEndian.Uint32(p))), nil
		case FrameError:
			return -1, errFrame(p)
		}
	}
}
