package agent

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/proxypath"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/webapp"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// sftpHelperArg makes the test binary serve sftp, as `cocalc-hosts
// agent-sftp-server` does.
const sftpHelperArg = "agent-sftp-server"

// ingressTestMain runs the test binary's other role: the sftp helper.
func ingressTestMain() (int, bool) {
	if len(os.Args) == 3 && os.Args[1] == sftpHelperArg {
		if err := ServeSFTP(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// ingressHost is an agent with its ingress on loopback, a keyring playing
// the control plane, and the projects it runs.
type ingressHost struct {
	*host
	keys    *tokens.Keyring
	info    agentapi.IngressInfo
	httpc   *http.Client
	baseURL string
	apps    map[string]bool // projects the web app was copied into
}

func newIngressHost(t testing.TB, tweaks ...func(*agentapi.Config)) *ingressHost {
	t.Helper()
	h := newHost(t, func(c *agentapi.Config) {
		c.Ingress = agentapi.IngressConfig{HTTPSAddr: "127.0.0.1:0", SSHAddr: "127.0.0.1:0", TLSNames: "127.0.0.1,localhost"}
		for _, tw := range tweaks {
			tw(c)
		}
	})
	keys, err := tokens.LoadOrCreate(filepath.Join(t.TempDir(), "signing.json"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ih := &ingressHost{host: h, keys: keys, apps: map[string]bool{}}
	st, err := h.client.Access(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	ih.info = st.Ingress
	if ih.info.HTTPSAddr == "" || ih.info.SSHAddr == "" || ih.info.Error != "" || len(ih.info.TLSCertSHA256) != 64 {
		t.Fatalf("ingress info: %+v", ih.info)
	}
	ih.httpc = pinnedClient(ih.info.TLSCertSHA256)
	ih.baseURL = "https://" + ih.info.HTTPSAddr
	return ih
}

// pinnedClient trusts exactly the certificate with pin, as `project
// open` clients of a self-signed ingress do; it does not follow redirects.
func pinnedClient(pin string) *http.Client {
	tr := &http.Transport{TLSClientConfig: pinnedTLS(pin)}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func pinnedTLS(pin string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by the pin check
		VerifyConnection: func(cs tls.ConnectionState) error {
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if hex.EncodeToString(sum[:]) != pin {
				return errors.New("certificate does not match the pin")
			}
			return nil
		},
	}
}

// push gives the host an access list: accounts per project.
func (ih *ingressHost) push(maxStale time.Duration, projects map[string][]string, sshKeys map[string][]string) {
	ih.t.Helper()
	l := agentapi.AccessList{HostID: ih.cfg.HostID, IssuedAt: time.Now(), MaxStaleSeconds: int64(maxStale / time.Second),
		Keys: ih.keys.Public(time.Now()), SSHKeys: sshKeys}
	for id, accts := range projects {
		l.Projects = append(l.Projects, agentapi.ProjectAccess{ID: id, Accounts: accts,
			Start: &agentapi.StartProjectRequest{Image: ih.env.Image, Limits: agentapi.Limits{MemoryBytes: 128 * mib}}})
	}
	if _, err := ih.client.PutAccess(tctx(ih.t), l); err != nil {
		ih.t.Fatal(err)
	}
}

func (ih *ingressHost) token(account, project string, mod func(*tokens.Grant)) string {
	ih.t.Helper()
	g := tokens.Grant{Account: account, Project: project, HostID: ih.cfg.HostID, Perms: []string{tokens.PermHTTP, tokens.PermSSH},
		Ports: []int{8888}, TTL: 5 * time.Minute, Now: time.Now()}
	if mod != nil {
		mod(&g)
	}
	s, _, err := ih.keys.Mint(g)
	if err != nil {
		ih.t.Fatal(err)
	}
	return s
}

var (
	appOnce sync.Once
	appBin  []byte
)

// startApp copies the test web app into project id and runs it there on
// port of its localhost.
func (ih *ingressHost) startApp(id string, port int) { ih.startAppOn(id, "127.0.0.1", port) }

// startAppOn runs the test web app in project id on addr:port.
func (ih *ingressHost) startAppOn(id, addr string, port int) {
	ih.t.Helper()
	appOnce.Do(func() {
		appBin, _ = os.ReadFile(webapp.Build(ih.t))
	})
	bin := appBin
	if len(bin) == 0 {
		ih.t.Fatal("no web app binary")
	}
	if !ih.apps[id] {
		if _, errOut, code, err := ih.run(id, "cat > ~/app && chmod +x ~/app", string(bin)); err != nil || code != 0 {
			ih.t.Fatalf("copy the app: %v %d %s", err, code, errOut)
		}
		ih.apps[id] = true
	}
	ih.mustRun(id, fmt.Sprintf("nohup ~/app %s:%d >~/app-%d.log 2>&1 </dev/null &", addr, port, port))
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Listening (0A) on the port, over IPv4 or IPv6: Go listens on
		// 0.0.0.0 with one dual-stack socket, which only tcp6 lists.
		out, _, _, _ := ih.run(id, fmt.Sprintf("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -Eqi ':%04X [0-9A-F]+:0000 0A' && echo up", port))
		if strings.Contains(out, "up") {
			return
		}
		if time.Now().After(deadline) {
			log, _, _, _ := ih.run(id, fmt.Sprintf("cat ~/app-%d.log", port))
			ih.t.Fatalf("the app in project %s did not listen on %d: %s", id, port, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get sends a GET with optional headers and returns status and body.
func (ih *ingressHost) get(path string, hdr map[string]string) (int, string, http.Header) {
	ih.t.Helper()
	req, err := http.NewRequest(http.MethodGet, ih.baseURL+path, nil)
	if err != nil {
		ih.t.Fatal(err)
	}
	// The path goes out exactly as written (no cleaning of dots or
	// escapes), as a hostile client would send it.
	p, _, _ := strings.Cut(path, "?")
	req.URL.Opaque = "//" + ih.info.HTTPSAddr + p
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ih.httpc.Do(req)
	if err != nil {
		ih.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func bearerHdr(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok}
}

func seenOf(t *testing.T, body string) webapp.Seen {
	t.Helper()
	var s webapp.Seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("not the app's answer: %v: %s", err, body)
	}
	return s
}

// Two projects with apps on port 8888; alice may use A, bob may use B.
// Through the ingress: bearer tokens, a URL token exchanged once for a
// host-scoped cookie, WebSockets and streaming; every refusal of the
// issue (forged, expired, not yet valid, another host, another project,
// revoked, a rotated-out key after its grace, a stale access list) and
// path tricks, none of which reaches the other project.
func TestIngressHTTP(t *testing.T) {
	ih := newIngressHost(t)
	a := ih.newProject(agentapi.Limits{MemoryBytes: 256 * mib}, 0)
	b := ih.newProject(agentapi.Limits{MemoryBytes: 256 * mib}, 0)
	ih.startApp(a, 8888)
	ih.startApp(b, 8888)

	// No access list yet: nobody gets in.
	tokA := ih.token("alice", a, nil)
	if code, body, _ := ih.get(proxypath.Prefix(a, 8888), bearerHdr(tokA)); code != http.StatusServiceUnavailable || !strings.Contains(body, "no access list") {
		t.Fatalf("before any access list: %d %s", code, body)
	}
	ih.push(time.Hour, map[string][]string{a: {"alice"}, b: {"bob"}}, nil)

	t.Run("bearer", func(t *testing.T) {
		code, body, _ := ih.get(proxypath.Prefix(a, 8888)+"some/path?q=1", map[string]string{
			"Authorization": "Bearer " + tokA, "Cookie": "app=1; " + SessionCookie + "=x"})
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
		s := seenOf(t, body)
		if s.Project != a || s.RequestURI != proxypath.Prefix(a, 8888)+"some/path?q=1" || s.Host != ih.info.HTTPSAddr ||
			s.Prefix != "/"+a+"/port/8888" {
			t.Fatalf("the app saw %+v", s)
		}
		// The user's credentials for the host never reach the app.
		if s.Authorization != "" || s.Cookie != "app=1" {
			t.Fatalf("credentials reached the app: %+v", s)
		}
	})

	t.Run("url token exchanged once for a cookie", func(t *testing.T) {
		tok := ih.token("alice", a, nil)
		path := proxypath.Prefix(a, 8888) + "x?keep=1&" + TokenParam + "=" + tok
		code, body, hdr := ih.get(path, nil)
		if code != http.StatusSeeOther || hdr.Get("Location") != proxypath.Prefix(a, 8888)+"x?keep=1" {
			t.Fatalf("exchange: %d %v %s", code, hdr, body)
		}
		ck := (&http.Response{Header: hdr}).Cookies()
		if len(ck) != 1 || ck[0].Name != SessionCookie || !ck[0].HttpOnly || !ck[0].Secure || ck[0].Path != proxypath.Prefix(a, 8888) {
			t.Fatalf("cookie: %+v", ck)
		}
		cookie := map[string]string{"Cookie": SessionCookie + "=" + ck[0].Value}
		if code, body, _ := ih.get(proxypath.Prefix(a, 8888)+"x?keep=1", cookie); code != http.StatusOK || seenOf(t, body).Cookie != "" {
			t.Fatalf("with the cookie: %d %s", code, body)
		}
		// The same link again, without the cookie (someone who found it
		// in a log or a browser history): refused.
		if code, body, _ := ih.get(path, nil); code != http.StatusForbidden || !strings.Contains(body, "used already") {
			t.Fatalf("second exchange: %d %s", code, body)
		}
		// The cookie is for project A's port only.
		if code, _, _ := ih.get(proxypath.Prefix(b, 8888), cookie); code != http.StatusUnauthorized {
			t.Fatalf("A's cookie on B: %d", code)
		}
	})

	t.Run("websocket and streaming", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		u := "wss://" + ih.info.HTTPSAddr + proxypath.Prefix(a, 8888) + "ws?" + TokenParam + "=" + ih.token("alice", a, nil)
		c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: ih.httpc})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for _, msg := range []string{"hello", strings.Repeat("x", 100000)} {
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := c.Read(ctx)
			if err != nil || string(got) != "echo:"+msg {
				t.Fatalf("websocket echo: %v %.40q", err, got)
			}
		}
		c.Close(websocket.StatusNormalClosure, "")

		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ih.baseURL+proxypath.Prefix(a, 8888)+"stream", nil)
		req.Header.Set("Authorization", "Bearer "+tokA)
		resp, err := ih.httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		// The first line arrives while the app still holds the response.
		if line, err := br.ReadString('\n'); err != nil || line != "one\n" {
			t.Fatalf("first streamed line: %q %v", line, err)
		}
		if code, body, _ := ih.get(proxypath.Prefix(a, 8888)+"release", bearerHdr(tokA)); code != http.StatusOK {
			t.Fatalf("release: %d %s", code, body)
		}
		if rest, err := io.ReadAll(br); err != nil || string(rest) != "two\n" {
			t.Fatalf("rest of the stream: %q %v", rest, err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		forger, err := tokens.LoadOrCreate(filepath.Join(t.TempDir(), "other.json"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		forged, _, _ := forger.Mint(tokens.Grant{Account: "alice", Project: a, HostID: ih.cfg.HostID, Perms: []string{tokens.PermHTTP}, TTL: time.Minute, Now: time.Now()})
		for _, c := range []struct {
			name, tok, path string
			code            int
			reason          string
		}{
			{"forged", forged, a, 401, "unknown_key"},
			{"altered", tokA[:len(tokA)-4] + "AAAA", a, 401, "bad_signature"},
			{"expired", ih.token("alice", a, func(g *tokens.Grant) { g.Now = time.Now().Add(-time.Hour) }), a, 401, "expired"},
			{"not yet valid", ih.token("alice", a, func(g *tokens.Grant) { g.Now = time.Now().Add(time.Hour) }), a, 401, "not_yet_valid"},
			{"another host", ih.token("alice", a, func(g *tokens.Grant) { g.HostID = "99999999-9999-4999-8999-999999999999" }), a, 403, "wrong_audience"},
			{"another project", tokA, b, 403, "wrong_project"},
			{"another port", ih.token("alice", a, func(g *tokens.Grant) { g.Ports = []int{9999} }), a, 403, "not_permitted"},
			{"ssh only", ih.token("alice", a, func(g *tokens.Grant) { g.Perms = []string{tokens.PermSSH} }), a, 403, "not_permitted"},
			{"not a collaborator", ih.token("bob", a, nil), a, 403, "revoked"},
			{"no token", "", a, 401, "no_token"},
		} {
			hdr := map[string]string{}
			if c.tok != "" {
				hdr = bearerHdr(c.tok)
			}
			code, body, _ := ih.get(proxypath.Prefix(c.path, 8888), hdr)
			if code != c.code || !strings.HasPrefix(body, c.reason+":") {
				t.Errorf("%s: %d %q, want %d %s", c.name, code, body, c.code, c.reason)
			}
		}
	})

	t.Run("path tricks", func(t *testing.T) {
		upper := strings.ToUpper(b)
		for _, p := range []string{
			"/" + a + "/port/8888/../../" + b + "/port/8888/",
			"/" + a + "/port/8888/..%2F..%2F" + b + "%2Fport%2F8888/",
			"/" + a + "/port/8888//" + b + "/port/8888/",
		} {
			// Alice's token: these reach A's app (the prefix decides), never B's.
			code, body, _ := ih.get(p, bearerHdr(tokA))
			if code != http.StatusOK || seenOf(t, body).Project != a {
				t.Errorf("%s: %d %s", p, code, body)
			}
		}
		for _, p := range []string{
			"//" + b + "/port/8888/", "/" + upper + "/port/8888/", "/" + b + "%2Fport/8888/", "/" + b + "/port/08888/",
			"/" + b + "/port/65536/", "/" + b + "/port/99999999999999999999/", "/" + b + "//port/8888/",
			"/x/../" + b + "/port/8888/", "/%2e%2e/" + b + "/port/8888/", "/" + strings.ReplaceAll(b, "-", "") + "/port/8888/",
		} {
			// Bob's own token: not an ingress path, so 404 before any check.
			code, body, _ := ih.get(p, bearerHdr(ih.token("bob", b, nil)))
			if code != http.StatusNotFound {
				t.Errorf("%s: %d %s, want 404", p, code, body)
			}
		}
	})

	t.Run("revoked after refresh, sessions too", func(t *testing.T) {
		tokBob := ih.token("bob", b, nil)
		path := proxypath.Prefix(b, 8888) + "?" + TokenParam + "=" + ih.token("bob", b, nil)
		_, _, hdr := ih.get(path, nil)
		cookie := map[string]string{"Cookie": (&http.Response{Header: hdr}).Cookies()[0].String()}
		if code, _, _ := ih.get(proxypath.Prefix(b, 8888), cookie); code != http.StatusOK {
			t.Fatalf("bob's session: %d", code)
		}
		ih.push(time.Hour, map[string][]string{a: {"alice"}, b: {"carol"}}, nil)
		for _, hd := range []map[string]string{bearerHdr(tokBob), cookie} {
			if code, body, _ := ih.get(proxypath.Prefix(b, 8888), hd); code != http.StatusForbidden || !strings.HasPrefix(body, "revoked:") {
				t.Fatalf("bob after revocation: %d %s", code, body)
			}
		}
	})

	t.Run("rotated-out key after its grace", func(t *testing.T) {
		old := ih.token("alice", a, nil)
		keys, err := tokens.Rotate(ih.keys.Path, time.Now(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ih.keys = keys
		ih.push(time.Hour, map[string][]string{a: {"alice"}, b: {"bob"}}, nil)
		if code, body, _ := ih.get(proxypath.Prefix(a, 8888), bearerHdr(old)); code != http.StatusOK {
			t.Fatalf("old key within its grace: %d %s", code, body)
		}
		waitHTTP(t, ih, proxypath.Prefix(a, 8888), bearerHdr(old), http.StatusUnauthorized, "retired_key:", 30*time.Second)
		if code, body, _ := ih.get(proxypath.Prefix(a, 8888), bearerHdr(ih.token("alice", a, nil))); code != http.StatusOK {
			t.Fatalf("new key: %d %s", code, body)
		}
	})

	t.Run("control plane gone: served within max stale, then refused", func(t *testing.T) {
		tok := ih.token("alice", a, nil)
		ih.push(3*time.Second, map[string][]string{a: {"alice"}, b: {"bob"}}, nil)
		if code, _, _ := ih.get(proxypath.Prefix(a, 8888), bearerHdr(tok)); code != http.StatusOK {
			t.Fatalf("fresh list: %d", code)
		}
		waitHTTP(t, ih, proxypath.Prefix(a, 8888), bearerHdr(tok), http.StatusServiceUnavailable, "unavailable:", 30*time.Second)
		// An agent restarted meanwhile keeps the (stale) list it had.
		ih.kill()
		ih.start()
		if st, err := ih.client.Access(tctx(t)); err != nil || !st.Stale || st.Projects != 2 {
			t.Fatalf("after a restart: %+v %v", st, err)
		}
		ih.push(time.Hour, map[string][]string{a: {"alice"}, b: {"bob"}}, nil)
	})
}

// waitHTTP polls path until it answers code with a body starting with
// prefix.
func waitHTTP(t *testing.T, ih *ingressHost, path string, hdr map[string]string, code int, prefix string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, body, _ := ih.get(path, hdr)
		if c == code && strings.HasPrefix(body, prefix) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d %q after %s, want %d %s", path, c, body, within, code, prefix)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// userKey makes an SSH key pair for a user.
func userKey(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

func (ih *ingressHost) cert(t *testing.T, signer ssh.Signer, account, project string, mod func(*tokens.CertGrant)) ssh.Signer {
	t.Helper()
	g := tokens.CertGrant{Account: account, Project: project, HostID: ih.cfg.HostID, PublicKey: signer.PublicKey(), Validity: 5 * time.Minute, Now: time.Now()}
	if mod != nil {
		mod(&g)
	}
	cert, err := ih.keys.SignCert(g)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(cert, signer)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// sshDial logs in as project with signer and returns the client or the
// refusal banner.
func (ih *ingressHost) sshDial(project string, signer ssh.Signer) (*ssh.Client, string, error) {
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(ih.info.SSHHostKey))
	if err != nil {
		return nil, "", err
	}
	var banner strings.Builder
	c, err := ssh.Dial("tcp", ih.info.SSHAddr, &ssh.ClientConfig{
		User: project, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(hostKey),
		BannerCallback: func(m string) error { banner.WriteString(m); return nil }, Timeout: 20 * time.Second,
	})
	return c, banner.String(), err
}

func sshRun(t *testing.T, c *ssh.Client, cmd, stdin string) (string, int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Stdin = strings.NewReader(stdin)
	out, err := s.CombinedOutput(cmd)
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitStatus()
	}
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	return string(out), 0
}

// The SSH ingress with Go's client: a certificate or an account key logs
// in to a shell inside the container; every refusal says why.
func TestIngressSSH(t *testing.T) {
	ih := newIngressHost(t)
	a := ih.newProject(agentapi.Limits{MemoryBytes: 256 * mib}, 0)
	b := ih.newProject(agentapi.Limits{MemoryBytes: 256 * mib}, 0)
	signer, _ := userKey(t)
	accountKey, _ := userKey(t)
	ih.push(time.Hour, map[string][]string{a: {"alice"}, b: {"bob"}},
		map[string][]string{"alice": {authorizedKey(accountKey.PublicKey())}})

	c, banner, err := ih.sshDial(a, ih.cert(t, signer, "alice", a, nil))
	if err != nil {
		t.Fatalf("login with a certificate: %v (%s)", err, banner)
	}
	out, code := sshRun(t, c, "id -u; pwd; echo $COCALC_PROJECT_ID; cat; exit 3", "from stdin\n")
	if code != 3 || out != fmt.Sprintf("1000\n/home/user\n%s\nfrom stdin\n", a) {
		t.Fatalf("exec: %d %q", code, out)
	}
	c.Close()
	c, banner, err = ih.sshDial(a, accountKey)
	if err != nil {
		t.Fatalf("login with alice's account key: %v (%s)", err, banner)
	}
	c.Close()

	forger, err := tokens.LoadOrCreate(filepath.Join(t.TempDir(), "other.json"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	fc, _ := forger.SignCert(tokens.CertGrant{Account: "alice", Project: a, HostID: ih.cfg.HostID, PublicKey: signer.PublicKey(), Validity: time.Minute, Now: time.Now()})
	forged, _ := ssh.NewCertSigner(fc, signer)
	stranger, _ := userKey(t)
	for _, c := range []struct {
		name, user string
		signer     ssh.Signer
		reason     string
	}{
		{"forged", a, forged, "does not trust"},
		{"expired", a, ih.cert(t, signer, "alice", a, func(g *tokens.CertGrant) { g.Now = time.Now().Add(-time.Hour) }), "expired"},
		{"not yet valid", a, ih.cert(t, signer, "alice", a, func(g *tokens.CertGrant) { g.Now = time.Now().Add(time.Hour) }), "not valid before"},
		{"another host", a, ih.cert(t, signer, "alice", a, func(g *tokens.CertGrant) { g.HostID = "99999999-9999-4999-8999-999999999999" }), "not this host"},
		{"another project", b, ih.cert(t, signer, "alice", a, nil), "not for " + b},
		{"not a collaborator", a, ih.cert(t, signer, "bob", a, nil), "may not use project"},
		{"account key on another project", b, accountKey, "not a key of an account"},
		{"unknown key", a, stranger, "not a key of an account"},
		{"not a project", "root", ih.cert(t, signer, "alice", a, nil), "log in as a project id"},
	} {
		_, banner, err := ih.sshDial(c.user, c.signer)
		if err == nil || !strings.Contains(banner, c.reason) {
			t.Errorf("%s: err %v, banner %q, want %q", c.name, err, banner, c.reason)
		}
	}

	// Revoked: alice's certificate stops working once the list says so.
	cert := ih.cert(t, signer, "alice", a, nil)
	ih.push(time.Hour, map[string][]string{a: {"carol"}, b: {"bob"}}, nil)
	if _, banner, err := ih.sshDial(a, cert); err == nil || !strings.Contains(banner, "may not use project") {
		t.Fatalf("revoked: %v %q", err, banner)
	}
	// A stale list refuses everyone.
	ih.push(2*time.Second, map[string][]string{a: {"alice"}}, nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, banner, err := ih.sshDial(a, cert)
		if err != nil && strings.Contains(banner, "longer ago than") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale list still admits: %v %q", err, banner)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A stopped project is started by a login.
	ih.push(time.Hour, map[string][]string{a: {"alice"}}, nil)
	if _, err := ih.client.StopProject(tctx(t), a); err != nil {
		t.Fatal(err)
	}
	c, banner, err = ih.sshDial(a, cert)
	if err != nil {
		t.Fatalf("login to a stopped project: %v %s", err, banner)
	}
	defer c.Close()
	if out, code := sshRun(t, c, "echo started", ""); code != 0 || out != "started\n" {
		t.Fatalf("after start on login: %d %q", code, out)
	}
	if st, err := ih.client.Project(tctx(t), a); err != nil || st.State != agentapi.ProjectRunning {
		t.Fatalf("project after the login: %+v %v", st, err)
	}
}

// openSSHFiles writes what OpenSSH's client needs to log in to project
// with a certificate: the key, its certificate and the host's pinned key.
// It returns the ssh options that use them.
func (ih *ingressHost) openSSHFiles(t *testing.T, account, project string) []string {
	t.Helper()
	dir := t.TempDir()
	signer, priv := userKey(t)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := ih.keys.SignCert(tokens.CertGrant{Account: account, Project: project, HostID: ih.cfg.HostID,
		PublicKey: signer.PublicKey(), Validity: 10 * time.Minute, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(ih.info.SSHAddr)
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(fmt.Sprintf("[%s]:%s %s\n", host, port, ih.info.SSHHostKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-F", "/dev/null", "-i", key, "-o", "CertificateFile=" + key + "-cert.pub", "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// OpenSSH's own clients through the SSH ingress: ssh (a command, a
// terminal), scp and sftp (as the project's user, inside the container's
// filesystem), and ssh -L to a server on the project's localhost.
func TestIngressOpenSSH(t *testing.T) {
	for _, tool := range []string{"ssh", "scp", "sftp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing; run scripts/install-deps.sh", tool)
		}
	}
	ih := newIngressHost(t)
	a := ih.newProject(agentapi.Limits{MemoryBytes: 256 * mib}, 0)
	ih.push(time.Hour, map[string][]string{a: {"alice"}}, nil)
	ih.startApp(a, 8888)
	opts := ih.openSSHFiles(t, "alice", a)
	host, port, _ := net.SplitHostPort(ih.info.SSHAddr)
	dest := a + "@" + host
	sshArgs := func(more ...string) []string { return append(append(append([]string{}, opts...), "-p", port), more...) }

	if out := runTool(t, "ssh", sshArgs(dest, "id -u; pwd; hostname")...); out != "1000\n/home/user\nproject-"+a[:8]+"\n" {
		t.Fatalf("ssh command: %q", out)
	}
	if out := runTool(t, "ssh", sshArgs("-tt", dest, "tty; echo $TERM")...); !strings.Contains(out, "/dev/pts/") {
		t.Fatalf("ssh -tt: %q", out)
	}

	dir := t.TempDir()
	local := filepath.Join(dir, "up.bin")
	payload := make([]byte, 3<<20)
	rand.Read(payload) //nolint:errcheck
	if err := os.WriteFile(local, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, "scp", append(append(append([]string{}, opts...), "-P", port), local, dest+":up.bin")...)
	if out := ih.mustRun(a, "stat -c '%u %s' ~/up.bin"); out != fmt.Sprintf("1000 %d\n", len(payload)) {
		t.Fatalf("uploaded with scp: %q", out)
	}
	back := filepath.Join(dir, "back.bin")
	runTool(t, "scp", append(append(append([]string{}, opts...), "-P", port), dest+":up.bin", back)...)
	if b, err := os.ReadFile(back); err != nil || string(b) != string(payload) {
		t.Fatalf("scp back: %v (%d bytes)", err, len(b))
	}

	batch := filepath.Join(dir, "batch")
	os.WriteFile(batch, []byte("put "+local+" via-sftp.bin\nls -l\nget /etc/hostname "+filepath.Join(dir, "hostname")+"\n"), 0o600) //nolint:errcheck
	out := runTool(t, "sftp", append(append(append([]string{}, opts...), "-P", port, "-b", batch), dest)...)
	if !strings.Contains(out, "via-sftp.bin") {
		t.Fatalf("sftp ls: %s", out)
	}
	// The root sftp sees is the container's: its /etc/hostname.
	if b, _ := os.ReadFile(filepath.Join(dir, "hostname")); strings.TrimSpace(string(b)) != "project-"+a[:8] {
		t.Fatalf("sftp's /etc/hostname: %q", b)
	}
	if out := ih.mustRun(a, "stat -c %u ~/via-sftp.bin"); out != "1000\n" {
		t.Fatalf("sftp upload owner: %q", out)
	}

	// ssh -L to the app, which listens on the project's localhost only.
	lport := freePort(t)
	fwd := exec.Command("ssh", sshArgs("-N", "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:localhost:8888", lport), dest)...)
	fwd.Stderr = os.Stderr
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { fwd.Process.Kill(); fwd.Wait() }() //nolint:errcheck
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/through-the-tunnel", lport))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if s := seenOf(t, string(b)); s.Project != a || s.RequestURI != "/through-the-tunnel" {
				t.Fatalf("through ssh -L: %+v", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh -L: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Forwarding anywhere but the project's localhost is refused (the
	// reason is in the client's verbose log).
	cmd := exec.Command("ssh", append([]string{"-v"}, sshArgs("-W", "10.88.0.1:22", dest)...)...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "only ports on the project's own localhost") {
		t.Fatalf("ssh -W to another address: %v %s", err, out)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
