package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// The --watch of `list`, `show` and `project list`: the command's output
// again on each change to what it shows, until a signal ends it (exit 0).
// Changes come from the Watcher (the database's notifications directly,
// the server's event stream otherwise); each burst is read once, with the
// command's own listing and flags, so a watched row is exactly what the
// command shows without --watch.

// watchDebounce gathers a burst of changes into one re-read.
const watchDebounce = 100 * time.Millisecond

// WatchLine is one line of --watch's JSON output: a row that appeared or
// changed (op "upsert", with the row), or one that is gone or no longer
// matches the command's flags (op "delete", with its id).
type WatchLine struct {
	Op      string         `json:"op"`
	ID      string         `json:"id"`
	Host    *model.Host    `json:"host,omitempty"`
	Project *model.Project `json:"project,omitempty"`
}

// watchSpec is what a command shows with --watch.
type watchSpec struct {
	// topic is what rows are; also are the changes that matter.
	topic store.Topic
	also  []store.Topic
	// rows reads what the command shows now, as it would without --watch.
	rows func(ctx context.Context) ([]store.Event, error)
	// draw prints the command's usual output (on a terminal).
	draw func(ctx context.Context) error
	// changed, if set, reads only what changed since the last read (of
	// rows or changed): rows that appeared or changed, and rows gone or no
	// longer shown as Deleted events. Rows are read once, then changed.
	changed func(ctx context.Context) ([]store.Event, error)
	// every, if set, re-reads that often even with no change announced.
	every time.Duration
}

// runWatch shows s on each change, until ctx ends: on a terminal the
// command's output redrawn, else (or with -o json) a JSON line per
// changed row, starting with the rows there are.
func runWatch(ctx context.Context, f *Factory, c projects.Caller, s watchSpec) error {
	w, err := f.Watcher()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- w.Watch(ctx, c, append([]store.Topic{s.topic}, s.also...), func(store.Event) error {
			select {
			case changed <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	tty := f.IO.OutTTY && f.exporter() == nil
	tr := store.NewTracker()
	read := false // rows were read once
	show := func() error {
		if tty {
			fmt.Fprint(f.IO.Out, "\x1b[H\x1b[2J") // home, clear
			return s.draw(ctx)
		}
		if s.changed != nil && read {
			rows, err := s.changed(ctx)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r, ok := tr.Put(r); ok {
					l := WatchLine{Op: "upsert", ID: r.ID, Host: r.Host, Project: r.Project}
					if r.Deleted {
						l = WatchLine{Op: "delete", ID: r.ID}
					}
					if err := f.watchLine(l); err != nil {
						return err
					}
				}
			}
			return nil
		}
		rows, err := s.rows(ctx)
		if err != nil {
			return err
		}
		read = true
		tr.Begin(s.topic)
		for _, r := range rows {
			if r, ok := tr.Put(r); ok {
				if err := f.watchLine(WatchLine{Op: "upsert", ID: r.ID, Host: r.Host, Project: r.Project}); err != nil {
					return err
				}
			}
		}
		for _, id := range tr.End(s.topic) {
			tr.Put(store.Event{Topic: s.topic, ID: id, Deleted: true})
			if err := f.watchLine(WatchLine{Op: "delete", ID: id}); err != nil {
				return err
			}
		}
		return nil
	}
	var debounce, tick <-chan time.Time
	if s.every > 0 {
		t := time.NewTicker(s.every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			if debounce == nil {
				debounce = time.After(0)
			}
		case <-ctx.Done():
			<-done
			return nil
		case err := <-done:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-changed:
			if debounce == nil {
				debounce = time.After(watchDebounce)
			}
		case <-debounce:
			debounce = nil
			if err := show(); err != nil {
				if ctx.Err() != nil {
					continue // a signal: end as above
				}
				return err
			}
		}
	}
}

// watchLine prints one line of --watch's JSON (through --jq or
// --template when given).
func (f *Factory) watchLine(l WatchLine) error {
	if e := f.exporter(); e != nil {
		return e.WriteLine(f.IO.Out, l)
	}
	printJSONLine(f.IO.Out, l)
	return nil
}

// hostRows are hosts as watched rows.
func hostRows(hs []model.Host) []store.Event {
	out := make([]store.Event, len(hs))
	for i := range hs {
		out[i] = store.Event{Topic: store.TopicHosts, ID: hs[i].ID, Host: &hs[i]}
	}
	return out
}
