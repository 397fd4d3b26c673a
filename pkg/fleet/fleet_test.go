package fleet_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/fleet"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "fleet_ed25519")
	id, err := fleet.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	if d, _ := os.Stat(filepath.Dir(path)); d.Mode().Perm() != 0o700 {
		t.Fatalf("key directory mode %v, want 0700", d.Mode().Perm())
	}
	if !strings.HasPrefix(id.AuthorizedKey(), "ssh-ed25519 ") || !strings.HasSuffix(id.AuthorizedKey(), "cocalc-hosts fleet key") {
		t.Fatalf("authorized key line: %q", id.AuthorizedKey())
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil || strings.TrimSpace(string(pub)) != id.AuthorizedKey() {
		t.Fatalf(".pub file: %q %v", pub, err)
	}
	// What a user pastes into authorized_keys must parse as the same key.
	parsed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(id.AuthorizedKey()))
	if err != nil || ssh.FingerprintSHA256(parsed) != id.Fingerprint() {
		t.Fatalf("authorized key does not parse back: %v", err)
	}

	again, err := fleet.LoadOrCreate(path)
	if err != nil || again.Fingerprint() != id.Fingerprint() {
		t.Fatalf("second load made another key: %v", err)
	}

	os.Chmod(path, 0o644)
	_, err = fleet.LoadOrCreate(path)
	var loose *secrets.ModeError
	if !errors.As(err, &loose) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key others can read must be refused with the fix, got %v", err)
	}
}

func TestConcurrentCreateAgreesOnOneKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet")
	const n = 8
	var wg sync.WaitGroup
	fps := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := fleet.LoadOrCreate(path)
			if err != nil {
				t.Error(err)
				return
			}
			fps <- id.Fingerprint()
		}()
	}
	wg.Wait()
	close(fps)
	seen := map[string]bool{}
	for fp := range fps {
		seen[fp] = true
	}
	if len(seen) != 1 {
		t.Fatalf("concurrent first use made %d different keys", len(seen))
	}
}

func TestDerivedHostKeys(t *testing.T) {
	id, err := fleet.LoadOrCreate(filepath.Join(t.TempDir(), "fleet"))
	if err != nil {
		t.Fatal(err)
	}
	a1, err := id.HostKey("host-a")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := id.HostKey("host-a")
	b, _ := id.HostKey("host-b")
	s1, err1 := ssh.ParsePrivateKey([]byte(a1.PrivatePEM))
	s2, err2 := ssh.ParsePrivateKey([]byte(a2.PrivatePEM))
	if err1 != nil || err2 != nil || a1.Public != a2.Public || ssh.FingerprintSHA256(s1.PublicKey()) != ssh.FingerprintSHA256(s2.PublicKey()) {
		t.Fatal("the host key of one host must be the same every time (a retried create pins the same key)")
	}
	if a1.Public == b.Public {
		t.Fatal("two hosts got the same host key")
	}
	// The private half is an OpenSSH key whose public half is the pin.
	signer, err := ssh.ParsePrivateKey([]byte(a1.PrivatePEM))
	if err != nil {
		t.Fatal(err)
	}
	if !fleet.SameKey(fleet.KeyString(signer.PublicKey()), a1.Public) {
		t.Fatal("private and public host key do not match")
	}
	other, _ := fleet.LoadOrCreate(filepath.Join(t.TempDir(), "other"))
	if oa, _ := other.HostKey("host-a"); oa.Public == a1.Public {
		t.Fatal("another fleet key must derive other host keys")
	}
}

func TestSameKeyAndKeyChangedError(t *testing.T) {
	id, _ := fleet.LoadOrCreate(filepath.Join(t.TempDir(), "fleet"))
	k := id.AuthorizedKey()
	bare := strings.Join(strings.Fields(k)[:2], " ")
	if !fleet.SameKey(k, bare) {
		t.Fatal("comments must not matter")
	}
	other, _ := fleet.LoadOrCreate(filepath.Join(t.TempDir(), "other"))
	if fleet.SameKey(k, other.AuthorizedKey()) || fleet.SameKey(k, "garbage") {
		t.Fatal("different keys compare equal")
	}
	e := &fleet.KeyChangedError{Host: "gpu1", Addr: "10.0.0.1:22", Pinned: "SHA256:old", Offered: "SHA256:new"}
	for _, want := range []string{"gpu1", "SHA256:old", "SHA256:new", "cocalc-hosts ssh-key repin gpu1 --fingerprint SHA256:new"} {
		if !strings.Contains(e.Error(), want) {
			t.Fatalf("error %q does not mention %q", e.Error(), want)
		}
	}
}
