// Package fleet is the control plane's SSH identity and how it recognizes
// its hosts.
//
// The fleet key is one ed25519 key pair, made on first use and kept as a
// 0600 file; its public half is what providers authorize on new VMs and
// what a user adds to a machine they want to adopt. Host keys are pinned:
// for providers that install a host key through user data, the key is
// derived from the fleet key and the host id, so it is known before the
// VM first boots and the same on every retry; otherwise the key seen on
// first contact is recorded. A host that later offers another key is
// refused with a KeyChangedError that says how to re-pin on purpose.
package fleet

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// keyComment names the fleet key in authorized_keys files, so an admin
// can tell what put it there.
const keyComment = "cocalc-hosts fleet key"

// Identity is the fleet key pair.
type Identity struct {
	// Path is the private key file; the public key is Path + ".pub".
	Path   string
	signer ssh.Signer
	seed   []byte // ed25519 seed, for deriving host keys
}

// LoadOrCreate reads the fleet key at path, making a new one (and its
// directory, 0700) when the file does not exist. A key file that others
// may read is refused.
func LoadOrCreate(path string) (*Identity, error) {
	if path == "" {
		return nil, errors.New("fleet key: empty path; set ssh.fleet_key")
	}
	id, err := Load(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return id, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("fleet key: generate: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, keyComment)
	if err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	// Written whole to a temporary file, then linked into place: link
	// fails if the key exists, so two processes making the key at once
	// agree on the first one, and nobody ever reads a half-written file.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fleet-key-*")
	if err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		err = pem.Encode(tmp, block)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("fleet key: write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return Load(path)
		}
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	id, err = Load(path)
	if err != nil {
		return nil, err
	}
	// The public half is a convenience copy for users; the private file
	// is the truth.
	if err := os.WriteFile(path+".pub", []byte(id.AuthorizedKey()+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("fleet key: write %s.pub: %w", path, err)
	}
	return id, nil
}

// Load reads an existing fleet key.
func Load(path string) (*Identity, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("fleet key %s: %w", path, err)
	}
	b, err := secrets.Read(path)
	if err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	raw, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("fleet key %s: %w", path, err)
	}
	var priv ed25519.PrivateKey
	switch k := raw.(type) {
	case ed25519.PrivateKey:
		priv = k
	case *ed25519.PrivateKey:
		priv = *k
	default:
		return nil, fmt.Errorf("fleet key %s is a %T, want ed25519; move it aside to make a new one", path, raw)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("fleet key %s: %w", path, err)
	}
	return &Identity{Path: path, signer: signer, seed: priv.Seed()}, nil
}

// Signer authenticates SSH logins.
func (id *Identity) Signer() ssh.Signer { return id.signer }

// AuthorizedKey is the public key as one authorized_keys line.
func (id *Identity) AuthorizedKey() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(id.signer.PublicKey()))) + " " + keyComment
}

// Fingerprint is the public key's SHA256 fingerprint, as ssh-keygen -l shows it.
func (id *Identity) Fingerprint() string { return ssh.FingerprintSHA256(id.signer.PublicKey()) }

// HostKey derives the SSH host key for hostID. Deriving rather than
// storing keeps private host keys out of the database, and makes a retried
// create give the VM the same key that was pinned. Whoever holds the fleet
// key can log in to every host as root anyway, so being able to derive
// their host keys grants nothing more.
func (id *Identity) HostKey(hostID string) (provider.HostKey, error) {
	h := sha256.New()
	h.Write([]byte("cocalc-hosts host key v1\x00"))
	h.Write(id.seed)
	h.Write([]byte{0})
	h.Write([]byte(hostID))
	priv := ed25519.NewKeyFromSeed(h.Sum(nil))
	block, err := ssh.MarshalPrivateKey(priv, "cocalc-hosts host "+hostID)
	if err != nil {
		return provider.HostKey{}, fmt.Errorf("host key for %s: %w", hostID, err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return provider.HostKey{}, fmt.Errorf("host key for %s: %w", hostID, err)
	}
	return provider.HostKey{
		PrivatePEM: string(pem.EncodeToMemory(block)),
		Public:     strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))),
	}, nil
}

// KeyString renders a public key in authorized_keys format without comment.
func KeyString(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// Fingerprint returns the SHA256 fingerprint of an authorized_keys-format
// key, or the text itself if it does not parse.
func Fingerprint(authorizedKey string) string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return authorizedKey
	}
	return ssh.FingerprintSHA256(k)
}

// SameKey reports whether two authorized_keys-format keys are the same key
// (comments aside).
func SameKey(a, b string) bool {
	ka, _, _, _, err1 := ssh.ParseAuthorizedKey([]byte(a))
	kb, _, _, _, err2 := ssh.ParseAuthorizedKey([]byte(b))
	if err1 != nil || err2 != nil {
		return false
	}
	return ka.Type() == kb.Type() && string(ka.Marshal()) == string(kb.Marshal())
}

// KeyChangedError is a host that offered a key other than its pinned one.
type KeyChangedError struct {
	Host    string // the host's name, for the command to run
	Addr    string
	Pinned  string // fingerprints
	Offered string
}

func (e *KeyChangedError) Error() string {
	return fmt.Sprintf("SSH host key of %s (%s) changed: pinned %s, offered %s. This is what a reinstalled machine or an attacker "+
		"in between looks like, so cocalc-hosts refuses to connect. If the machine was reinstalled, check its key on its console "+
		"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and re-pin it: `cocalc-hosts ssh-key repin %s --fingerprint %s`",
		e.Host, e.Addr, e.Pinned, e.Offered, e.Host, e.Offered)
}
