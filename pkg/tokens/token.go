package tokens

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is every connect token's iss.
const Issuer = "cocalc-hosts"

// Permissions a connect token can grant.
const (
	PermHTTP = "http" // the HTTP/WebSocket ingress
	PermSSH  = "ssh"  // the SSH ingress
)

// MaxTTL bounds the life of a connect token or certificate: they are
// meant to be short-lived, and a key's grace after rotation is at least
// the longest life of what it signed.
const MaxTTL = 24 * time.Hour

// maxTokenBytes refuses absurd tokens before any parsing.
const maxTokenBytes = 4096

// Leeway is the clock skew between the control plane and hosts that
// expiry and not-before checks tolerate.
const Leeway = 30 * time.Second

// Audience is the aud of tokens for host hostID.
func Audience(hostID string) string { return "project-host:" + hostID }

// Claims are what a connect token says: account (sub) may use project on
// host (aud) with perms, on ports (empty: any port), until exp.
type Claims struct {
	Project string   `json:"project"`
	Perms   []string `json:"perms"`
	Ports   []int    `json:"ports,omitempty"`
	jwt.RegisteredClaims
	// KID is the key that signed the token (from its header), set by
	// Verify.
	KID string `json:"-"`
}

// Account is the account the token was issued to.
func (c Claims) Account() string { return c.Subject }

// Allows reports whether c grants perm, on port when port > 0.
func (c Claims) Allows(perm string, port int) bool {
	if !slices.Contains(c.Perms, perm) {
		return false
	}
	return port <= 0 || len(c.Ports) == 0 || slices.Contains(c.Ports, port)
}

// Grant is what a new connect token says.
type Grant struct {
	Account string
	Project string
	HostID  string
	Perms   []string
	Ports   []int
	TTL     time.Duration
	Now     time.Time
}

func checkTTL(ttl time.Duration) error {
	if ttl < time.Second || ttl > MaxTTL {
		return fmt.Errorf("lifetime %s: use between 1s and %s", ttl, MaxTTL)
	}
	return nil
}

// Mint signs a connect token with the current key.
func (kr *Keyring) Mint(g Grant) (string, Claims, error) {
	if g.Account == "" || g.Project == "" || g.HostID == "" || len(g.Perms) == 0 {
		return "", Claims{}, errors.New("connect token: account, project, host and permissions are required")
	}
	if err := checkTTL(g.TTL); err != nil {
		return "", Claims{}, fmt.Errorf("connect token: %w", err)
	}
	for _, p := range g.Ports {
		if p < 1 || p > 65535 {
			return "", Claims{}, fmt.Errorf("connect token: port %d is not in 1-65535", p)
		}
	}
	k, err := kr.current()
	if err != nil {
		return "", Claims{}, err
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", Claims{}, err
	}
	now := g.Now.UTC().Truncate(time.Second)
	c := Claims{
		Project: g.Project, Perms: g.Perms, Ports: g.Ports,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: Issuer, Subject: g.Account, Audience: jwt.ClaimStrings{Audience(g.HostID)},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(g.TTL)), ID: hex.EncodeToString(jti),
		},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["kid"] = k.KID
	s, err := t.SignedString(k.token)
	if err != nil {
		return "", Claims{}, fmt.Errorf("connect token: %w", err)
	}
	return s, c, nil
}

// Reason says why a token or certificate was refused.
type Reason string

const (
	Malformed     Reason = "malformed"
	BadSignature  Reason = "bad_signature"
	UnknownKey    Reason = "unknown_key"
	RetiredKey    Reason = "retired_key"
	Expired       Reason = "expired"
	NotYetValid   Reason = "not_yet_valid"
	WrongAudience Reason = "wrong_audience"
	WrongProject  Reason = "wrong_project"
	NotPermitted  Reason = "not_permitted"
	// Revoked: the account is not (or no longer) on the project's access
	// list; hosts decide it, not the token.
	Revoked Reason = "revoked"
)

