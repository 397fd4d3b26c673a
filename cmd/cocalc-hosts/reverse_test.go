package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman/podmantest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/webapp"
)

// rwcConn is a relayed connection as a net.Conn, for an HTTP transport.
type rwcConn struct{ io.ReadWriteCloser }

func (rwcConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (rwcConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (rwcConn) SetDeadline(time.Time) error      { return nil }
func (rwcConn) SetReadDeadline(time.Time) error  { return nil }
func (rwcConn) SetWriteDeadline(time.Time) error { return nil }

// A machine that takes no inbound connection (new connections into its
// network namespace are dropped), joined with `create --reverse` and
// `join`: the server bootstraps it and reaches its agent through the
// tunnel (image build, project create, start, exec), and users reach its
// HTTPS ingress (a real HTTP client) and SSH ingress (OpenSSH, through
// `relay`) through the server. The host's credential is not an API key,
// and a process without the tunnel refuses with the way out.
func TestReverseHost(t *testing.T) {
	parallel(t)
	base := newSSHCLI(t, "sqlite")
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{base.fleetKey()}})
	// (Writing in /var/tmp copies it up to the VM's disk, where stage
	// puts the image's root filesystem later.)
	vm.MustExec(t, "touch /var/tmp/.staging && mkdir -p /etc/containers && cat > /etc/containers/containers.conf <<'EOF'\n"+podmantest.ContainersConf+"EOF\n")

	// The server, on the address the VM reaches this machine at.
	clientCfg := filepath.Join(base.dir, "config", "cocalc-hosts", "config.yaml")
	serverCfg := filepath.Join(base.dir, "server.yaml")
	cfg, err := os.ReadFile(clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	// The bootstrap waits for the owner to run `join`.
	cfg = bytes.Replace(cfg, []byte("ssh_wait: 4s"), []byte("ssh_wait: 3m"), 1)
	if err := os.WriteFile(serverCfg, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(clientCfg)
	base.ok("--config", serverCfg, "--account", "ops", "account", "create", "ops", "--admin")
	// The owner is this user, the CLI's default account.
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	base.ok("--config", serverCfg, "--account", "ops", "account", "create", me.Username)
	var key struct{ Key string }
	base.json(&key, "--config", serverCfg, "--account", me.Username, "account", "api-key", "create", "--name", "t")
	certFile, keyFile, err := selfSignedCert(base.dir, net.ParseIP(vm.HostAddr))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("cocalc-hosts")
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(base.dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &testServer{bin: bin, vars: base.env, work: base.dir, log: logFile,
		args: []string{"--config", serverCfg, "serve", "--tls-cert", certFile, "--tls-key", keyFile}}
	if err := srv.start(vm.HostAddr+":0", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p := srv.stop(); len(p) > 0 {
			t.Error(p)
		}
		logFile.Close()
	})
	serveLog := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	runIn(t, base, []byte(key.Key+"\n"), "login", "--server", srv.url, "--with-key", "--ca-cert", certFile)

	var sub struct {
		Host struct {
			ID string `json:"id"`
		} `json:"host"`
		TunnelCredential string `json:"tunnel_credential"`
	}
	base.json(&sub, "create", "--cloud", "ssh", "--reverse", "--name", "r1", "--no-wait")
	if !strings.HasPrefix(sub.TunnelCredential, "cht_"+sub.Host.ID+"_") {
		t.Fatalf("create --reverse gave credential %q", sub.TunnelCredential)
	}
	// The credential opens the tunnel only: the API takes it for no one.
	api, err := client.New(srv.url, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := api.TrustCA(certFile); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	ca, _ := os.ReadFile(certFile)
	roots.AppendCertsFromPEM(ca)
	req, _ := http.NewRequest(http.MethodGet, srv.url+"/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+sub.TunnelCredential)
	if r, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}).Do(req); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the API with a host credential: %v %v", r, err)
	} else {
		r.Body.Close()
	}

	// From now on nothing reaches the VM but what it dials itself (the
	// test's own SSH session, opened above, stays).
	if out, err := exec.Command("ip", "netns", "exec", vm.Name, "iptables", "-I", "INPUT", "-i", "eth0", "-p", "tcp", "--syn", "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v %s", err, out)
	}
	if c, err := net.DialTimeout("tcp", vm.Addr+":22", 2*time.Second); err == nil {
		c.Close()
		t.Fatal("the VM still takes inbound connections")
	}

	// The owner's part, on the machine.
	// (In a directory new to the VM's disk: files added under one it had
	// when it booted stay hidden.)
	real, _ := filepath.EvalSymlinks(bin)
	if err := os.MkdirAll(filepath.Join(vm.Upper, "opt/join"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(real, filepath.Join(vm.Upper, "opt/join/cocalc-hosts")); err != nil {
		exe, err := os.ReadFile(real)
		if err != nil {
			t.Fatal(err)
		}
		vm.WriteFile(t, "/opt/join/cocalc-hosts", string(exe), 0o755)
	}
	vm.WriteFile(t, "/etc/cocalc-hosts/ca.pem", string(ca), 0o644)
	vm.WriteFile(t, "/etc/cocalc-hosts/tunnel.cred", sub.TunnelCredential+"\n", 0o600)
	vm.MustExec(t, "setsid -f sh -c 'exec /opt/join/cocalc-hosts join --server "+srv.url+" --ca-cert /etc/cocalc-hosts/ca.pem --credential-file /etc/cocalc-hosts/tunnel.cred --sshd "+vm.Addr+":22 > /var/log/join.log 2>&1 < /dev/null'")
	eventually(t, 5*time.Minute, "the server bootstraps the host through its tunnel", func() (bool, string) {
		h := base.show("r1")
		return h.Status == "running", fmt.Sprintf("%s %s\njoin: %s\nserve: %s", h.Status, h.LastError, vm.MustExec(t, "cat /var/log/join.log"), serveLog())
	})
	if out, _ := base.ok("show", "r1"); !strings.Contains(out, "path:") || !strings.Contains(out, "reverse") || !strings.Contains(out, "held by serve on ") {
		t.Fatalf("show does not say the path and which server holds the tunnel:\n%s", out)
	}

	// The agent's API through the tunnel: an image, a project, exec.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	include := []string{"procps"}
	tarball, _, err := podman.CachedRootfs(ctx, podmantest.CacheDir, podman.BuildSpec{Include: include}, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	stage(t, vm, tarball)
	base.ok("image", "build", "localhost/rev-base:1", "--host", "r1", "--include", strings.Join(include, ","))
	var created struct {
		Project struct{ ID string } `json:"project"`
	}
	base.json(&created, "project", "create", "--host", "r1", "--image", "localhost/rev-base:1", "--memory", "256M", "--disk", "256M", "--start")
	p := created.Project.ID
	if out, _ := base.ok("project", "exec", p, "--", "sh", "-c", "echo hi from $(hostname)"); out != "hi from project-"+p[:8]+"\n" {
		t.Fatalf("exec through the tunnel: %q", out)
	}
	// A process that does not hold the tunnel says where to go.
	if _, errOut, code := base.run("--config", serverCfg, "project", "exec", p, "--", "true"); code == 0 || !strings.Contains(errOut, "reverse-connected") ||
		!strings.Contains(errOut, "its tunnel is held by serve on ") {
		t.Fatalf("direct mode on a reverse host: exit %d: %s", code, errOut)
	}

	// HTTPS ingress as a browser reaches it: `project open` gives a link
	// on the server, which forwards it over the tunnel (TLS to the host
	// pinned by the server); the token is checked on the host. HTTP,
	// WebSocket and streaming.
	app, err := os.ReadFile(webapp.Build(t))
	if err != nil {
		t.Fatal(err)
	}
	runIn(t, base, app, "project", "exec", "-i", p, "--", "sh", "-c", "cat > ~/app && chmod +x ~/app")
	base.ok("project", "exec", p, "--", "sh", "-c", "nohup ~/app 8888 > ~/app.log 2>&1 </dev/null &")
	var o opened
	base.json(&o, "project", "open", p, "--port", "8888")
	if !strings.HasPrefix(o.URL, srv.url+"/"+p+"/port/8888/?cocalc_token=") {
		t.Fatalf("project open on a reverse host: %s, want a link on the server %s", o.URL, srv.url)
	}
	browserHTTP := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	b := browseApp(t, p, o.URL, browserHTTP)
	base.json(&o, "project", "open", p, "--port", "8888")
	wsEcho(t, ctx, o.URL, browserHTTP)
	streamThroughIngress(t, b)
	// Without the token the host refuses; a project the server holds no
	// tunnel for is not found (the server is no open proxy).
	for link, want := range map[string]int{
		strings.SplitN(o.URL, "?", 2)[0]:                             http.StatusUnauthorized,
		srv.url + "/00000000-0000-4000-8000-000000000000/port/8888/": http.StatusNotFound,
	} {
		if r, err := browserHTTP.Get(link); err != nil || r.StatusCode != want {
			t.Fatalf("%s through the server: %v %v, want %d", link, r, err, want)
		} else {
			r.Body.Close()
		}
	}
	// The raw relay (`cocalc-hosts relay HOST https`) reaches the same
	// ingress, with the host's own (pinned) TLS end to end.
	web := pinnedHTTP(o.TLSCertSHA256)
	web.Transport.(*http.Transport).DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := api.Relay(ctx, sub.Host.ID, "https")
		if err != nil {
			return nil, err
		}
		return rwcConn{c}, nil
	}
	if r, err := web.Get("https://" + sub.Host.ID + strings.TrimPrefix(strings.SplitN(o.URL, "?", 2)[0], srv.url)); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token through the relay: %v %v", r, err)
	} else {
		r.Body.Close()
	}

	// SSH ingress with OpenSSH and the block from `project ssh-config`.
	home := filepath.Join(base.dir, "sshhome")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	block, _ := base.ok("project", "ssh-config", p, "--name", "proj")
	if !strings.Contains(block, "ProxyCommand") {
		t.Fatalf("ssh-config for a reverse host has no ProxyCommand:\n%s", block)
	}
	sshCfg := filepath.Join(home, "config")
	if err := os.WriteFile(sshCfg, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustOpenSSH(t, base.env, "ssh", "-F", sshCfg, "-o", "BatchMode=yes", "proj", "id -u; hostname"); out != "1000\nproject-"+p[:8]+"\n" {
		t.Fatalf("ssh through the relay: %q", out)
	}
	base.ok("project", "delete", p, "--purge", "--yes")
}
