// Package dnsfake is an in-memory fake of Cloudflare's v4 DNS records API
// (zones/{zone_id}/dns_records), following the documented envelopes
// ({"success","errors","messages","result","result_info"}), bearer-token
// authentication and page/per_page pagination, with fault injection. Tests
// drive it through the real cloudflare-go client.
package dnsfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Record is a DNS record as the API returns it.
type Record struct {
	ID         string    `json:"id"`
	ZoneID     string    `json:"zone_id"`
	ZoneName   string    `json:"zone_name"`
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	Content    string    `json:"content"`
	Proxiable  bool      `json:"proxiable"`
	Proxied    bool      `json:"proxied"`
	TTL        float64   `json:"ttl"`
	Comment    string    `json:"comment,omitempty"`
	Tags       []string  `json:"tags"`
	Meta       any       `json:"meta"`
	CreatedOn  time.Time `json:"created_on"`
	ModifiedOn time.Time `json:"modified_on"`
}

// Server is a fake Cloudflare API with one zone.
type Server struct {
	*httptest.Server
	ZoneID   string
	ZoneName string
	Token    string

	mu      sync.Mutex
	records map[string]Record
	faults  []fault
	calls   map[string]int
}

type fault struct {
	status     int
	retryAfter string
}

// New starts a fake serving zone zoneID (named zoneName) for token.
func New(zoneID, zoneName, token string) *Server {
	s := &Server{ZoneID: zoneID, ZoneName: zoneName, Token: token, records: map[string]Record{}, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// BaseURL is what clients use as their API base.
func (s *Server) BaseURL() string { return s.URL + "/client/v4" }

// FailNext makes the next n requests fail with status (e.g. 500, or 429
// with a Retry-After of retryAfter seconds when retryAfter is not empty).
func (s *Server) FailNext(n, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{status, retryAfter})
	}
}

// Records returns the zone's records sorted by name and id.
func (s *Server) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.records))
	for _, r := range s.records {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Put adds a record directly, as a user editing the zone would.
func (s *Server) Put(r Record) Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.ID == "" {
		r.ID = newID()
	}
	r.ZoneID, r.ZoneName = s.ZoneID, s.ZoneName
	s.records[r.ID] = r
	return r
}

// Calls counts requests by "METHOD kind" ("GET list", "POST create",
// "PUT update", "PATCH edit", "DELETE delete", "GET get").
func (s *Server) Calls(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[kind]
}

type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func reply(w http.ResponseWriter, status int, result any, info any, errs ...apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"success": len(errs) == 0, "errors": errs, "messages": []any{}, "result": result}
	if errs == nil {
		body["errors"] = []apiError{}
	}
	if info != nil {
		body["result_info"] = info
	}
	json.NewEncoder(w).Encode(body) //nolint:errcheck
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) > 0 {
		f := s.faults[0]
		s.faults = s.faults[1:]
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		reply(w, f.status, nil, nil, apiError{Code: 10000 + f.status, Message: http.StatusText(f.status)})
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		reply(w, http.StatusForbidden, nil, nil, apiError{Code: 10000, Message: "Authentication error"})
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/client/v4/zones/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) < 2 || parts[1] != "dns_records" || len(parts) > 3 {
		reply(w, http.StatusNotFound, nil, nil, apiError{Code: 7000, Message: "No route for that URI"})
		return
	}
	if parts[0] != s.ZoneID {
		reply(w, http.StatusNotFound, nil, nil, apiError{Code: 7003,
			Message: "Could not route to /zones/" + parts[0] + "/dns_records, perhaps your object identifier is invalid?"})
		return
	}
	if len(parts) == 2 {
		switch r.Method {
		case http.MethodGet:
			s.calls["GET list"]++
			s.list(w, r)
		case http.MethodPost:
			s.calls["POST create"]++
			s.write(w, r, "")
		default:
			reply(w, http.StatusMethodNotAllowed, nil, nil, apiError{Code: 10405, Message: "Method not allowed"})
		}
		return
	}
	id := parts[2]
	rec, exists := s.records[id]
	if !exists {
		reply(w, http.StatusNotFound, nil, nil, apiError{Code: 81044, Message: "Record does not exist."})
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.calls["GET get"]++
		reply(w, http.StatusOK, rec, nil)
	case http.MethodPut:
		s.calls["PUT update"]++
		s.write(w, r, id)
	case http.MethodPatch:
		s.calls["PATCH edit"]++
		s.write(w, r, id)
	case http.MethodDelete:
		s.calls["DELETE delete"]++
		delete(s.records, id)
		reply(w, http.StatusOK, map[string]string{"id": id}, nil)
	default:
		reply(w, http.StatusMethodNotAllowed, nil, nil, apiError{Code: 10405, Message: "Method not allowed"})
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var match []Record
	for _, rec := range s.records {
		if t := q.Get("type"); t != "" && rec.Type != t {
			continue
		}
		if n := q.Get("name.exact"); n != "" && !strings.EqualFold(rec.Name, n) {
			continue
		}
		if n := q.Get("name"); n != "" && !strings.EqualFold(rec.Name, n) {
			continue
		}
		match = append(match, rec)
	}
	sort.Slice(match, func(i, j int) bool { return match[i].ID < match[j].ID })
	page, perPage := atoiOr(q.Get("page"), 1), atoiOr(q.Get("per_page"), 100)
	if page < 1 || perPage < 1 || perPage > 5000000 {
		reply(w, http.StatusBadRequest, nil, nil, apiError{Code: 1004, Message: "DNS Validation Error: bad page or per_page"})
		return
	}
	from := min((page-1)*perPage, len(match))
	to := min(from+perPage, len(match))
	result := match[from:to]
	if result == nil {
		result = []Record{}
	}
	totalPages := (len(match) + perPage - 1) / perPage
	reply(w, http.StatusOK, result, map[string]int{"page": page, "per_page": perPage, "count": len(result),
		"total_count": len(match), "total_pages": totalPages})
}