// Error is a refused token or certificate.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

// ReasonOf returns why err refused a credential ("" if it is no *Error).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Verifier checks connect tokens and SSH certificates on one host, with
// public keys only.
type Verifier struct {
	hostID string
	aud    string
	keys   map[string]PublicKey
	cas    map[string]CAKey // by authorized key
	now    func() time.Time

	// Tokens are presented again and again (every request of a browser
	// session); a verified token's claims are kept so that the signature
	// is checked once. Time and key acceptance are checked on every use.
	mu    sync.Mutex
	cache map[string]*verified
}

// cacheMax bounds the verified-token cache; when full it starts over.
const cacheMax = 8192

// NewVerifier checks credentials for host hostID against pk; now is the
// clock (time.Now if nil).
func NewVerifier(hostID string, pk PublicKeys, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	v := &Verifier{hostID: hostID, aud: Audience(hostID), keys: map[string]PublicKey{}, cas: map[string]CAKey{}, now: now,
		cache: map[string]*verified{}}
	for _, k := range pk.TokenKeys {
		if len(k.Key) == ed25519.PublicKeySize {
			v.keys[k.KID] = k
		}
	}
	for _, k := range pk.SSHCAKeys {
		v.cas[k.Key] = k
	}
	return v
}

// HostID is the host this verifier checks for.
func (v *Verifier) HostID() string { return v.hostID }

// verified is a token whose signature checked out, and the key that
// signed it.
type verified struct {
	claims Claims
	kid    string
}

// Verify checks a connect token's signature, key, audience and times,
// and returns its claims. Whether the token's project and permissions
// fit the request is the caller's check (Claims.Allows).
func (v *Verifier) Verify(token string) (Claims, error) {
	if len(token) > maxTokenBytes {
		return Claims{}, refuse(Malformed, "connect token refused: longer than %d bytes", maxTokenBytes)
	}
	v.mu.Lock()
	t, ok := v.cache[token]
	v.mu.Unlock()
	if !ok {
		var err error
		if t, err = v.parse(token); err != nil {
			return Claims{}, err
		}
	}
	if err := v.check(t); err != nil {
		return Claims{}, err
	}
	if !ok {
		v.mu.Lock()
		if len(v.cache) >= cacheMax {
			clear(v.cache)
		}
		v.cache[token] = t
		v.mu.Unlock()
	}
	return t.claims, nil
}

// KeyAccepted reports whether what key kid signed is still accepted: a
// session made from a token ends when its key is rotated out.
func (v *Verifier) KeyAccepted(kid string) *Error {
	k, ok := v.keys[kid]
	if !ok {
		return refuse(UnknownKey, "signed by key %q, which this host no longer knows", kid)
	}
	if !acceptedAt(k.AcceptUntil, v.now()) {
		return refuse(RetiredKey, "signed by key %s, which was rotated out and is no longer accepted since %s", kid, k.AcceptUntil.UTC().Format(time.RFC3339))
	}
	return nil
}

// b64 decodes a token's parts: unpadded base64url, and only the
// canonical encoding of each value.
var b64 = base64.RawURLEncoding.Strict()

// header is what Verify reads from a token's header.
type header struct {
	Alg string `json:"alg"`
	KID string `json:"kid"`
}

