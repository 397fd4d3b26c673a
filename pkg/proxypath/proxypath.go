// Package proxypath is the base path of the HTTP ingress:
// /<project_id>/port/<n>/… reaches port n inside the project's container.
// It is parsed strictly, on the path as it came over the wire (still
// escaped), before any routing: a canonical lowercase UUID, then
// "port", then a port number 1-65535 without leading zeros, then the end
// or a slash. Anything else is not an ingress path, so no project is ever
// touched for it; an escaped slash or dot can never be read as part of
// the prefix.
package proxypath

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// Target is what a path asks for.
type Target struct {
	Project string
	Port    int
	// Rest is what follows the prefix, starting with "/" (empty when the
	// path is the bare prefix without its trailing slash).
	Rest string
}

// Prefix is the base path of port on project, with its trailing slash.
func Prefix(project string, port int) string {
	return "/" + project + "/port/" + strconv.Itoa(port) + "/"
}

// Parse reads an escaped request path (as in the request line, without
// the query).
func Parse(escaped string) (Target, bool) {
	const uuidLen = 36
	if len(escaped) < 1+uuidLen || escaped[0] != '/' {
		return Target{}, false
	}
	id := escaped[1 : 1+uuidLen]
	if !model.CanonicalUUID(id) {
		return Target{}, false
	}
	rest, ok := strings.CutPrefix(escaped[1+uuidLen:], "/port/")
	if !ok {
		return Target{}, false
	}
	n := 0
	for n < len(rest) && n < 6 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || n > 5 || rest[0] == '0' {
		return Target{}, false
	}
	port, err := strconv.Atoi(rest[:n])
	if err != nil || port < 1 || port > 65535 {
		return Target{}, false
	}
	tail := rest[n:]
	if tail != "" && tail[0] != '/' {
		return Target{}, false
	}
	return Target{Project: id, Port: port, Rest: tail}, true
}

// RequestPath is r's path as sent, still escaped: the request line's
// target (origin form), or the path of an absolute-form target. It is
// what Parse reads, never the decoded r.URL.Path.
func RequestPath(r *http.Request) string {
	u := r.RequestURI
	if strings.HasPrefix(u, "/") {
		p, _, _ := strings.Cut(u, "?")
		return p
	}
	if pu, err := url.ParseRequestURI(u); err == nil && pu.Scheme != "" {
		return pu.EscapedPath()
	}
	return ""
}
