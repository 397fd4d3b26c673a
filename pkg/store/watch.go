package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// Event is a row of a watched topic as a watcher sees it now: its host,
// project or job, or Deleted when it is gone (deleted, or no longer
// visible to the watcher). A job leaves the watch when it ends: its last
// event carries it ended.
//
// Sync marks the end of a topic's current rows, sent once when a watch
// starts: the events before it are the whole state of the topic, those
// after it are changes.
type Event struct {
	Topic   Topic          `json:"topic"`
	ID      string         `json:"id,omitempty"`
	Deleted bool           `json:"deleted,omitempty"`
	Sync    bool           `json:"sync,omitempty"`
	Host    *model.Host    `json:"host,omitempty"`
	Project *model.Project `json:"project,omitempty"`
	Job     *model.Job     `json:"job,omitempty"`
}

// ParseTopics reads topic names ("hosts", "projects", "jobs"); none is
// every topic.
func ParseTopics(names []string) ([]Topic, error) {
	if len(names) == 0 {
		return slices.Clone(Topics), nil
	}
	var out []Topic
	for _, n := range names {
		t := Topic(n)
		if !slices.Contains(Topics, t) {
			return nil, errkind.Errorf(errkind.Invalid, "unknown topic %q: the topics are hosts, projects and jobs", n)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// Visible decides which rows a watcher may see; a nil func lets it see
// every row of its kind.
type Visible struct {
	Host    func(context.Context, model.Host) (bool, error)
	Project func(context.Context, model.Project) (bool, error)
	Job     func(context.Context, model.Job) (bool, error)
}

// Watch calls emit with the current rows of topics that vis allows, a
// Sync event for each topic, then an event for each committed change to
// such a row (from any process sharing the database), until ctx ends
// (nil) or a read or emit fails. Bursts coalesce: a row changed several
// times before it is read is sent once, as it is then. An emit that
// blocks slows only this watch; the changes it misses meanwhile are
// folded (Subscribe) and caught up by re-reading the topic.
func Watch(ctx context.Context, st Store, topics []Topic, vis Visible, emit func(Event) error) error {
	w := &watch{st: st, vis: vis, emit: emit, tr: NewTracker()}
	changes := st.Subscribe(ctx, topics...)
	for _, t := range topics {
		if err := w.resync(ctx, t); err != nil {
			return err
		}
		if err := emit(Event{Topic: t, Sync: true}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-changes:
			if !ok {
				return nil
			}
			var err error
			if c.ID == "" {
				err = w.resync(ctx, c.Topic)
			} else {
				err = w.reread(ctx, c.Topic, c.ID)
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

type watch struct {
	st   Store
	vis  Visible
	emit func(Event) error
	tr   *Tracker
}

// send emits e if it says something new.
func (w *watch) send(e Event) error {
	if e, ok := w.tr.Put(e); ok {
		return w.emit(e)
	}
	return nil
}

// resync reads topic t whole and sends what changed since the watch
// last looked, including the rows that are gone.
func (w *watch) resync(ctx context.Context, t Topic) error {
	rows, err := w.list(ctx, t)
	if err != nil {
		return err
	}
	w.tr.Begin(t)
	for _, e := range rows {
		if err := w.send(e); err != nil {
			return err
		}
	}
	for _, id := range w.tr.End(t) {
		if err := w.reread(ctx, t, id); err != nil {
			return err
		}
	}
	return nil
}

func (w *watch) list(ctx context.Context, t Topic) ([]Event, error) {
	switch t {
	case TopicHosts:
		hs, err := w.st.ListHosts(ctx, HostFilter{})
		return visibleRows(ctx, hs, err, w.vis.Host, func(h *model.Host) Event { return Event{Topic: t, ID: h.ID, Host: h} })
	case TopicProjects:
		ps, err := w.st.ListProjects(ctx, ProjectFilter{})
		return visibleRows(ctx, ps, err, w.vis.Project, func(p *model.Project) Event { return Event{Topic: t, ID: p.ID, Project: p} })
	case TopicJobs:
		js, err := w.st.ListJobs(ctx, JobFilter{ActiveOnly: true})
		return visibleRows(ctx, js, err, w.vis.Job, func(j *model.Job) Event { return Event{Topic: t, ID: j.ID, Job: j} })
	}
	return nil, nil
}

// visibleRows are the rows (read with err) that may allows, as events.
func visibleRows[T any](ctx context.Context, rows []T, err error, may func(context.Context, T) (bool, error), event func(*T) Event) ([]Event, error) {
	if err != nil {
		return nil, err
	}
	var out []Event
	for i := range rows {
		ok, err := allowed(ctx, may, rows[i])
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, event(&rows[i]))
		}
	}
	return out, nil
}

// reread sends row id of topic t as it is now, or its deletion.
func (w *watch) reread(ctx context.Context, t Topic, id string) error {
	e, err := w.get(ctx, t, id)
	if errkind.Is(err, errkind.NotFound) {
		return w.send(Event{Topic: t, ID: id, Deleted: true})
	}
	if err != nil {
		return fmt.Errorf("watch: read %s %s: %w", t, id, err)
	}
	return w.send(e)
}

// get is row id of topic t, Deleted when the watcher may not see it.
func (w *watch) get(ctx context.Context, t Topic, id string) (Event, error) {
	e := Event{Topic: t, ID: id}
	var ok bool
	var err error
	switch t {
	case TopicHosts:
		var h model.Host
		if h, err = w.st.GetHost(ctx, id); err == nil && h.ID == id {
			ok, err = allowed(ctx, w.vis.Host, h)
			e.Host = &h
			ok = ok && h.DeletedAt == nil
		}
	case TopicProjects:
		var p model.Project
		if p, err = w.st.GetProject(ctx, id); err == nil {
			ok, err = allowed(ctx, w.vis.Project, p)
			e.Project = &p
			ok = ok && p.DeletedAt == nil
		}
	case TopicJobs:
		var j model.Job
		if j, err = w.st.GetJob(ctx, id); err == nil {
			ok, err = allowed(ctx, w.vis.Job, j)
			e.Job = &j
		}
	}
	if err != nil {
		return e, err
	}
	if !ok {
		// Gone for this watcher: say nothing more of the row.
		return Event{Topic: t, ID: id, Deleted: true}, nil
	}
	return e, nil
}

func allowed[T any](ctx context.Context, f func(context.Context, T) (bool, error), v T) (bool, error) {
	if f == nil {
		return true, nil
	}
	return f(ctx, v)
}

// Tracker remembers the rows a watcher has sent, so that it sends each
// state once and knows, after re-reading a topic whole, which rows are
// gone. It is not safe for concurrent use.
type Tracker struct {
	rows map[Topic]map[string]string // id → the row's JSON
	seen map[Topic]map[string]bool   // ids Put since Begin
}

// NewTracker returns a tracker that has seen nothing.
func NewTracker() *Tracker {
	return &Tracker{rows: map[Topic]map[string]string{}, seen: map[Topic]map[string]bool{}}
}

// Put records e and reports whether it is news: a row not seen in this
// state, or the deletion of a row seen. An ended job is forgotten once
// sent (a job leaves the watch when it ends).
func (t *Tracker) Put(e Event) (Event, bool) {
	if e.Sync || e.ID == "" {
		return e, true
	}
	if seen := t.seen[e.Topic]; seen != nil {
		seen[e.ID] = true
	}
	rows := t.rows[e.Topic]
	if rows == nil {
		rows = map[string]string{}
		t.rows[e.Topic] = rows
	}
	old, known := rows[e.ID]
	if e.Deleted {
		delete(rows, e.ID)
		return e, known
	}
	b, _ := json.Marshal(e)
	if known && old == string(b) {
		return e, false
	}
	rows[e.ID] = string(b)
	if e.Job != nil && !e.Job.Active() {
		delete(rows, e.ID)
	}
	return e, true
}

// Begin starts a re-read of topic tp whole.
func (t *Tracker) Begin(tp Topic) { t.seen[tp] = map[string]bool{} }

// End returns the rows of topic tp sent before but not Put since Begin:
// those to read again one by one (a job that ended, a host deleted).
func (t *Tracker) End(tp Topic) []string {
	var gone []string
	for id := range t.rows[tp] {
		if !t.seen[tp][id] {
			gone = append(gone, id)
		}
	}
	delete(t.seen, tp)
	slices.Sort(gone)
	return gone
}
