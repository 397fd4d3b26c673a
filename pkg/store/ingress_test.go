package store_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

func TestIngressStore(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h, other := newHost("h1"), newHost("h2")
		for _, x := range []model.Host{h, other} {
			if err := s.CreateHost(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		p, q, gone, elsewhere := newProject(h.ID, "alice"), newProject(h.ID, "bob"), newProject(h.ID, "dave"), newProject(other.ID, "erin")
		for _, x := range []model.Project{p, q, gone, elsewhere} {
			if err := s.CreateProject(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range [][2]string{{p.ID, "carol"}, {p.ID, "bob"}, {p.ID, "bob"}, {gone.ID, "carol"}, {elsewhere.ID, "carol"}} {
			if err := s.AddProjectCollaborator(ctx, c[0], c[1], t0); err != nil {
				t.Fatal(err)
			}
		}
		del := t0.Add(time.Hour)
		gone.DeletedAt = &del
		if err := s.UpdateProject(ctx, gone); err != nil {
			t.Fatal(err)
		}
		if cs, err := s.ListProjectCollaborators(ctx, p.ID); err != nil || !reflect.DeepEqual(cs, []string{"bob", "carol"}) {
			t.Fatalf("collaborators: %v %v", cs, err)
		}
		want := map[string][]string{p.ID: {"alice", "bob", "carol"}, q.ID: {"bob"}}
		if got, err := s.ProjectAccounts(ctx, h.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("project accounts: %v %v, want %v", got, err, want)
		}
		if err := s.RemoveProjectCollaborator(ctx, p.ID, "carol"); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveProjectCollaborator(ctx, p.ID, "carol"); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("removing twice: %v", err)
		}
		// Purging a project drops its collaborators with it.
		if err := s.PurgeProject(ctx, gone.ID); err != nil {
			t.Fatal(err)
		}
		if cs, err := s.ListProjectCollaborators(ctx, gone.ID); err != nil || len(cs) != 0 {
			t.Fatalf("collaborators of a purged project: %v %v", cs, err)
		}

		k := model.SSHKey{Account: "alice", Fingerprint: "SHA256:a", PublicKey: "ssh-ed25519 AAAA alice@x", Comment: "laptop", CreatedAt: t0}
		if err := s.AddSSHKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := s.AddSSHKey(ctx, k); !errkind.Is(err, errkind.Conflict) {
			t.Fatalf("same key twice: %v", err)
		}
		if err := s.AddSSHKey(ctx, model.SSHKey{Account: "bob", Fingerprint: "SHA256:b", PublicKey: "ssh-ed25519 BBBB", CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		if ks, err := s.ListSSHKeys(ctx, []string{"alice", "zed"}); err != nil || len(ks) != 1 || ks[0] != k {
			t.Fatalf("keys: %+v %v", ks, err)
		}
		if err := s.RemoveSSHKey(ctx, "alice", "SHA256:b"); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("removing another account's key: %v", err)
		}

		if _, err := s.GetHostIngress(ctx, h.ID); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("ingress before a push: %v", err)
		}
		in := model.HostIngress{HostID: h.ID, HTTPSAddr: "[::]:443", SSHAddr: "[::]:2222", TLSCertSHA256: "ab", SSHHostKey: "ssh-ed25519 X", PushedAt: t0}
		for _, x := range []model.HostIngress{{HostID: h.ID, PushedAt: t0.Add(-time.Hour)}, in} {
			if err := s.PutHostIngress(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := s.GetHostIngress(ctx, h.ID); err != nil || !reflect.DeepEqual(got, in) {
			t.Fatalf("ingress: %+v %v", got, err)
		}
		if err := s.RecordCertAttempt(ctx, other.ID, t0, "x"); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("a certificate attempt for a host that never reported its ingress: %v", err)
		}
		// A failed ACME attempt is recorded, a later push (which reports
		// the certificate the host serves) keeps it, and a success clears it.
		if err := s.RecordCertAttempt(ctx, h.ID, t0.Add(time.Minute), "acme: the CA did not validate"); err != nil {
			t.Fatal(err)
		}
		in.Cert = &model.HostCert{Issuer: "Pebble", Name: "h1.example.org", NotBefore: t0, NotAfter: t0.Add(90 * 24 * time.Hour)}
		if err := s.PutHostIngress(ctx, in); err != nil {
			t.Fatal(err)
		}
		tried := t0.Add(time.Minute)
		wantIn := in
		wantIn.CertError, wantIn.CertTriedAt = "acme: the CA did not validate", &tried
		if got, err := s.GetHostIngress(ctx, h.ID); err != nil || !reflect.DeepEqual(got, wantIn) {
			t.Fatalf("ingress after a failed attempt and a push:\n got %+v %v\nwant %+v", got, err, wantIn)
		}
		if err := s.RecordCertAttempt(ctx, h.ID, tried.Add(time.Hour), ""); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetHostIngress(ctx, h.ID); err != nil || got.CertError != "" || !got.CertTriedAt.Equal(tried.Add(time.Hour)) || *got.Cert != *in.Cert {
			t.Fatalf("ingress after a successful attempt: %+v %v", got, err)
		}
	})
}
