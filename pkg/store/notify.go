package store

import (
	"context"
	"sync"
	"time"
)

// Topic names a table whose committed changes can be watched.
type Topic string

const (
	TopicHosts    Topic = "hosts"    // project_hosts
	TopicProjects Topic = "projects" // projects
	TopicJobs     Topic = "jobs"     // jobs: enqueued, claimed, finished (not heartbeats)
)

// Topics are all topics, in a fixed order.
var Topics = []Topic{TopicHosts, TopicProjects, TopicJobs}

// Change says that the row ID of Topic changed (was inserted, updated or
// deleted) in a committed transaction. An empty ID means "something in
// Topic may have changed": re-read what you show.
//
// Changes are hints to re-read promptly, not a log. A subscriber that
// falls behind loses individual ids and receives an empty-ID change in
// their place; one that (re)subscribes must read the current state after
// subscribing, not before.
type Change struct {
	Topic Topic  `json:"topic"`
	ID    string `json:"id,omitempty"`
}

// subscriberBuffer is how many changes a subscriber may fall behind
// before they are folded into an empty-ID change.
const subscriberBuffer = 256

// Subscribe returns a channel of the committed changes to topics (all
// topics if none are given), from any process sharing the database, until
// ctx ends; then the channel is closed. Where changes come from:
//
//   - Postgres: triggers (migration 0007) NOTIFY the channels
//     cocalc_hosts, cocalc_projects and cocalc_jobs with the row's id; one
//     LISTEN connection per SQLStore, opened at the first Subscribe, fans
//     them out. After it reconnects (the server restarted) every topic
//     gets an empty-ID change, since some notifications may be lost.
//     Subscribe returns once that connection listens, or when ctx ends.
//   - SQLite: jobs changed through this SQLStore are published at once;
//     every commit by another connection or process is seen by polling
//     PRAGMA data_version every SQLitePollInterval and published as an
//     empty-ID change to every topic.
func (s *SQLStore) Subscribe(ctx context.Context, topics ...Topic) <-chan Change {
	if len(topics) == 0 {
		topics = Topics
	}
	sub := &subscriber{ch: make(chan Change, subscriberBuffer), topics: map[Topic]bool{}}
	for _, t := range topics {
		sub.topics[t] = true
	}
	h := s.changes
	ready := h.add(sub, func(ctx context.Context, publish func(Change), ready func()) {
		s.d.watch(ctx, s, publish, ready)
	})
	go func() {
		<-ctx.Done()
		h.remove(sub)
	}()
	select {
	case <-ready:
	case <-ctx.Done():
	}
	return sub.ch
}

// SQLitePollInterval is how often an SQLite store looks for commits made
// by other processes (a read of one counter in shared memory).
const SQLitePollInterval = 20 * time.Millisecond

// hub fans changes out to subscribers. Its source (the dialect's watch)
// starts with the first subscriber and stops when the store closes.
type hub struct {
	mu      sync.Mutex
	subs    map[*subscriber]bool
	started bool
	ready   chan struct{}
	stop    context.CancelFunc
}

type subscriber struct {
	ch     chan Change
	topics map[Topic]bool
}

func newHub() *hub { return &hub{subs: map[*subscriber]bool{}, ready: make(chan struct{})} }

// add registers sub and starts the source if it is the first; it returns
// a channel closed once the source delivers.
func (h *hub) add(sub *subscriber, source func(ctx context.Context, publish func(Change), ready func())) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[sub] = true
	if !h.started {
		h.started = true
		ctx, cancel := context.WithCancel(context.Background())
		h.stop = cancel
		var once sync.Once
		go source(ctx, h.publish, func() { once.Do(func() { close(h.ready) }) })
	}
	return h.ready
}

func (h *hub) remove(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[sub] {
		delete(h.subs, sub)
		close(sub.ch)
	}
}

// publish hands c to every subscriber of its topic without blocking: a
// full subscriber loses its oldest change and gets an empty-ID one (a
// "re-read") in its place.
func (h *hub) publish(c Change) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		if !sub.topics[c.Topic] {
			continue
		}
		select {
		case sub.ch <- c:
			continue
		default:
		}
		select {
		case <-sub.ch:
		default:
		}
		select {
		case sub.ch <- Change{Topic: c.Topic}:
		default:
		}
	}
}

// close stops the source and ends every subscription.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop != nil {
		h.stop()
	}
	for sub := range h.subs {
		delete(h.subs, sub)
		close(sub.ch)
	}
}
