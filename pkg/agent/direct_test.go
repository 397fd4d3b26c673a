package agent

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
)

func credential(t *testing.T) string {
	b := make([]byte, agentapi.CredentialBytes)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// portClosed polls until nothing listens on addr.
func portClosed(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An expected transfer takes the right credential once and refuses
// everything else; its port closes after one connection or at expiry, and
// the source refuses a certificate other than the pinned one.
func TestDirectTransferCredential(t *testing.T) {
	path, cfg := testConfig(t)
	runAgent(t, path)
	waitStatus(t, cfg.SocketPath)
	c := agentapi.NewClient(cfg.SocketPath)
	ctx := tctx(t)
	id := uuid.NewString()

	expect := func(ttl int) (agentapi.DirectHello, string, string) {
		t.Helper()
		hello := agentapi.DirectHello{Project: id, Move: "m1", Volume: "home", Credential: credential(t)}
		exp, err := c.Expect(ctx, id, agentapi.ExpectRequest{Move: hello.Move, Method: agentapi.TransferTar,
			Volume: agentapi.TransferVolume{Name: hello.Volume}, Credential: hello.Credential, TTLSeconds: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return hello, net.JoinHostPort("127.0.0.1", strconv.Itoa(exp.Port)), exp.Fingerprint
	}
	refused := func(what, addr, fp string, hello agentapi.DirectHello, want string) {
		t.Helper()
		conn, err := dialTransfer(ctx, addr, fp, hello)
		if err == nil {
			conn.Close()
			t.Fatalf("%s: accepted", what)
		}
		if !strings.Contains(err.Error(), want) || codeOf(err) != agentapi.CodeUnreachable {
			t.Fatalf("%s: got %v (code %s), want %q", what, err, codeOf(err), want)
		}
		portClosed(t, addr)
	}

	// Wrong credential, project, move or volume: refused, and the port is
	// used up.
	for name, change := range map[string]func(*agentapi.DirectHello){
		"credential": func(h *agentapi.DirectHello) { h.Credential = credential(t) },
		"project":    func(h *agentapi.DirectHello) { h.Project = uuid.NewString() },
		"move":       func(h *agentapi.DirectHello) { h.Move = "m2" },
		"volume":     func(h *agentapi.DirectHello) { h.Volume = "s1" },
	} {
		hello, addr, fp := expect(60)
		change(&hello)
		refused("wrong "+name, addr, fp, hello, "the destination refused the transfer")
	}

	// A certificate other than the pinned one.
	hello, addr, _ := expect(60)
	_, _, otherFP := expect(60)
	refused("wrong fingerprint", addr, otherFP, hello, "does not match the pinned fingerprint")

	// Expired: nobody came within the ttl.
	_, addr, _ = expect(1)
	portClosed(t, addr)

	// The right credential: the stream is received, and the port closes.
	hello, addr, fp := expect(60)
	conn, err := dialTransfer(ctx, addr, fp, hello)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("sent directly\n")
	tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(body))}) //nolint:errcheck
	tw.Write(body)                                                                      //nolint:errcheck
	tw.Close()
	sent := int64(buf.Len())
	if _, err := io.Copy(conn, &buf); err != nil {
		t.Fatal(err)
	}
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var ans agentapi.DirectAnswer
	if err := json.NewDecoder(conn).Decode(&ans); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if ans.Error != "" || ans.Bytes != sent {
		t.Fatalf("answer %+v, want %d bytes and no error", ans, sent)
	}
	var got []byte
	filepath.WalkDir(cfg.PoolPath, func(p string, d fs.DirEntry, err error) error { //nolint:errcheck
		if err == nil && d.Name() == "hello.txt" {
			got, _ = os.ReadFile(p)
		}
		return nil
	})
	if !bytes.Equal(got, body) {
		t.Fatalf("received file holds %q, want %q", got, body)
	}
	// Reused: the port is gone.
	portClosed(t, addr)
	if _, err := dialTransfer(ctx, addr, fp, hello); codeOf(err) != agentapi.CodeUnreachable {
		t.Fatalf("reused credential: got %v, want unreachable", err)
	}

	// The port is opened on the address the source dials when it is this
	// host's (127.0.0.2 is another loopback address, not reached then),
	// and on all addresses when it is not (a public address behind NAT).
	for _, c2 := range []struct{ address, reached, refused string }{
		{"127.0.0.1", "127.0.0.1", "127.0.0.2"},
		{"192.0.2.1", "127.0.0.2", ""},
	} {
		exp, err := c.Expect(ctx, id, agentapi.ExpectRequest{Move: "m3", Method: agentapi.TransferTar, Volume: agentapi.TransferVolume{Name: "home"},
			Credential: credential(t), TTLSeconds: 60, Address: c2.address})
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(exp.Port)
		if c2.refused != "" {
			if conn, err := net.DialTimeout("tcp", net.JoinHostPort(c2.refused, port), time.Second); err == nil {
				conn.Close()
				t.Fatalf("expect with address %s: reached on %s too", c2.address, c2.refused)
			}
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(c2.reached, port), time.Second)
		if err != nil {
			t.Fatalf("expect with address %s: not reached on %s: %v", c2.address, c2.reached, err)
		}
		conn.Close()
	}

	// Bad input to expect, and a push to where nobody listens.
	if _, err := c.Expect(ctx, id, agentapi.ExpectRequest{Move: "m", Method: agentapi.TransferTar, Volume: agentapi.TransferVolume{Name: "home"},
		Credential: base64.StdEncoding.EncodeToString([]byte("short")), TTLSeconds: 60}); !agentapi.IsCode(err, agentapi.CodeInvalid) ||
		!strings.Contains(err.Error(), "at least 32 bytes") {
		t.Fatalf("short credential: got %v", err)
	}
	_, err = c.Push(ctx, id, agentapi.PushRequest{SendRequest: agentapi.SendRequest{Method: agentapi.TransferTar}, Addr: addr, Fingerprint: fp, Hello: hello}, nil)
	if !agentapi.IsCode(err, agentapi.CodeUnreachable) {
		t.Fatalf("push to a closed port: got %v, want code unreachable", err)
	}
}

// A direct receive whose source went quiet (the network between the hosts
// cut mid-stream) ends when the project's transfer state is dropped, and
// what it half received goes with it: a rolled-back or retried move does
// not wait for the stall timeout nor race the stale receive.
func TestDirectReceiveEndsOnDrop(t *testing.T) {
	path, cfg := testConfig(t)
	runAgent(t, path)
	waitStatus(t, cfg.SocketPath)
	c := agentapi.NewClient(cfg.SocketPath)
	ctx := tctx(t)
	id := uuid.NewString()
	hello := agentapi.DirectHello{Project: id, Move: "m1", Volume: "home", Credential: credential(t)}
	exp, err := c.Expect(ctx, id, agentapi.ExpectRequest{Move: hello.Move, Method: agentapi.TransferTar,
		Volume: agentapi.TransferVolume{Name: hello.Volume}, Credential: hello.Credential, TTLSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dialTransfer(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(exp.Port)), exp.Fingerprint, hello)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Half of a file, and then nothing more.
	tw := tar.NewWriter(conn)
	if err := tw.WriteHeader(&tar.Header{Name: "big", Mode: 0o644, Size: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(make([]byte, 2<<20)); err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(cfg.PoolPath, "transfer", id, "in", storage.HomeTarName, "big")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(staged); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the destination never began receiving: %v", err)
		}
	}
	if err := c.DropTransfer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.PoolPath, "transfer", id)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("transfer state after the drop: %v", err)
	}
	// The destination hung up: well before the stall timeout, which a
	// read that times out here would mean it waited for.
	conn.SetReadDeadline(time.Now().Add(directStall / 2)) //nolint:errcheck
	_, err = io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the receive did not end on the drop: %v", err)
	}
}

