package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sagemathinc/cocalc-hosts/bootstrap"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman/podmantest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/webapp"
)

// ingressCLI is an sshCLI acting as one account.
type ingressCLI struct {
	*sshCLI
	account string
}

func (c ingressCLI) ok(args ...string) string {
	c.t.Helper()
	out, _ := c.sshCLI.ok(append([]string{"--account", c.account}, args...)...)
	return out
}

func (c ingressCLI) json(v any, args ...string) {
	c.t.Helper()
	c.sshCLI.json(v, append([]string{"--account", c.account}, args...)...)
}

// pinnedHTTP trusts exactly the certificate with pin and follows no
// redirects.
func pinnedHTTP(pin string) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // replaced by the pin check
			VerifyConnection: func(cs tls.ConnectionState) error {
				sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
				if hex.EncodeToString(sum[:]) != pin {
					return errors.New("certificate does not match the pin")
				}
				return nil
			},
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type opened struct {
	URL           string `json:"url"`
	TLSCertSHA256 string `json:"tls_cert_sha256"`
}

// browser is what a browser does with a `project open` link: exchange the
// token for the host's session cookie, then use the cookie.
type browser struct {
	t      *testing.T
	c      *http.Client
	base   string // https://host:port/PROJECT/port/N/
	cookie string
}

func openBrowser(t *testing.T, o opened) *browser {
	t.Helper()
	return openBrowserWith(t, o.URL, pinnedHTTP(o.TLSCertSHA256))
}

// openBrowserWith opens link with c (which follows no redirect).
func openBrowserWith(t *testing.T, link string, c *http.Client) *browser {
	t.Helper()
	b := &browser{t: t, c: c}
	resp, err := b.c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if resp.StatusCode != http.StatusSeeOther || err != nil || len(resp.Cookies()) != 1 {
		t.Fatalf("opening %s: %s %v %v", link, resp.Status, err, resp.Cookies())
	}
	if strings.Contains(loc.String(), "cocalc_token") {
		t.Fatalf("the token stays in the address: %s", loc)
	}
	b.base, b.cookie = loc.String(), resp.Cookies()[0].Name+"="+resp.Cookies()[0].Value
	return b
}

// browseApp opens link (from `project open` on port 8888 of project p,
// whose app is starting) with c, and waits until the app answers with
// the request as it sent it, no cookie of the host's passed on.
func browseApp(t *testing.T, p, link string, c *http.Client) *browser {
	t.Helper()
	var b *browser
	eventually(t, 30*time.Second, "the app answers through the ingress", func() (bool, string) {
		if b == nil {
			b = openBrowserWith(t, link, c)
		}
		code, body := b.get("hello?x=1")
		var seen webapp.Seen
		return code == 200 && json.Unmarshal([]byte(body), &seen) == nil && seen.Project == p &&
			seen.RequestURI == "/"+p+"/port/8888/hello?x=1" && seen.Cookie == "", fmt.Sprint(code, body)
	})
	return b
}

// wsEcho opens the app's WebSocket with link's token and checks its echo.
func wsEcho(t *testing.T, ctx context.Context, link string, c *http.Client) {
	t.Helper()
	wsURL := "wss" + strings.TrimPrefix(strings.Replace(link, "/?cocalc_token", "/ws?cocalc_token", 1), "https")
	ws, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("websocket %s: %v", wsURL, err)
	}
	defer ws.Close(websocket.StatusNormalClosure, "")
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "echo:ping" {
		t.Fatalf("websocket echo: %q %v", msg, err)
	}
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	req.Header.Set("Cookie", b.cookie)
	resp, err := b.c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// openSSH runs OpenSSH's ssh, scp, sftp or rsync with a config file.
