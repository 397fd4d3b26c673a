package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/accounts"
	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/server"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// secondServer is another server, with its own store (and so its own
// LISTEN connection), on e's database.
func secondServer(t testing.TB, e *env) (*server.Server, *httptest.Server) {
	a, st, hs, ps := openApp(t, t.TempDir(), e.db)
	srv := &server.Server{Store: st, Hosts: hs, Projects: ps, Accounts: accounts.New(st, time.Now), Ops: a.Ops(),
		Log: slog.New(slog.DiscardHandler)}
	hts := httptest.NewServer(srv.Handler())
	t.Cleanup(hts.Close)
	return srv, hts
}

// watcher follows the event stream of url as account, in the background.
type watcher struct {
	events chan store.Event
	done   chan error
}

func watch(t testing.TB, url, key string, topics ...store.Topic) *watcher {
	c, err := client.New(url, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{events: make(chan store.Event, 100), done: make(chan error, 1)}
	go func() {
		w.done <- client.Events{C: c}.Watch(ctx, projects.Caller{}, topics, func(e store.Event) error {
			w.events <- e
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-w.done; err != nil {
			t.Errorf("watch ended with %v", err)
		}
	})
	return w
}

// next is the next event that is not a Sync (a minute at most).
func (w *watcher) next(t *testing.T) store.Event {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case e := <-w.events:
			if !e.Sync {
				return e
			}
		case <-deadline:
			t.Fatal("no event within a minute")
		}
	}
}