// write creates (id == "") or replaces a record from the request body.
func (s *Server) write(w http.ResponseWriter, r *http.Request, id string) {
	var in struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Content string   `json:"content"`
		TTL     *float64 `json:"ttl"`
		Proxied *bool    `json:"proxied"`
		Comment string   `json:"comment"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		reply(w, http.StatusBadRequest, nil, nil, apiError{Code: 9207, Message: "Request body is invalid: " + err.Error()})
		return
	}
	now := time.Now().UTC()
	rec := Record{ID: id, ZoneID: s.ZoneID, ZoneName: s.ZoneName, Type: in.Type, Name: strings.ToLower(in.Name),
		Content: in.Content, Proxiable: true, TTL: 1, Comment: in.Comment, Tags: []string{}, Meta: map[string]any{},
		CreatedOn: now, ModifiedOn: now}
	if old, ok := s.records[id]; ok {
		rec.CreatedOn = old.CreatedOn
		if r.Method == http.MethodPatch {
			// PATCH changes only what the body names.
			if in.Type == "" {
				rec.Type = old.Type
			}
			if in.Name == "" {
				rec.Name = old.Name
			}
			if in.Content == "" {
				rec.Content = old.Content
			}
		}
	}
	if in.TTL != nil {
		rec.TTL = *in.TTL
	}
	if in.Proxied != nil {
		rec.Proxied = *in.Proxied
	}
	switch {
	case rec.Type != "A" && rec.Type != "TXT":
		reply(w, http.StatusBadRequest, nil, nil, apiError{Code: 9000, Message: "DNS Validation Error: this fake serves A and TXT records only"})
		return
	case rec.Name == "" || !(rec.Name == s.ZoneName || strings.HasSuffix(rec.Name, "."+s.ZoneName)):
		reply(w, http.StatusBadRequest, nil, nil, apiError{Code: 9007, Message: fmt.Sprintf("Content for %s record is invalid: name %q is not in zone %s", rec.Type, rec.Name, s.ZoneName)})
		return
	case rec.Type == "TXT" && (rec.Content == "" || len(rec.Content) > 2048):
		reply(w, http.StatusBadRequest, nil, nil, apiError{Code: 9101, Message: "Content for TXT record is invalid."})
		return
	case rec.Type == "A" && !validIPv4(rec.Content):
		reply(w, http.StatusBadRequest, nil, nil, apiError{Code: 9005, Message: "Content for A record must be a valid IPv4 address."})
		return
	case rec.TTL != 1 && (rec.TTL < 60 || rec.TTL > 86400):
		reply(w, http.StatusBadRequest, nil, nil, apiError{Code: 9021, Message: "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."})
		return
	}
	for _, other := range s.records {
		// Cloudflare refuses an identical record (same type, name, content).
		if other.ID != id && other.Type == rec.Type && other.Name == rec.Name && other.Content == rec.Content {
			reply(w, http.StatusBadRequest, nil, nil, apiError{Code: 81058, Message: "An identical record already exists."})
			return
		}
	}
	if rec.ID == "" {
		rec.ID = newID()
	}
	s.records[rec.ID] = rec
	reply(w, http.StatusOK, rec, nil)
}

func validIPv4(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 || (len(p) > 1 && p[0] == '0') {
			return false
		}
	}
	return true
}

func atoiOr(s string, def int) int {
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b) //nolint:errcheck
	return hex.EncodeToString(b)
}
