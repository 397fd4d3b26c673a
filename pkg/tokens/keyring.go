// Package tokens is how the control plane lets users into projects on
// hosts it does not stand in front of: it signs short-lived connect tokens
// (JWTs, EdDSA) and OpenSSH user certificates, and hosts check them with
// public keys only.
//
// The control plane's keyring is one 0600 JSON file. Each generation of
// keys has a kid and two Ed25519 keys: one signs connect tokens, the other
// is the SSH certificate authority (separate keys, so that a signature
// made for one protocol can never be replayed as the other). Rotation
// makes a new generation current; the previous ones stay accepted until
// their accept_until (the longest life of what they signed), then hosts
// refuse them. Hosts get PublicKeys only: nothing a host holds can sign.
package tokens

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// keyFile is the keyring on disk.
type keyFile struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	KID       string    `json:"kid"`
	CreatedAt time.Time `json:"created_at"`
	// RetiredAt is when a newer generation took over; AcceptUntil is
	// when hosts stop accepting what this one signed.
	RetiredAt   *time.Time `json:"retired_at,omitempty"`
	AcceptUntil *time.Time `json:"accept_until,omitempty"`
	TokenSeed   []byte     `json:"token_seed"`
	CASeed      []byte     `json:"ssh_ca_seed"`
}

// Key is one generation of signing keys.
type Key struct {
	KID         string
	CreatedAt   time.Time
	RetiredAt   *time.Time
	AcceptUntil *time.Time
	token       ed25519.PrivateKey
	ca          ssh.Signer
}

// Current reports whether k signs new tokens and certificates.
func (k Key) Current() bool { return k.RetiredAt == nil }

// acceptedAt reports whether what k signed is still accepted at t.
func acceptedAt(until *time.Time, t time.Time) bool { return until == nil || t.Before(*until) }

// Keyring is the control plane's signing keys.
type Keyring struct {
	Path string
	keys []Key // newest first
}

// Load reads the keyring at path, refusing a file others may read.
func Load(path string) (*Keyring, error) {
	b, err := secrets.Read(path)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	var f keyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("signing keys %s: %w", path, err)
	}
	kr := &Keyring{Path: path}
	for _, s := range f.Keys {
		if len(s.TokenSeed) != ed25519.SeedSize || len(s.CASeed) != ed25519.SeedSize || s.KID == "" {
			return nil, fmt.Errorf("signing keys %s: key %q is damaged (want a kid and two 32-byte seeds)", path, s.KID)
		}
		ca, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(s.CASeed))
		if err != nil {
			return nil, fmt.Errorf("signing keys %s: key %s: %w", path, s.KID, err)
		}
		kr.keys = append(kr.keys, Key{KID: s.KID, CreatedAt: s.CreatedAt, RetiredAt: s.RetiredAt, AcceptUntil: s.AcceptUntil,
			token: ed25519.NewKeyFromSeed(s.TokenSeed), ca: ca})
	}
	sort.SliceStable(kr.keys, func(i, j int) bool { return kr.keys[i].CreatedAt.After(kr.keys[j].CreatedAt) })
	if _, err := kr.current(); err != nil {
		return nil, fmt.Errorf("signing keys %s: %w", path, err)
	}
	return kr, nil
}

