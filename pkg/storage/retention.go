package storage

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Retention says which scheduled snapshots to keep: the newest one in each
// of the last Hourly hours, Daily days and Weekly weeks (UTC). Snapshots
// made by hand are never pruned.
type Retention struct {
	Hourly int `json:"hourly"`
	Daily  int `json:"daily"`
	Weekly int `json:"weekly"`
}

// DefaultRetention keeps a day of hourly, a week of daily and a month of
// weekly snapshots.
var DefaultRetention = Retention{Hourly: 24, Daily: 7, Weekly: 4}

// AutoName is the name of a scheduled snapshot taken at t.
func AutoName(t time.Time) string {
	return AutoPrefix + t.UTC().Format("20060102T150405Z")
}

// toPrune returns the scheduled snapshots that r does not keep at now.
func toPrune(snaps []Snapshot, r Retention, now time.Time) []Snapshot {
	var auto []Snapshot
	for _, s := range snaps {
		if s.Auto {
			auto = append(auto, s)
		}
	}
	// Newest first, so the first snapshot seen in a bucket is the one kept.
	sort.Slice(auto, func(i, j int) bool {
		if !auto[i].CreatedAt.Equal(auto[j].CreatedAt) {
			return auto[i].CreatedAt.After(auto[j].CreatedAt)
		}
		return auto[i].Name > auto[j].Name // names carry the time too
	})
	keep := map[string]bool{}
	mark := func(n int, bucket func(time.Time) time.Time, step func(time.Time, int) time.Time) {
		if n <= 0 {
			return
		}
		oldest := step(bucket(now.UTC()), -(n - 1))
		seen := map[time.Time]bool{}
		for _, s := range auto {
			b := bucket(s.CreatedAt.UTC())
			if b.Before(oldest) || seen[b] {
				continue
			}
			seen[b] = true
			keep[s.Name] = true
		}
	}
	mark(r.Hourly, func(t time.Time) time.Time { return t.Truncate(time.Hour) },
		func(t time.Time, n int) time.Time { return t.Add(time.Duration(n) * time.Hour) })
	day := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }
	mark(r.Daily, day, func(t time.Time, n int) time.Time { return t.AddDate(0, 0, n) })
	week := func(t time.Time) time.Time {
		d := day(t)
		return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7)) // Monday
	}
	mark(r.Weekly, week, func(t time.Time, n int) time.Time { return t.AddDate(0, 0, 7*n) })
	var out []Snapshot
	for _, s := range auto {
		if !keep[s.Name] {
			out = append(out, s)
		}
	}
	return out
}

// Prune deletes the scheduled snapshots of project id that r does not
// keep, and returns their names.
func (m *Manager) Prune(ctx context.Context, id string, r Retention, now time.Time) ([]string, error) {
	snaps, err := m.Snapshots(ctx, id)
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, s := range toPrune(snaps, r, now) {
		if err := m.DeleteSnapshot(ctx, id, s.Name); err != nil {
			return deleted, fmt.Errorf("prune snapshots of project %s: %w", id, err)
		}
		deleted = append(deleted, s.Name)
	}
	return deleted, nil
}
