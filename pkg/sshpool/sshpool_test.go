package sshpool_test

import (
	"bufio"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/fleet"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshpool"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
)

// storePins keeps pins in a real SQLite state database.
type storePins struct {
	s        store.BootStore
	mu       sync.Mutex
	contacts int
}

func (p *storePins) Pinned(ctx context.Context, hostID string) (string, bool, error) {
	pin, err := p.s.GetHostKey(ctx, hostID)
	if errkind.Is(err, errkind.NotFound) {
		return "", false, nil
	}
	return pin.PublicKey, err == nil, err
}

func (p *storePins) PinFirst(ctx context.Context, hostID, key string) (string, error) {
	pin, err := p.s.PinHostKey(ctx, store.HostKeyPin{HostID: hostID, PublicKey: key, Source: "first_contact", PinnedAt: time.Now()}, false)
	return pin.PublicKey, err
}

func (p *storePins) Contact(ctx context.Context, hostID string, at time.Time) {
	p.mu.Lock()
	p.contacts++
	p.mu.Unlock()
	p.s.TouchHostContact(ctx, hostID, at) //nolint:errcheck
}

type env struct {
	id   *fleet.Identity
	st   *store.SQLStore
	pins *storePins
	pool *sshpool.Pool
}

func newEnv(t *testing.T) *env {
	sshvm.NeedRoot(t)
	dir := t.TempDir()
	id, err := fleet.LoadOrCreate(filepath.Join(dir, "fleet"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pins := &storePins{s: st}
	pool := sshpool.New(func() (*fleet.Identity, error) { return id, nil }, pins)
	pool.DialTimeout = 5 * time.Second
	t.Cleanup(func() { pool.Close() })
	return &env{id: id, st: st, pins: pins, pool: pool}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestRunPinsAndReuses(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	target := sshpool.Target{HostID: uuid.NewString(), Name: "vm1", Host: vm.Addr, User: "root"}
	c := ctx(t)

	var lines []string
	err := e.pool.Run(c, target, "echo one; echo two >&2; printf 'no newline'", nil, func(l string) { lines = append(lines, l) })
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || lines[2] != "no newline" {
		t.Fatalf("output lines: %q", lines)
	}
	// The host key seen on first contact is pinned.
	pin, err := e.st.GetHostKey(c, target.HostID)
	if err != nil || !fleet.SameKey(pin.PublicKey, fleet.KeyString(vm.HostKey())) || pin.Source != "first_contact" {
		t.Fatalf("pin after first contact: %v %+v", err, pin)
	}
	if pin.LastContactAt == nil {
		t.Fatal("a successful contact must be recorded")
	}

	// One connection per host, reused.
	c1, err := e.pool.Client(c, target)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := e.pool.Client(c, target)
	if c1 != c2 {
		t.Fatal("a second call dialled a new connection")
	}
	for range 3 {
		if err := e.pool.Run(c, target, "true", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The VM sees two SSH connections: the pool's and the test's own.
	if out := vm.MustExec(t, "ss -Htn state established '( sport = :22 )' | wc -l"); strings.TrimSpace(out) != "2" {
		t.Fatalf("%s SSH connections to the VM, want 2 (one from the pool)", strings.TrimSpace(out))
	}

	err = e.pool.Run(c, target, "echo failing; exit 3", nil, nil)
	var ee *sshpool.ExitError
	if !errors.As(err, &ee) || ee.Status != 3 {
		t.Fatalf("exit 3: got %v", err)
	}

	// stdin reaches the command; a script runs as root with its args.
	out, err := e.pool.Output(c, target, "cat", strings.NewReader("secret stays off argv\n"))
	if err != nil || out != "secret stays off argv\n" {
		t.Fatalf("stdin: %q %v", out, err)
	}
	out, err = e.pool.Output(c, target, sshpool.RootCommand(target, "/bin/sh", "-c", `echo "$(id -u) $1 $2"`, "x", "it's", "a b"), nil)
	if err != nil || out != "0 it's a b\n" {
		t.Fatalf("quoted args: %q %v", out, err)
	}

	// A dead connection is noticed and redialled.
	// (This also ends the test's own admin session, hence no error check.)
	vm.Exec(c, "pkill -f 'sshd: root@notty'") //nolint:errcheck
	if err := e.pool.Run(c, target, "true", nil, nil); err != nil {
		// The pool saw the connection die during this call; the next
		// one must dial again.
		if err := e.pool.Run(c, target, "true", nil, nil); err != nil {
			t.Fatalf("after the connection died: %v", err)
		}
	}
}

func TestSudoAndRelay(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{})
	vm.AddUser(t, "deploy", true, e.id.AuthorizedKey())
	target := sshpool.Target{HostID: uuid.NewString(), Host: vm.Addr, User: "deploy"}
	c := ctx(t)
	out, err := e.pool.Output(c, target, "id -un", nil)
	if err != nil || out != "deploy\n" {
		t.Fatalf("login as deploy: %q %v", out, err)
	}
	var got []string
	if err := e.pool.Script(c, target, "t", `echo "$(id -u):$1"`, []string{"arg"}, nil, func(l string) { got = append(got, l) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "0:arg" {
		t.Fatalf("script through sudo ran as %q, want root", got)
	}

	// A relay joins a session's stdin and stdout to whatever the command
	// connects them to; cat echoes, which is enough to check the conn.
	conn, err := e.pool.DialUnix(c, target, "/nonexistent", []string{"cat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("relay echo: %q %v", line, err)
	}
	conn.Close()
}

func TestAuthErrors(t *testing.T) {
	e := newEnv(t)
	other, err := fleet.LoadOrCreate(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	// Root trusts another key, not ours.
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{other.AuthorizedKey()}})
	c := ctx(t)
	for _, user := range []string{"root", "nosuchuser"} {
		target := sshpool.Target{HostID: uuid.NewString(), Name: "vm-" + user, Host: vm.Addr, User: user}
		// Wait reports progress before its first retry: a refused login
		// must return at once, with nothing reported.
		var waited []string
		_, err := e.pool.Wait(c, target, time.Minute, func(msg string) { waited = append(waited, msg) })
		var ae *sshpool.AuthError
		if !errors.As(err, &ae) || errkind.Of(err) != errkind.Auth {
			t.Fatalf("user %s: got %v, want an AuthError", user, err)
		}
		if len(waited) > 0 {
			t.Fatalf("a refused login must not be retried: %q", waited)
		}
		for _, want := range []string{user + "@" + vm.Addr, e.id.Fingerprint(), "cocalc-hosts ssh-key", "authorized_keys"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not mention %q", err, want)
			}
		}
	}
}

func TestChangedHostKeyIsRefused(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	target := sshpool.Target{HostID: uuid.NewString(), Name: "vm1", Host: vm.Addr, User: "root"}
	c := ctx(t)
	if err := e.pool.Run(c, target, "true", nil, nil); err != nil {
		t.Fatal(err)
	}
	oldKey := vm.HostKey()
	vm.PowerOff(t)
	vm.SetHostKey(t, nil) // reinstalled, or someone in between
	vm.Boot(t)
	e.pool.Forget(target)
	_, err := e.pool.Wait(c, target, time.Minute, nil)
	var kc *fleet.KeyChangedError
	if !errors.As(err, &kc) || errkind.Of(err) != errkind.Auth {
		t.Fatalf("got %v, want a KeyChangedError", err)
	}
	if !strings.Contains(err.Error(), "ssh-key repin vm1") {
		t.Fatalf("error must say how to re-pin: %v", err)
	}
	pin, _ := e.st.GetHostKey(c, target.HostID)
	if !fleet.SameKey(pin.PublicKey, fleet.KeyString(oldKey)) {
		t.Fatal("a refused key must not replace the pin")
	}
}

func TestUnreachableRetriesThenFails(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	// Nothing listens on this port of the VM: connections are refused.
	target := sshpool.Target{HostID: uuid.NewString(), Name: "vm1", Host: vm.Addr, Port: 2222, User: "root"}
	var progress []string
	start := time.Now()
	_, err := e.pool.Wait(ctx(t), target, 3*time.Second, func(m string) { progress = append(progress, m) })
	var ue *sshpool.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("got %v, want an UnreachableError", err)
	}
	if ue.Attempts < 3 {
		t.Fatalf("%d attempts in %s; the wait must retry", ue.Attempts, time.Since(start))
	}
	if errkind.Retryable(err) {
		t.Fatal("the queue must not retry a wait that already waited")
	}
	for _, want := range []string{"root@" + vm.Addr + ":2222", "connection refused", "port 2222"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
	if len(progress) == 0 || !strings.Contains(progress[0], "waiting for SSH") {
		t.Fatalf("progress: %q", progress)
	}
}

// A connection that dies under a command (the server side of it killed)
// is a transient error that says the SSH connection was lost, so that the
// queue retries it; the next call dials again and works.
func TestConnectionLostUnderCommandIsTransient(t *testing.T) {
	e := newEnv(t)
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{e.id.AuthorizedKey()}})
	target := sshpool.Target{HostID: uuid.NewString(), Name: "vm1", Host: vm.Addr, User: "root"}
	c := ctx(t)
	ran := make(chan error, 1)
	go func() { ran <- e.pool.Run(c, target, "touch /tmp/started; sleep 60", nil, nil) }()
	deadline := time.Now().Add(30 * time.Second)
	for vm.MustExec(t, "test -e /tmp/started && echo yes || true") != "yes\n" {
		if time.Now().After(deadline) {
			t.Fatal("the command did not start within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	vm.Exec(c, "pkill -f 'sshd: root@notty'") //nolint:errcheck // ends the test's own session too
	var err error
	select {
	case err = <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its connection's end")
	}
	if !errkind.Is(err, errkind.Transient) || !strings.Contains(err.Error(), "SSH connection was lost") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v (kind %v); want one transient line saying the SSH connection was lost", err, errkind.Of(err))
	}
	if err := e.pool.Run(c, target, "true", nil, nil); err != nil {
		t.Fatalf("the next command, on a new connection: %v", err)
	}
}