// parse checks a token's signature and decodes its claims. It takes
// exactly what Mint makes, a compact JWS signed with EdDSA by a key this
// host knows, and reads the claims only once the signature checked out.
// Mint's library's general parser decodes the header into a map and the
// claims with nested decoders (65 allocations a token against 29 here;
// BenchmarkVerify), which showed next to the Ed25519 check itself.
func (v *Verifier) parse(token string) (*verified, error) {
	h64, rest, ok := strings.Cut(token, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(s64, ".") {
		return nil, refuse(Malformed, "connect token refused: not a signed token (three parts separated by dots)")
	}
	var h header
	if err := decodePart(h64, &h); err != nil {
		return nil, refuse(Malformed, "connect token refused: header: %v", err)
	}
	// Only EdDSA: "none", or an HMAC keyed with a public key (the classic
	// confusions), are forgeries.
	if h.Alg != jwt.SigningMethodEdDSA.Alg() {
		return nil, refuse(BadSignature, "connect token refused: signed with %q, not EdDSA (forged)", h.Alg)
	}
	k, ok := v.keys[h.KID]
	if !ok {
		return nil, refuse(UnknownKey, "connect token refused: signed by key %q, which this host does not know (forged, or from another control plane)", h.KID)
	}
	var sig [ed25519.SignatureSize]byte
	ok = b64.DecodedLen(len(s64)) == len(sig)
	if ok {
		n, err := b64.Decode(sig[:], []byte(s64))
		ok = err == nil && n == len(sig) && ed25519.Verify(k.Key, []byte(token[:len(h64)+1+len(p64)]), sig[:])
	}
	if !ok {
		return nil, refuse(BadSignature, "connect token refused: bad signature (forged or altered)")
	}
	var w wireClaims
	if err := decodePart(p64, &w); err != nil {
		return nil, refuse(Malformed, "connect token refused: claims: %v", err)
	}
	c := w.claims()
	c.KID = h.KID
	return &verified{claims: c, kid: h.KID}, nil
}

// wireClaims is a token's payload as Mint writes it: the audience an
// array, times in whole seconds (0: absent). Decoding into plain fields
// skips the nested decoding of the library's claim types.
type wireClaims struct {
	Project string   `json:"project"`
	Perms   []string `json:"perms"`
	Ports   []int    `json:"ports"`
	Iss     string   `json:"iss"`
	Sub     string   `json:"sub"`
	Aud     []string `json:"aud"`
	Exp     int64    `json:"exp"`
	Nbf     int64    `json:"nbf"`
	Iat     int64    `json:"iat"`
	Jti     string   `json:"jti"`
}

func (w *wireClaims) claims() Claims {
	date := func(sec int64) *jwt.NumericDate {
		if sec == 0 {
			return nil
		}
		return jwt.NewNumericDate(time.Unix(sec, 0))
	}
	return Claims{Project: w.Project, Perms: w.Perms, Ports: w.Ports, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: w.Iss, Subject: w.Sub, Audience: w.Aud, ExpiresAt: date(w.Exp), NotBefore: date(w.Nbf),
		IssuedAt: date(w.Iat), ID: w.Jti}}
}

// decodePart decodes one base64url JSON part of a token into v.
func decodePart(part string, v any) error {
	b := make([]byte, b64.DecodedLen(len(part)))
	n, err := b64.Decode(b, []byte(part))
	if err != nil {
		return err
	}
	return json.Unmarshal(b[:n], v)
}

// check applies what a token says about time, issuer and audience, and
// whether its key is still accepted.
func (v *Verifier) check(t *verified) error {
	c := &t.claims
	now := v.now()
	if c.Issuer != Issuer || c.Subject == "" || c.Project == "" {
		return refuse(Malformed, "connect token refused: not a cocalc-hosts connect token (issuer, account or project missing)")
	}
	if !slices.Contains(c.Audience, v.aud) {
		return refuse(WrongAudience, "connect token refused: issued for %v, not for this host (%s)", []string(c.Audience), v.aud)
	}
	if c.ExpiresAt == nil {
		return refuse(Malformed, "connect token refused: it has no expiry")
	}
	if now.After(c.ExpiresAt.Add(Leeway)) {
		return refuse(Expired, "connect token refused: expired at %s", c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if c.NotBefore != nil && now.Add(Leeway).Before(c.NotBefore.Time) {
		return refuse(NotYetValid, "connect token refused: not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	if err := v.KeyAccepted(t.kid); err != nil {
		err.Msg = "connect token refused: " + err.Msg
		return err
	}
	return nil
}
