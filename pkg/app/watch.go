package app

import (
	"context"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Watch follows the hosts, projects and jobs of topics in the database
// (store.Watch), from this and every other process that shares it. Like
// `list` in direct mode it shows every row: the database is the trust
// boundary, so the caller does not narrow what is seen.
func (a *App) Watch(ctx context.Context, _ projects.Caller, topics []store.Topic, emit func(store.Event) error) error {
	st, err := a.Store(ctx)
	if err != nil {
		return err
	}
	if len(topics) == 0 {
		topics = store.Topics
	}
	return store.Watch(ctx, st, topics, store.Visible{}, emit)
}
