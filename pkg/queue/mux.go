package queue

import (
	"context"
	"fmt"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// Mux routes jobs to handlers by the prefix of their action: an action
// "project.start" goes to the handler registered for "project"; actions
// without a dot go to the default handler (host actions).
type Mux struct {
	Default  Handler
	prefixes map[string]Handler
}

var _ Handler = (*Mux)(nil)

// Handle registers h for actions "prefix.*".
func (m *Mux) Handle(prefix string, h Handler) {
	if m.prefixes == nil {
		m.prefixes = map[string]Handler{}
	}
	m.prefixes[prefix] = h
}

func (m *Mux) route(a model.Action) (Handler, error) {
	if i := strings.IndexByte(string(a), '.'); i > 0 {
		if h, ok := m.prefixes[string(a)[:i]]; ok {
			return h, nil
		}
		return nil, errkind.Errorf(errkind.Invalid, "no handler for action %q", a)
	}
	if m.Default == nil {
		return nil, fmt.Errorf("no handler for action %q", a)
	}
	return m.Default, nil
}

func (m *Mux) Run(ctx context.Context, job model.Job, progress func(string)) (Result, error) {
	h, err := m.route(job.Action)
	if err != nil {
		return Result{}, err
	}
	return h.Run(ctx, job, progress)
}

func (m *Mux) Failed(ctx context.Context, job model.Job, err error, final bool) Result {
	h, rerr := m.route(job.Action)
	if rerr != nil {
		return Result{}
	}
	return h.Failed(ctx, job, err, final)
}
