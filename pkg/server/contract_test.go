package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/cost"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/reconcile"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	_ "github.com/sagemathinc/cocalc-hosts/providers/builtin"
)

// TestServedLikeDirect makes the same calls of the operations served since
// issue 10's second part (cost, catalog, providers, reconcile, boot logs,
// backups, idle stop, images) on the domain services and through a real
// server, and wants the same answers and the same error kinds; where the
// server authorizes by identity, it wants the refusal.
func TestServedLikeDirect(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) { testServedLikeDirect(t, backend) })
	}
}

func testServedLikeDirect(t *testing.T, backend string) {
	e := newEnv(t, backend, nil)
	ctx := context.Background()
	remote := func(account string) *client.Client {
		c, err := client.New(e.http.URL, e.keys[account])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rootC, aliceC := remote("root"), remote("alice")
	root, alice := projects.Caller{Account: "root"}, projects.Caller{Account: "alice"}
	for _, h := range []struct{ name, owner string }{{"a1", "alice"}, {"b1", "bob"}} {
		if _, err := e.srv.Hosts.Create(ctx, hosts.CreateRequest{Name: h.name, Owner: h.owner, Provider: "sim"}); err != nil {
			t.Fatal(err)
		}
	}

	// same runs call on the direct service and through the server and
	// wants equal JSON, or errors of one kind.
	same := func(what string, direct, served func() (any, error)) any {
		t.Helper()
		dv, derr := direct()
		sv, serr := served()
		if errkind.Of(derr) != errkind.Of(serr) || (derr == nil) != (serr == nil) {
			t.Errorf("%s: direct %v, served %v", what, derr, serr)
			return nil
		}
		var nf *errkind.NotFoundError
		if errors.As(derr, &nf) && !errors.As(serr, &nf) {
			t.Errorf("%s: served error %v is not a NotFoundError", what, serr)
		}
		dj, _ := json.Marshal(dv)
		sj, _ := json.Marshal(sv)
		if derr == nil && string(dj) != string(sj) {
			t.Errorf("%s:\ndirect %s\nserved %s", what, dj, sj)
		}
		return sv
	}
	refused := func(what string, err error) {
		t.Helper()
		if !errkind.Is(err, errkind.Forbidden) {
			t.Errorf("%s as alice: %v, want forbidden", what, err)
		}
	}
	ops, sops := e.srv.Ops, client.Ops{C: rootC}

	pv := same("providers", func() (any, error) { return ops.Providers(ctx) }, func() (any, error) { return sops.Providers(ctx) })
	if pv == nil || !strings.Contains(string(must(json.Marshal(pv))), `"name":"sim"`) {
		t.Errorf("providers: %v", pv)
	}

	search := catalog.Search{Query: catalog.Query{Providers: []string{"sim"}, CPUs: 4}, Limit: 3}
	ops.RefreshCatalog(ctx, []string{"sim"}) //nolint:errcheck // warms the cache both read
	res := same("catalog search", func() (any, error) { return ops.SearchCatalog(ctx, search) },
		func() (any, error) { return sops.SearchCatalog(ctx, search) })
	if r, _ := res.(catalog.SearchResult); r.Total == 0 || len(r.Entries) != 3 {
		t.Errorf("catalog search: %+v", res)
	}
	bad := catalog.Search{Query: catalog.Query{Providers: []string{"nope"}}}
	same("catalog search, unknown cloud", func() (any, error) { return ops.SearchCatalog(ctx, bad) },
		func() (any, error) { return sops.SearchCatalog(ctx, bad) })
	if r, err := sops.RefreshCatalog(ctx, []string{"sim"}); err != nil || len(r.Refreshed) != 1 || r.Refreshed[0].Rows == 0 {
		t.Errorf("catalog refresh: %+v %v", r, err)
	}
	_, err := client.Ops{C: aliceC}.RefreshCatalog(ctx, []string{"sim"})
	refused("catalog refresh", err)

	dry := reconcile.Pass{DryRun: true}
	// (Each pass says when it ran.)
	undated := func(r reconcile.Report, err error) (any, error) { r.CheckedAt = time.Time{}; return r, err }
	same("reconcile --dry-run", func() (any, error) { return undated(ops.Reconcile(ctx, dry)) },
		func() (any, error) { return undated(sops.Reconcile(ctx, dry)) })
	_, err = client.Ops{C: aliceC}.Reconcile(ctx, dry)
	refused("reconcile", err)

	// Cost: an admin sees every host; alice only hers, and not bob's.
	names := func(r cost.Report) (out []string) {
		for _, h := range r.Hosts {
			out = append(out, h.Name+"/"+h.Owner)
		}
		slices.Sort(out)
		return out
	}
	from := time.Now().Add(-time.Hour)
	drep, err := ops.Cost(ctx, cost.ReportOptions{From: from})
	if err != nil {
		t.Fatal(err)
	}
	srep, err := sops.Cost(ctx, cost.ReportOptions{From: from})
	if err != nil || !slices.Equal(names(drep), names(srep)) || len(srep.Hosts) != 2 || !srep.From.Equal(from) {
		t.Errorf("cost as root: %v %v, direct %v", names(srep), err, names(drep))
	}
	arep, err := client.Ops{C: aliceC}.Cost(ctx, cost.ReportOptions{})
	if err != nil || !slices.Equal(names(arep), []string{"a1/alice"}) || len(arep.Owners) != 1 {
		t.Errorf("cost as alice: %v %v", names(arep), err)
	}
	_, err = client.Ops{C: aliceC}.Cost(ctx, cost.ReportOptions{Host: "b1"})
	refused("cost of bob's host", err)
	same("cost of no host", func() (any, error) { return ops.Cost(ctx, cost.ReportOptions{Host: "nope"}) },
		func() (any, error) { return sops.Cost(ctx, cost.ReportOptions{Host: "nope"}) })

	// Boot logs: none yet (sim hosts are not bootstrapped over SSH).
	sh := client.Hosts{C: aliceC}
	bl := same("boot log", func() (any, error) { _, b, err := e.srv.Hosts.BootLog(ctx, "a1", 0, 0); return b, err },
		func() (any, error) { _, b, err := sh.BootLog(ctx, "a1", 0, 0); return b, err })
	if b, _ := bl.(hosts.BootLog); b.Run != nil || b.Lines == nil {
		t.Errorf("boot log of a sim host: %+v", bl)
	}
	same("boot log of no host", func() (any, error) { _, b, err := e.srv.Hosts.BootLog(ctx, "nope", 0, 0); return b, err },
		func() (any, error) { _, b, err := sh.BootLog(ctx, "nope", 0, 0); return b, err })
	_, _, err = sh.BootLog(ctx, "b1", 0, 0)
	refused("boot log of bob's host", err)

	// Backups: the configuration is an admin's, its credentials never
	// come back; the rest as direct.
	missing := uuid.NewString()
	ps, sp, ap := e.srv.Projects, client.Projects{C: rootC}, client.Projects{C: aliceC}
	same("backup config, none", func() (any, error) { return ps.GetBackupConfig(ctx) }, func() (any, error) { return sp.GetBackupConfig(ctx) })
	const secret = "s3cr3t-backup-password"
	v, err := sp.SetBackupConfig(ctx, root, "rest:https://backup.example:8000/repo", map[string]string{"username": "u", "password": secret})
	if err != nil || v.Version == 0 || !slices.Equal(v.CredentialKeys, []string{"password", "username"}) {
		t.Fatalf("backup config: %+v %v", v, err)
	}
	same("backup config", func() (any, error) { return ps.GetBackupConfig(ctx) }, func() (any, error) { return sp.GetBackupConfig(ctx) })
	_, err = ap.SetBackupConfig(ctx, alice, "/srv/backups", nil)
	refused("backup config", err)
	_, err = ap.GetBackupConfig(ctx)
	refused("backup config (read)", err)
	same("stale backups", func() (any, error) { return ps.StaleBackups(ctx, alice, false, time.Hour) },
		func() (any, error) { return ap.StaleBackups(ctx, alice, false, time.Hour) })
	same("backups of no project", func() (any, error) { return ps.Backups(ctx, alice, missing) },
		func() (any, error) { return ap.Backups(ctx, alice, missing) })
	same("backup of no project", func() (any, error) { return ps.StartBackup(ctx, alice, missing) },
		func() (any, error) { return ap.StartBackup(ctx, alice, missing) })
	same("restore of no project", func() (any, error) {
		return ps.RestoreBackup(ctx, alice, missing, projects.RestoreBackupRequest{Backup: "latest"})
	}, func() (any, error) {
		return ap.RestoreBackup(ctx, alice, missing, projects.RestoreBackupRequest{Backup: "latest"})
	})

	// Idle stop and images of a host that runs no agent.
	same("idle stop", func() (any, error) { _, p, err := ps.HostIdle(ctx, alice, "a1"); return p, err },
		func() (any, error) { _, p, err := ap.HostIdle(ctx, alice, "a1"); return p, err })
	same("set idle stop", func() (any, error) { return ps.SetHostIdle(ctx, alice, "a1", time.Hour) },
		func() (any, error) { return ap.SetHostIdle(ctx, alice, "a1", time.Hour) })
	same("images", func() (any, error) { _, is, err := ps.Images(ctx, alice, "a1"); return is, err },
		func() (any, error) { _, is, err := ap.Images(ctx, alice, "a1"); return is, err })

	for _, name := range []string{"cocalc-base", "Bad Name"} {
		r := projects.BuildImageRequest{Host: "a1", Name: name}
		same("image build "+name, func() (any, error) { _, c, err := ps.BuildImage(ctx, alice, r, nil); return c, err },
			func() (any, error) { _, c, err := ap.BuildImage(ctx, alice, r, nil); return c, err })
	}

	// Exec: refusals before the session are answers, after the upgrade
	// error frames; both keep their kinds. (A project that runs is needed
	// for the command's own output: server_mode.txtar.)
	a1, err := e.st.GetHost(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	proj := model.Project{ID: "6f1c1f0e-8d49-4f4e-9a57-3d2b8f0d6a11", Title: "t", Owner: "alice", HostID: a1.ID, Image: "cocalc-base",
		State: model.ProjectRunning, CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
	if err := e.st.CreateProject(ctx, proj); err != nil {
		t.Fatal(err)
	}
	bob := projects.Caller{Account: "bob"}
	bp := client.Projects{C: remote("bob")}
	run := agentapi.ExecRequest{Command: []string{"true"}}
	var out strings.Builder
	eio := agentapi.ExecIO{Stdout: &out, Stderr: &out}
	for _, x := range []struct {
		what string
		c    projects.Caller
		sp   client.Projects
		id   string
		req  agentapi.ExecRequest
	}{
		{"exec", alice, ap, proj.ID, run},
		{"exec in no project", alice, ap, missing, run},
		{"exec in another's project", bob, bp, proj.ID, run},
		{"exec of nothing", alice, ap, proj.ID, agentapi.ExecRequest{}},
	} {
		same(x.what, func() (any, error) { return ps.Exec(ctx, x.c, x.id, x.req, eio) },
			func() (any, error) { return x.sp.Exec(ctx, x.c, x.id, x.req, eio) })
	}
	if out.Len() > 0 {
		t.Errorf("exec wrote %q without running", out.String())
	}

	// What users type for a project: its title or the beginning of its
	// id, any text (it travels as a query, never in a path); another
	// account's project is not found.
	for _, x := range []struct {
		what, ref string
		c         projects.Caller
		sp        client.Projects
		want      string
	}{
		{"project by title", "t", alice, ap, proj.ID},
		{"project by the beginning of its id", "6f1c1", alice, ap, proj.ID},
		{"project by its id in capitals", strings.ToUpper(proj.ID), alice, ap, proj.ID},
		{"project of no such title", "../t?x=1#y", alice, ap, ""},
		{"another's project by title", "t", bob, bp, ""},
	} {
		got := same(x.what, func() (any, error) { return ps.Resolve(ctx, x.c, x.ref) },
			func() (any, error) { return x.sp.Resolve(ctx, x.c, x.ref) })
		if x.want != "" && got != x.want {
			t.Errorf("%s: %v, want %s", x.what, got, x.want)
		}
	}

	// The secret is in the database only: not in the server's log or the
	// audit log.
	es, err := e.st.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.logs.String(), secret) || strings.Contains(string(must(json.Marshal(es))), secret) {
		t.Errorf("the backup password is in the server's log or the audit log")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