func openSSH(t testing.TB, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustOpenSSH(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	out, err := openSSH(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, limit, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// The end-to-end demonstration on a test VM adopted over SSH: a
// web app in a project reached through the host's HTTPS ingress (HTTP,
// WebSocket, streaming) with a link from `project open`; plain OpenSSH
// (ssh, scp, sftp, rsync -e ssh, ssh -L) with the block from `project
// ssh-config`; a collaborator revoked while the host was unreachable is
// refused once the worker's next push reaches it; with the control plane
// gone the host keeps serving for ingress.acl_max_stale, then refuses;
// and the host holds no private signing key.
func TestSSHIngress(t *testing.T) {
	parallel(t)
	for _, tool := range []string{"ssh", "scp", "sftp", "rsync"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing; run scripts/install-deps.sh", tool)
		}
	}
	const maxStale = 12 * time.Second
	iv := newIngressVM(t, fmt.Sprintf("ingress:\n  acl_ttl: 2s\n  acl_max_stale: %s\n", maxStale), "procps", "rsync")
	base, vm, p, alice, bob := iv.base, iv.vm, iv.project, iv.alice, iv.bob
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	alice.ok("project", "collaborators", "add", p, "bob")

	// The web app, on the project's localhost only.
	app, err := os.ReadFile(webapp.Build(t))
	if err != nil {
		t.Fatal(err)
	}
	runIn(t, base, app, "--account", "alice", "project", "exec", "-i", p, "--", "sh", "-c", "cat > ~/app && chmod +x ~/app")
	alice.ok("project", "exec", p, "--", "sh", "-c", "nohup ~/app 8888 > ~/app.log 2>&1 </dev/null &")

	worker := base.start("worker")

	// HTTP, WebSocket and streaming through the ingress, as bob.
	var o opened
	bob.json(&o, "project", "open", p, "--port", "8888")
	if !strings.HasPrefix(o.URL, "https://"+vm.Addr+"/"+p+"/port/8888/?cocalc_token=") {
		t.Fatalf("project open: %s", o.URL)
	}
	bobWeb := browseApp(t, p, o.URL, pinnedHTTP(o.TLSCertSHA256))
	bob.json(&o, "project", "open", p, "--port", "8888")
	wsEcho(t, ctx, o.URL, pinnedHTTP(o.TLSCertSHA256))
	streamThroughIngress(t, bobWeb)

	// OpenSSH with the block from `project ssh-config`.
	home := filepath.Join(base.dir, "sshhome")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	block := bob.ok("project", "ssh-config", p, "--name", "proj")
	sshCfg := filepath.Join(home, "config")
	if err := os.WriteFile(sshCfg, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	env := base.env
	if out := mustOpenSSH(t, env, "ssh", "-F", sshCfg, "-o", "BatchMode=yes", "proj", "id -u; hostname"); out != "1000\nproject-"+p[:8]+"\n" {
		t.Fatalf("ssh: %q", out)
	}
	payload := make([]byte, 2<<20)
	rand.Read(payload) //nolint:errcheck
	local := filepath.Join(home, "up.bin")
	os.WriteFile(local, payload, 0o600) //nolint:errcheck
	mustOpenSSH(t, env, "scp", "-F", sshCfg, local, "proj:up.bin")
	mustOpenSSH(t, env, "scp", "-F", sshCfg, "proj:up.bin", local+".back")
	if b, _ := os.ReadFile(local + ".back"); !bytes.Equal(b, payload) {
		t.Fatal("scp round trip changed the file")
	}
	batch := filepath.Join(home, "batch")
	os.WriteFile(batch, []byte("mkdir viasftp\nput "+local+" viasftp/f.bin\nls viasftp\n"), 0o600) //nolint:errcheck
	if out := mustOpenSSH(t, env, "sftp", "-F", sshCfg, "-b", batch, "proj"); !strings.Contains(out, "f.bin") {
		t.Fatalf("sftp: %s", out)
	}
	tree := filepath.Join(home, "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o700)                               //nolint:errcheck
	os.WriteFile(filepath.Join(tree, "sub", "a.txt"), []byte("synced\n"), 0o600) //nolint:errcheck
	mustOpenSSH(t, env, "rsync", "-a", "-e", "ssh -F "+sshCfg, tree+"/", "proj:synced/")
	if out := alice.ok("project", "exec", p, "--", "sh", "-c", "cat synced/sub/a.txt; stat -c %u viasftp/f.bin synced/sub/a.txt"); out != "synced\n1000\n1000\n" {
		t.Fatalf("files from sftp and rsync: %q", out)
	}
	tunnel := sshTunnel(t, env, sshCfg, "proj", 8888)
	eventually(t, 30*time.Second, "ssh -L reaches the app", func() (bool, string) {
		resp, err := http.Get("http://" + tunnel + "/via-tunnel")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var seen webapp.Seen
		return json.NewDecoder(resp.Body).Decode(&seen) == nil && seen.Project == p && seen.RequestURI == "/via-tunnel", resp.Status
	})

	// Revoked while the host cannot be told: the worker tells it once it
	// is reachable again, and then bob is refused, over HTTP and SSH.
	vm.SetLink(t, false)
	out, errOut := base.ok("--account", "alice", "project", "collaborators", "rm", p, "bob")
	vm.SetLink(t, true)
	if !strings.Contains(errOut, "was not told yet") {
		t.Fatalf("rm with the host unreachable: %s %s", out, errOut)
	}
	eventually(t, 60*time.Second, "bob refused after the worker's push", func() (bool, string) {
		code, body := bobWeb.get("")
		return code == http.StatusForbidden && strings.HasPrefix(body, "revoked:"), fmt.Sprint(code, body)
	})
	if out, err := openSSH(t, env, "ssh", "-F", sshCfg, "-o", "BatchMode=yes", "proj", "true"); err == nil || !strings.Contains(out, "bob may not use project") {
		t.Fatalf("ssh after revocation: %v %s", err, out)
	}

	// The control plane stops: alice keeps working for acl_max_stale,
	// then the host refuses everyone until it is back.
	var ao opened
	alice.json(&ao, "project", "open", p, "--port", "8888")
	aliceWeb := openBrowser(t, ao)
	aliceCfg := filepath.Join(home, "alice-config")
	os.WriteFile(aliceCfg, []byte(alice.ok("project", "ssh-config", p, "--name", "aproj")), 0o600) //nolint:errcheck
	worker.cmd.Process.Kill()                                                                      //nolint:errcheck
	<-worker.done
	worker.finished = true
	stopped := time.Now()
	if code, body := aliceWeb.get(""); code != 200 {
		t.Fatalf("right after the control plane stopped: %d %s", code, body)
	}
	mustOpenSSH(t, env, "ssh", "-F", aliceCfg, "-o", "BatchMode=yes", "aproj", "true")
	eventually(t, maxStale+30*time.Second, "refused once the list is stale", func() (bool, string) {
		code, body := aliceWeb.get("")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "longer ago than"), fmt.Sprint(code, body)
	})
	if time.Since(stopped) < maxStale/2 {
		t.Fatalf("refused %s after the control plane stopped, well before acl_max_stale (%s)", time.Since(stopped), maxStale)
	}
	if out, err := openSSH(t, env, "ssh", "-F", aliceCfg, "-o", "BatchMode=yes", "aproj", "true"); err == nil || !strings.Contains(out, "longer ago than") {
		t.Fatalf("ssh with a stale list: %v %s", err, out)
	}
	base.start("worker")
	eventually(t, 60*time.Second, "served again once the control plane is back", func() (bool, string) {
		code, body := aliceWeb.get("")
		return code == 200, fmt.Sprint(code, body)
	})

	hostHoldsNoSigningKey(t, base, vm)
	alice.ok("project", "delete", p, "--purge", "--yes")
}

// ingressVM is a test VM adopted as host r1 by alice, with a running
// project of hers.
type ingressVM struct {
	base       *sshCLI
	vm         *sshvm.VM
	project    string
	alice, bob ingressCLI
}

// newIngressVM makes it: config is added to the CLI's config file, and
// the project's image has the Debian packages include (its root
// filesystem comes from this machine's build cache: the VM reaches no
// mirror).
func newIngressVM(t testing.TB, config string, include ...string) *ingressVM {
	t.Helper()
	base := newSSHCLI(t, "sqlite")
	f, err := os.OpenFile(filepath.Join(base.dir, "config", "cocalc-hosts", "config.yaml"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(config) //nolint:errcheck
	f.Close()
	iv := &ingressVM{base: base, alice: ingressCLI{base, "alice"}, bob: ingressCLI{base, "bob"}}
	iv.vm = sshvm.New(t, sshvm.Options{RootKeys: []string{base.fleetKey()}})
	iv.vm.MustExec(t, "mkdir -p /etc/containers && cat > /etc/containers/containers.conf <<'EOF'\n"+podmantest.ContainersConf+"EOF\n")
	iv.alice.ok("create", "--cloud", "ssh", "--name", "r1", "--address", "root@"+iv.vm.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tarball, _, err := podman.CachedRootfs(ctx, podmantest.CacheDir, podman.BuildSpec{Include: include}, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	stage(t, iv.vm, tarball)
	iv.alice.ok("image", "build", "localhost/ingress-base:1", "--host", "r1", "--include", strings.Join(include, ","))
	var created struct {
		Project struct{ ID string } `json:"project"`
	}
	iv.alice.json(&created, "project", "create", "--host", "r1", "--image", "localhost/ingress-base:1", "--memory", "256M", "--disk", "256M", "--start")
	iv.project = created.Project.ID
	return iv
}

// stage puts a root filesystem tarball from this machine's build cache
// into the VM's image cache, as on an air-gapped host.
func stage(t testing.TB, vm *sshvm.VM, tarball string) {
	t.Helper()
	staged := filepath.Join(vm.Upper, "var/tmp", filepath.Base(tarball))
	if err := os.MkdirAll(filepath.Dir(staged), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(tarball, staged); err != nil {
		// Another filesystem (a tmpfs /tmp): copy it instead.
		if out, err := exec.Command("cp", tarball, staged).CombinedOutput(); err != nil {
			t.Fatalf("stage the root filesystem: %v\n%s", err, out)
		}
	}
	vm.MustExec(t, "mkdir -p /btrfs/.image-cache && cp /var/tmp/"+filepath.Base(tarball)+" /btrfs/.image-cache/ && rm /var/tmp/"+filepath.Base(tarball))
}

// runIn runs the CLI with stdin.
func runIn(t *testing.T, c *sshCLI, stdin []byte, args ...string) {
	t.Helper()
	cmd := exec.Command("cocalc-hosts", args...)
	cmd.Env, cmd.Stdin = c.env, bytes.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cocalc-hosts %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// streamThroughIngress reads the first line of a response the app holds
// open until it is released: a buffering proxy would never deliver it.
func streamThroughIngress(t *testing.T, b *browser) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+"stream", nil)
	req.Header.Set("Cookie", b.cookie)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "one\n" {
		t.Fatalf("first streamed line: %q %v", line, err)
	}
	if code, body := b.get("release"); code != 200 {
		t.Fatalf("release: %d %s", code, body)
	}
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "two\n" {
		t.Fatalf("rest of the stream: %q %v", rest, err)
	}
}

// sshTunnel runs ssh -L to port on the project's localhost and returns
// the local end's address; the ssh process ends with the test.
func sshTunnel(t *testing.T, env []string, cfg, host string, port int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command("ssh", "-F", cfg, "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-N",
		"-L", fmt.Sprintf("%s:localhost:%d", addr, port), host)
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck
	return addr
}

// hostHoldsNoSigningKey: nothing on the host (its config, its ingress
// state, its log) contains a private seed of the control plane's keys.
func hostHoldsNoSigningKey(t *testing.T, c *sshCLI, vm *sshvm.VM) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(c.dir, "state", "cocalc-hosts", "signing_keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var kf struct {
		Keys []struct {
			TokenSeed []byte `json:"token_seed"`
			CASeed    []byte `json:"ssh_ca_seed"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &kf); err != nil || len(kf.Keys) == 0 {
		t.Fatalf("signing keys: %v", err)
	}
	for _, k := range kf.Keys {
		for _, seed := range [][]byte{k.TokenSeed, k.CASeed} {
			for _, enc := range []string{base64.StdEncoding.EncodeToString(seed), base64.RawURLEncoding.EncodeToString(seed), hex.EncodeToString(seed)} {
				out := vm.MustExec(t, "grep -rlF '"+enc+"' /etc/cocalc-hosts /btrfs/.cocalc-agent /var/log/cocalc-hosts 2>/dev/null || true")
				if strings.TrimSpace(out) != "" {
					t.Fatalf("a private signing seed is on the host, in %s", out)
				}
			}
		}
	}
	// What the host does hold: public keys, given at bootstrap (in its
	// agent config) and with every access list since.
	for _, f := range []string{bootstrap.AgentConfig, "/btrfs/.cocalc-agent/ingress/access.json"} {
		if out := vm.MustExec(t, "grep -c token_keys "+f); strings.TrimSpace(out) != "1" {
			t.Fatalf("public keys in %s: %q", f, out)
		}
	}
}