// A push whose stream stalled (the network between the hosts cut) ends
// with CodeStalled, which the control plane retries (the retry relays
// when the destination still cannot be reached); other failures of a
// push carry no code and are final.
func TestStalledPushIsRetryable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	last := make(chan agentapi.PushProgress, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		enc.Encode(agentapi.PushProgress{Bytes: 1 << 20}) //nolint:errcheck
		enc.Encode(<-last)                                //nolint:errcheck
	})}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	c := agentapi.NewClient(sock)
	timeout := stalled(os.ErrDeadlineExceeded) // what a stallConn returns
	for _, tc := range []struct {
		name string
		err  error
		code string
	}{
		{"the source's writes stalled", fmt.Errorf("source: %w", fmt.Errorf("the stream to x stopped after 5 bytes: %w", timeout)), agentapi.CodeStalled},
		{"no answer after the stream", fmt.Errorf("the destination did not answer after the stream: %w", timeout), agentapi.CodeStalled},
		{"btrfs send failed", fmt.Errorf("source: %w", errors.New("btrfs send: exit status 1")), ""},
		{"cut short, not stalled", stalled(io.ErrUnexpectedEOF), ""},
	} {
		last <- pushFailed(5, tc.err)
		res, err := c.Push(tctx(t), "p", agentapi.PushRequest{}, nil)
		var ae *agentapi.Error
		switch {
		case err == nil || res.Bytes != 5:
			t.Errorf("%s: push returned %v, %d bytes", tc.name, err, res.Bytes)
		case tc.code != "" && (!agentapi.IsCode(err, tc.code) || !strings.Contains(err.Error(), "no progress for "+directStall.String())):
			t.Errorf("%s: got %v (code %q), want code %s naming the stall", tc.name, err, codeOf(err), tc.code)
		case tc.code == "" && errors.As(err, &ae):
			t.Errorf("%s: got code %q, want none", tc.name, ae.Code)
		}
	}
}
