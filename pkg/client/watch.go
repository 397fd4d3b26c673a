package client

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Events follow the server's event stream (GET /api/v1/events).
type Events struct{ C *Client }

// ReconnectFor is how long Watch keeps trying to reach a server whose
// stream broke before it gives up with the error of the last try.
const ReconnectFor = time.Minute

// Watch calls emit with what the server streams of topics, as the direct
// watch does (store.Watch): the current rows, a Sync event per topic,
// then each change. When the stream breaks it reconnects; the server then
// sends the current rows again, and only what changed meanwhile reaches
// emit (rows gone since as deletions, jobs ended since as they ended).
func (ev Events) Watch(ctx context.Context, c projects.Caller, topics []store.Topic, emit func(store.Event) error) error {
	if len(topics) == 0 {
		topics = store.Topics
	}
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = string(t)
	}
	q := url.Values{"topics": {strings.Join(names, ",")}}
	tr := store.NewTracker()
	synced := map[store.Topic]bool{}
	var down time.Time // when the stream last broke
	backoff := 250 * time.Millisecond
	for {
		resp, err := ev.C.open(ctx, http.MethodGet, "/events", q, c.As, nil, "text/event-stream")
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			k := errkind.Of(err)
			if down.IsZero() || (k != errkind.Unavailable && k != errkind.Transient) || time.Since(down) > ReconnectFor {
				return err
			}
			if !ev.pause(ctx, &backoff) {
				return nil
			}
			continue
		}
		opened := time.Now()
		for _, t := range topics {
			tr.Begin(t)
		}
		err = ev.read(ctx, resp.Body, func(e store.Event) error {
			if !e.Sync {
				if e, ok := tr.Put(e); ok {
					return emit(e)
				}
				return nil
			}
			for _, id := range tr.End(e.Topic) {
				if err := ev.gone(ctx, c, e.Topic, id, tr, emit); err != nil {
					return err
				}
			}
			if synced[e.Topic] {
				return nil
			}
			synced[e.Topic] = true
			return emit(e)
		})
		resp.Body.Close()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		down = time.Now()
		if down.Sub(opened) > 10*time.Second {
			backoff = 250 * time.Millisecond // it was a good stream
		}
		if !ev.pause(ctx, &backoff) {
			return nil
		}
	}
}

// pause waits *backoff, doubled each time up to 5 s, so that a server
// that keeps closing streams is not asked in a loop. It is false when
// ctx ended first.
func (ev Events) pause(ctx context.Context, backoff *time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(*backoff):
	}
	*backoff = min(2**backoff, 5*time.Second)
	return true
}

// read passes each event of an SSE stream to emit until the stream ends
// (nil) or emit fails.
func (ev Events) read(ctx context.Context, body interface{ Read([]byte) (int, error) }, emit func(store.Event) error) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case line == "" && data != "":
			var e store.Event
			if err := json.Unmarshal([]byte(data), &e); err != nil {
				return errkind.Errorf(errkind.Internal, "event stream of %s: an event that is not what this client expects (%v); are client and server the same version?", ev.C.base, err)
			}
			data = ""
			if err := emit(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// gone sends what became of row id, sent before a reconnect and absent
// from the rows sent after it: a host or project is gone (or hidden); a
// job has ended, as it is read.
func (ev Events) gone(ctx context.Context, c projects.Caller, t store.Topic, id string, tr *store.Tracker, emit func(store.Event) error) error {
	e := store.Event{Topic: t, ID: id, Deleted: true}
	if t == store.TopicJobs {
		j, err := get[model.Job](ctx, ev.C, "/jobs/"+seg(id), nil, c.As)
		switch {
		case err == nil:
			e = store.Event{Topic: t, ID: id, Job: &j}
		case !errkind.Is(err, errkind.NotFound) && !errkind.Is(err, errkind.Forbidden):
			return err
		}
	}
	if e, ok := tr.Put(e); ok {
		return emit(e)
	}
	return nil
}