// LoadOrCreate reads the keyring at path, making one with a first key
// (and its directory, 0700) when the file does not exist.
func LoadOrCreate(path string, now time.Time) (*Keyring, error) {
	if path == "" {
		return nil, errors.New("signing keys: empty path; set tokens.signing_keys")
	}
	kr, err := Load(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return kr, err
	}
	var made *Keyring
	err = withLock(path, func() error {
		// Another process may have made it while we waited for the lock.
		if kr, err := Load(path); err == nil {
			made = kr
			return nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		f := keyFile{}
		k, err := newStoredKey(now)
		if err != nil {
			return err
		}
		f.Keys = append(f.Keys, k)
		if err := write(path, f); err != nil {
			return err
		}
		made, err = Load(path)
		return err
	})
	return made, err
}

// Rotate makes a new current key in the keyring at path. The key it
// replaces stays accepted for grace (the longest life of what it signed);
// keys whose acceptance ended before now are dropped.
func Rotate(path string, now time.Time, grace time.Duration) (*Keyring, error) {
	if grace < 0 {
		return nil, fmt.Errorf("rotate signing keys: grace %s is negative", grace)
	}
	var out *Keyring
	err := withLock(path, func() error {
		b, err := secrets.Read(path)
		if err != nil {
			return fmt.Errorf("rotate signing keys: %w", err)
		}
		var f keyFile
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("rotate signing keys %s: %w", path, err)
		}
		kept := f.Keys[:0]
		until := now.Add(grace).UTC()
		for _, k := range f.Keys {
			if k.RetiredAt == nil {
				t := now.UTC()
				k.RetiredAt, k.AcceptUntil = &t, &until
			}
			if acceptedAt(k.AcceptUntil, now) {
				kept = append(kept, k)
			}
		}
		nk, err := newStoredKey(now)
		if err != nil {
			return err
		}
		f.Keys = append([]storedKey{nk}, kept...)
		if err := write(path, f); err != nil {
			return err
		}
		out, err = Load(path)
		return err
	})
	return out, err
}

func newStoredKey(now time.Time) (storedKey, error) {
	seeds := make([]byte, 2*ed25519.SeedSize+4)
	if _, err := rand.Read(seeds); err != nil {
		return storedKey{}, fmt.Errorf("signing keys: %w", err)
	}
	// A kid says when the key was made (for people reading logs) and is
	// unique without coordination.
	kid := now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(seeds[2*ed25519.SeedSize:])
	return storedKey{KID: kid, CreatedAt: now.UTC(), TokenSeed: seeds[:ed25519.SeedSize], CASeed: seeds[ed25519.SeedSize : 2*ed25519.SeedSize]}, nil
}

func write(path string, f keyFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	if err := secrets.Write(path, append(b, '\n')); err != nil {
		return fmt.Errorf("signing keys: write %s: %w", path, err)
	}
	return nil
}

// withLock runs fn holding an exclusive lock next to path, so that two
// processes rotating at once do not lose a key.
func withLock(path string, fn func() error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	l, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	defer l.Close()
	if err := syscall.Flock(int(l.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("signing keys: lock %s: %w", l.Name(), err)
	}
	return fn()
}

func (kr *Keyring) current() (Key, error) {
	for _, k := range kr.keys {
		if k.Current() {
			return k, nil
		}
	}
	return Key{}, errors.New("no current key (every key is retired); run `cocalc-hosts keys rotate`")
}

// Keys lists the generations, newest first.
func (kr *Keyring) Keys() []Key { return append([]Key(nil), kr.keys...) }

// Public is what hosts need to check tokens and certificates signed by
// this keyring, with keys past their acceptance at now left out.
func (kr *Keyring) Public(now time.Time) PublicKeys {
	var pk PublicKeys
	for _, k := range kr.keys {
		if !acceptedAt(k.AcceptUntil, now) {
			continue
		}
		pk.TokenKeys = append(pk.TokenKeys, PublicKey{KID: k.KID, Key: k.token.Public().(ed25519.PublicKey), AcceptUntil: k.AcceptUntil})
		pk.SSHCAKeys = append(pk.SSHCAKeys, CAKey{KID: k.KID, Key: AuthorizedKey(k.ca.PublicKey()), AcceptUntil: k.AcceptUntil})
	}
	return pk
}

// AuthorizedKey is pub in authorized_keys format, without a newline.
func AuthorizedKey(pub ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

// PublicKeys are what a host gets: the public halves of every accepted
// generation and until when each is accepted.
type PublicKeys struct {
	TokenKeys []PublicKey `json:"token_keys"`
	SSHCAKeys []CAKey     `json:"ssh_ca_keys"`
}

// PublicKey verifies connect tokens with header kid KID.
type PublicKey struct {
	KID         string            `json:"kid"`
	Key         ed25519.PublicKey `json:"key"`
	AcceptUntil *time.Time        `json:"accept_until,omitempty"`
}

// CAKey is an SSH certificate authority (authorized_keys format).
type CAKey struct {
	KID         string     `json:"kid"`
	Key         string     `json:"key"`
	AcceptUntil *time.Time `json:"accept_until,omitempty"`
}