// A change committed through one server reaches the watchers of another
// on the same Postgres, each seeing only the rows `list` shows them;
// Shutdown ends the streams.
func TestEventStream(t *testing.T) {
	e := newEnv(t, "postgres", nil)
	ctx := context.Background()
	// A bad topic is refused, naming the good ones.
	status, body, _ := e.do("alice", "GET", "/api/v1/events?topics=hosts,vms", "", nil)
	wantError(t, status, body, http.StatusBadRequest, errkind.Invalid, "the topics are hosts, projects and jobs")

	before := e.addHost("alice", "before")
	srvB, httpB := secondServer(t, e)
	alice := watch(t, httpB.URL, e.keys["alice"]) // through the other server
	bob := watch(t, e.http.URL, e.keys["bob"], store.TopicHosts, store.TopicProjects)
	// The current rows first, then a sync.
	if ev := <-alice.events; ev.Host == nil || ev.Host.Name != "before" {
		t.Fatalf("alice's first event: %+v", ev)
	}
	if ev := <-bob.events; !ev.Sync || ev.Topic != store.TopicHosts {
		t.Fatalf("bob's first event (he sees no host): %+v", ev)
	}

	a1 := e.addHost("alice", "a1")
	if ev := alice.next(t); ev.Topic != store.TopicHosts || ev.ID != a1.ID || ev.Host.Owner != "alice" {
		t.Fatalf("alice sees %+v, want host a1", ev)
	}
	// Bob's next event is his own host: alice's never reached him.
	b1 := e.addHost("bob", "b1")
	if ev := bob.next(t); ev.ID != b1.ID {
		t.Fatalf("bob sees %+v, want only his host b1", ev)
	}
	// A job on alice's host reaches her, and ends.
	j, _, err := e.st.EnqueueJob(ctx, model.Job{ID: uuid.NewString(), Subject: model.HostSubject(a1.ID), Action: model.ActionStart,
		MaxAttempts: 1, RunAfter: time.Now(), CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if ev := alice.next(t); ev.Job == nil || ev.ID != j.ID || ev.Job.State != model.JobQueued {
		t.Fatalf("alice sees %+v, want her job queued", ev)
	}
	// Deleting a host is a deleted event.
	now := time.Now()
	before.DeletedAt = &now
	if err := e.st.UpdateHost(ctx, before); err != nil {
		t.Fatal(err)
	}
	if ev := alice.next(t); !ev.Deleted || ev.ID != before.ID || ev.Host != nil {
		t.Fatalf("alice sees %+v, want host before deleted", ev)
	}

	// A broken stream reconnects: what changed meanwhile comes (a1's
	// deletion), what did not (her job) does not come again.
	httpB.CloseClientConnections()
	a1.DeletedAt = &now
	if err := e.st.UpdateHost(ctx, a1); err != nil {
		t.Fatal(err)
	}
	if ev := alice.next(t); !ev.Deleted || ev.ID != a1.ID {
		t.Fatalf("alice sees %+v after reconnecting, want host a1 deleted", ev)
	}
	a2 := e.addHost("alice", "a2")
	if ev := alice.next(t); ev.ID != a2.ID {
		t.Fatalf("alice sees %+v, want only the new host a2", ev)
	}
	// Put in the shared pool, her host reaches bob.
	if err := e.st.SetHostShared(ctx, a2.ID, true); err != nil {
		t.Fatal(err)
	}
	if ev := bob.next(t); ev.ID != a2.ID || !ev.Host.Shared {
		t.Fatalf("bob sees %+v, want the shared host a2", ev)
	}
	if ev := alice.next(t); ev.ID != a2.ID || !ev.Host.Shared {
		t.Fatalf("alice sees %+v, want her host a2 shared", ev)
	}
	// On that host each sees only their own projects.
	project := func(owner string) model.Project {
		p := model.Project{ID: uuid.NewString(), Title: "t", Owner: owner, HostID: a2.ID, Image: "localhost/base",
			State: model.ProjectStopped, CreatedAt: now, UpdatedAt: now}
		if err := e.st.CreateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pa := project("alice")
	if ev := alice.next(t); ev.Topic != store.TopicProjects || ev.ID != pa.ID || ev.Project.Owner != "alice" {
		t.Fatalf("alice sees %+v, want her project", ev)
	}
	pb := project("bob")
	if ev := bob.next(t); ev.ID != pb.ID {
		t.Fatalf("bob sees %+v, want only his project", ev)
	}

	// Made a collaborator on alice's host, bob sees it at once; removed,
	// it leaves his stream (a trigger on the collaborators: no change to
	// the host row itself).
	a3 := e.addHost("alice", "a3")
	if ev := alice.next(t); ev.ID != a3.ID {
		t.Fatalf("alice sees %+v, want her host a3", ev)
	}
	if err := e.st.AddCollaborator(ctx, a3.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if ev := bob.next(t); ev.ID != a3.ID || ev.Deleted {
		t.Fatalf("bob sees %+v, want host a3 he now collaborates on", ev)
	}
	if err := e.st.RemoveCollaborator(ctx, a3.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if ev := bob.next(t); ev.ID != a3.ID || !ev.Deleted || ev.Host != nil {
		t.Fatalf("bob sees %+v, want host a3 gone from his view", ev)
	}

	// An admin sees the same events through a server as directly.
	root := watch(t, e.http.URL, e.keys["root"], store.TopicHosts)
	direct := &watcher{events: make(chan store.Event, 100), done: make(chan error, 1)}
	dctx, dcancel := context.WithCancel(ctx)
	defer func() { dcancel(); <-direct.done }()
	go func() {
		direct.done <- e.app.Watch(dctx, projects.Caller{}, []store.Topic{store.TopicHosts}, func(ev store.Event) error {
			direct.events <- ev
			return nil
		})
	}()
	for _, w := range []*watcher{root, direct} {
		for ev := range w.events {
			if ev.Sync {
				break
			}
		}
	}
	r1 := e.addHost("root", "r1")
	served, direct1 := root.next(t), direct.next(t)
	if js, jd := must(json.Marshal(served)), must(json.Marshal(direct1)); served.ID != r1.ID || string(js) != string(jd) {
		t.Fatalf("through the server %s, directly %s", js, jd)
	}
	// An unreachable server is one error naming server.url.
	dead, _ := client.New("http://127.0.0.1:1", e.keys["root"])
	err = client.Events{C: dead}.Watch(ctx, projects.Caller{}, nil, func(store.Event) error { return nil })
	if !errkind.Is(err, errkind.Unavailable) || !strings.Contains(err.Error(), "(server.url)") {
		t.Fatalf("watching an unreachable server: %v", err)
	}

	// Shutdown ends a stream (the client would reconnect: read it raw).
	req, _ := http.NewRequest("GET", httpB.URL+"/api/v1/events?topics=jobs", nil)
	req.Header.Set("Authorization", "Bearer "+e.keys["root"])
	resp, err := httpB.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "event: sync") {
	}
	srvB.Shutdown()
	for sc.Scan() {
	}
	if sc.Err() != nil {
		t.Fatalf("stream ended with %v, want its end", sc.Err())
	}
}

// BenchmarkEventLatency is the time from a committed change to a host
// (through one server's store) to its event at a client of another server
// on the same Postgres: the NOTIFY, the LISTEN of the other store, the
// row's re-read and check, and the SSE stream over loopback HTTP.
//
//	go test -run '^$' -bench BenchmarkEventLatency -benchtime 200x ./pkg/server/
func BenchmarkEventLatency(b *testing.B) {
	e := newEnv(b, "postgres", nil)
	ctx := context.Background()
	h := e.addHost("alice", "lat")
	_, httpB := secondServer(b, e)
	w := watch(b, httpB.URL, e.keys["alice"], store.TopicHosts)
	for ev := range w.events {
		if ev.Sync {
			break
		}
	}
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		h.LastAction = fmt.Sprint("bench-", i)
		start := time.Now()
		if err := e.st.UpdateHost(ctx, h); err != nil {
			b.Fatal(err)
		}
		for {
			ev := <-w.events
			if ev.Host != nil && ev.Host.LastAction == h.LastAction {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}
