package gcpfake

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ServiceAccountKey makes a service-account JSON key the fake accepts:
// its token_uri is the fake's /token endpoint, which verifies the signed
// assertion with this key's public half. Write it to a 0600 file and give
// that to the provider as its credentials.
func (s *Server) ServiceAccountKey(email string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.keys[email] = &key.PublicKey
	s.seq++
	kid := fmt.Sprintf("%040x", s.seq)
	s.mu.Unlock()
	return json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  s.opts.Project,
		"private_key_id":              kid,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   "100000000000000000000",
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   s.URL + "/token",
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + url.PathEscape(email),
	}, "", "  ")
}

// RevokeKeys forgets every service-account key, as deleting them in the
// console does: tokens already issued stop working too.
func (s *Server) RevokeKeys() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = map[string]any{}
	s.tokens = map[string]bool{}
}

// token implements the OAuth 2.0 JWT bearer grant (RFC 7523) that
// service-account keys use.
func (s *Server) token(w http.ResponseWriter, r *http.Request, body []byte) {
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, "unsupported_grant_type", "Invalid grant_type")
		return
	}
	email, err := s.verifyAssertion(form.Get("assertion"))
	if err != nil {
		oauthError(w, "invalid_grant", err.Error())
		return
	}
	s.mu.Lock()
	s.seq++
	tok := fmt.Sprintf("ya29.fake-%d-%s", s.seq, strings.SplitN(email, "@", 2)[0])
	s.tokens[tok] = true
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_in": 3599, "token_type": "Bearer"})
}

func oauthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *Server) verifyAssertion(jwt string) (string, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("assertion is not a JWT")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Exp   int64  `json:"exp"`
		Iat   int64  `json:"iat"`
	}
	if err := decodeSegment(parts[0], &header); err != nil || header.Alg != "RS256" {
		return "", fmt.Errorf("assertion header: want alg RS256")
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return "", fmt.Errorf("assertion claims: %v", err)
	}
	s.mu.Lock()
	pub, ok := s.keys[claims.Iss].(*rsa.PublicKey)
	s.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("Invalid JWT Signature.")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", fmt.Errorf("Invalid JWT Signature.")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return "", fmt.Errorf("Invalid JWT Signature.")
	}
	if now := time.Now().Unix(); claims.Exp < now || claims.Iat > now+300 {
		return "", fmt.Errorf("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
	}
	// Google checks the audience: an assertion is good only for the token
	// endpoint it names.
	if claims.Aud != s.URL+"/token" {
		return "", fmt.Errorf("Invalid JWT: Failed audience check. The right audience is %s/token", s.URL)
	}
	if claims.Scope == "" {
		return "", fmt.Errorf("Invalid JWT: no scope")
	}
	return claims.Iss, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[tok]
}

// billingSKUs serves GET /v1/services/{service}/skus.
func (s *Server) billingSKUs(w http.ResponseWriter, r *http.Request, rt route) {
	if rt.name != "6F81-5844-456A" {
		writeError(w, http.StatusNotFound, "notFound", fmt.Sprintf("Service services/%s not found.", rt.name), "")
		return
	}
	q := r.URL.Query()
	if c := q.Get("currencyCode"); c != "" && c != "USD" {
		writeError(w, http.StatusBadRequest, "invalid", "the fake prices in USD only", "")
		return
	}
	s.mu.Lock()
	raw := s.billingRaw
	skus := append([]SKU(nil), s.skus...)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if raw != nil {
		w.Write(raw)
		return
	}
	size := 5000
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "invalid", "Invalid pageSize", "")
			return
		}
		if n > 0 && n < size {
			size = n
		}
	}
	if s.opts.PageSize < size {
		size = s.opts.PageSize
	}
	start := 0
	if tok := q.Get("pageToken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "page-"))
		if err != nil || n < 0 || n > len(skus) {
			writeError(w, http.StatusBadRequest, "invalid", "Invalid pageToken", "")
			return
		}
		start = n
	}
	end := min(start+size, len(skus))
	next := ""
	if end < len(skus) {
		next = "page-" + strconv.Itoa(end)
	}
	json.NewEncoder(w).Encode(map[string]any{"skus": skus[start:end], "nextPageToken": next})
}
