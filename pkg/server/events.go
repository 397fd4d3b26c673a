package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Hub keeps the events of the jobs this process's worker runs, so that a
// client following a job sees what a CLI working it itself would: the
// claim, each progress message, retries and the end. A job's events are
// kept from its first until a while after its end, since a client
// usually subscribes after the worker has claimed the job.
type Hub struct {
	mu   sync.Mutex
	jobs map[string]*jobEvents
	now  func() time.Time
}

type jobEvents struct {
	events []queue.Event
	ended  time.Time
	subs   map[chan queue.Event]struct{}
}

const (
	// keepEnded is how long the events of an ended job are kept.
	keepEnded = 5 * time.Minute
	// maxJobEvents bounds what is kept of one job (its newest events).
	maxJobEvents = 1000
)

// NewHub returns an empty hub; now is its clock (nil: time.Now).
func NewHub(now func() time.Time) *Hub {
	if now == nil {
		now = time.Now
	}
	return &Hub{jobs: map[string]*jobEvents{}, now: now}
}

func terminal(e queue.Event) bool { return e.Kind == queue.EventDone || e.Kind == queue.EventFailed }

// Publish records e and passes it to the job's followers. A follower
// that does not keep up loses events rather than slowing the worker.
func (h *Hub) Publish(e queue.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for id, j := range h.jobs {
		if !j.ended.IsZero() && now.Sub(j.ended) > keepEnded && len(j.subs) == 0 {
			delete(h.jobs, id)
		}
	}
	j := h.jobs[e.JobID]
	if j == nil {
		j = &jobEvents{subs: map[chan queue.Event]struct{}{}}
		h.jobs[e.JobID] = j
	}
	if len(j.events) == maxJobEvents {
		j.events = j.events[1:]
	}
	j.events = append(j.events, e)
	if terminal(e) {
		j.ended = now
	} else {
		j.ended = time.Time{} // a retry runs it again
	}
	for ch := range j.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// follow returns the job's events so far and a channel of those to come,
// until stop is called.
func (h *Hub) follow(jobID string) (past []queue.Event, next <-chan queue.Event, stop func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	j := h.jobs[jobID]
	if j == nil {
		j = &jobEvents{subs: map[chan queue.Event]struct{}{}}
		h.jobs[jobID] = j
	}
	ch := make(chan queue.Event, 256)
	j.subs[ch] = struct{}{}
	return append([]queue.Event(nil), j.events...), ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(j.subs, ch)
		if len(j.subs) == 0 && len(j.events) == 0 {
			delete(h.jobs, jobID)
		}
	}
}

// followJob streams a job's events as server-sent events ("event: job",
// data: a queue event), then the job as it ended ("event: end", data: the
// job). Events of a job another process runs are not seen here; its end
// is, from the store's change notifications.
func (s *Server) followJob(w http.ResponseWriter, r *request) error {
	id := r.PathValue("job")
	past, next, stop := s.Events.follow(id)
	defer stop()
	changes := s.Store.Subscribe(r.Context(), store.TopicJobs)
	j, err := s.Store.GetJob(r.Context(), id)
	if err != nil {
		return err
	}
	if err := s.mayUseJob(r, j); err != nil {
		return err
	}
	flusher, err := startEventStream(w)
	if err != nil {
		return err
	}
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	}
	end := func() error {
		j, err := s.Store.GetJob(r.Context(), id)
		if err != nil {
			return nil // the client falls back to reading the job
		}
		return send("end", j)
	}
	for _, e := range past {
		if err := send("job", e); err != nil {
			return nil
		}
	}
	if len(past) > 0 && terminal(past[len(past)-1]) {
		return end()
	}
	// seen: this process runs the job (its events reach the hub).
	seen := len(past) > 0
	// ended is called once the store says the job ended. Our worker
	// tells the hub each event as it happens and commits a job's end
	// before it tells the hub of that, so events already waiting (a
	// fast job, a busy server) also mean the job ran here: let them and
	// its last events through first. None seen or waiting: it ran in
	// another process.
	ended := func() error {
		if !seen && len(next) == 0 {
			return end()
		}
		wait := time.After(5 * time.Second)
		for {
			select {
			case e := <-next:
				if send("job", e) != nil || terminal(e) {
					return end()
				}
			case <-wait:
				return end()
			case <-r.Context().Done():
				return end()
			}
		}
	}
	if !j.Active() {
		return ended()
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-s.quit:
			return nil
		case e := <-next:
			seen = true
			if err := send("job", e); err != nil {
				return nil
			}
			if terminal(e) {
				return end()
			}
		case <-changes:
			if j, err := s.Store.GetJob(r.Context(), id); err == nil && !j.Active() {
				return ended()
			}
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			flusher.Flush()
		}
	}
}

// startEventStream answers 200 with a server-sent event stream, flushed
// at once so that the client knows it is connected.
func startEventStream(w http.ResponseWriter) (http.Flusher, error) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		return nil, errkind.New(errkind.Internal, "streaming is not supported by this connection")
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	return flusher, nil
}
