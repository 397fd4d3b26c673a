package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// KeepAlive is how often an idle event stream sends a comment, so that
// proxies keep the connection open and the client notices a dead one.
const KeepAlive = 15 * time.Second

// streamEvents follows the rows of ?topics=hosts,projects,jobs (all when
// absent) that the caller may see, as server-sent events: first each
// topic's current rows and an "event: sync", then one event per committed
// change (from any server on the same database), each with a stream-
// monotonic id and a store.Event as data. A client that reads slowly
// slows only its own stream and misses intermediate states, never the
// last one; one that reconnects gets the current rows again.
func (s *Server) streamEvents(w http.ResponseWriter, r *request) error {
	var names []string
	if v := r.URL.Query().Get("topics"); v != "" {
		names = strings.Split(v, ",")
	}
	topics, err := store.ParseTopics(names)
	if err != nil {
		return errkind.Errorf(errkind.Invalid, "topics=%q: %v", r.URL.Query().Get("topics"), err)
	}
	select {
	case <-s.quit:
		return errkind.New(errkind.Unavailable, "the server is shutting down; its clients reconnect to the next")
	default:
	}
	vis, err := s.visibility(r)
	if err != nil {
		return err
	}
	flusher, err := startEventStream(w)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	events := make(chan store.Event)
	done := make(chan error, 1)
	go func() {
		done <- store.Watch(ctx, s.Store, topics, vis, func(e store.Event) error {
			select {
			case events <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	stop := func(err error) error {
		cancel()
		if werr := <-done; err == nil && werr != nil && ctx.Err() == nil {
			err = werr
		}
		if err != nil {
			return &streamed{status: http.StatusOK, err: err}
		}
		return nil
	}
	keepalive := time.NewTicker(KeepAlive)
	defer keepalive.Stop()
	var seq int64
	for {
		select {
		case <-r.Context().Done():
			return stop(nil)
		case <-s.quit:
			return stop(nil)
		case err := <-done:
			done <- err // for stop
			return stop(err)
		case e := <-events:
			b, err := json.Marshal(e)
			if err != nil {
				return stop(err)
			}
			seq++
			name := strings.TrimSuffix(string(e.Topic), "s")
			if e.Sync {
				name = "sync"
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", seq, name, b); err != nil {
				return stop(nil) // the client went away
			}
			flusher.Flush()
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return stop(nil)
			}
			flusher.Flush()
		}
	}
}

// visibility is what the caller of r may see: what `list` and `project
// list` would show it (hosts it owns, collaborates on or that are
// shared; its projects; the jobs of those), everything for an admin.
func (s *Server) visibility(r *request) (store.Visible, error) {
	account, admin, err := s.actor(r)
	if err != nil {
		return store.Visible{}, err
	}
	if admin {
		return store.Visible{}, nil
	}
	host := func(ctx context.Context, h model.Host) (bool, error) { return s.mayUse(ctx, account, false, h) }
	project := func(_ context.Context, p model.Project) (bool, error) { return p.Owner == account, nil }
	job := func(ctx context.Context, j model.Job) (bool, error) {
		switch j.Subject.Kind {
		case model.SubjectHost:
			h, err := s.Store.GetHost(ctx, j.Subject.ID)
			if errkind.Is(err, errkind.NotFound) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			return host(ctx, h)
		case model.SubjectProject:
			p, err := s.Store.GetProject(ctx, j.Subject.ID)
			if errkind.Is(err, errkind.NotFound) {
				return false, nil
			}
			return err == nil && p.Owner == account, err
		}
		return false, nil
	}
	return store.Visible{Host: host, Project: project, Job: job}, nil
}
