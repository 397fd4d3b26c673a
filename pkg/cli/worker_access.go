package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// accessLoop refreshes every running host's access list every
// ingress.acl_ttl: revocations reach the hosts within that time, and a
// host keeps its list fresh (never past ingress.acl_max_stale) while the
// control plane runs.
func accessLoop(ctx context.Context, f *Factory, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var ps *projects.Service
	for {
		if ps == nil {
			var err error
			if ps, err = projectsService(ctx, f); err != nil {
				fmt.Fprintf(f.IO.ErrOut, "access lists: %v\n", err)
			}
		}
		if ps != nil {
			rep, err := ps.PushAllAccess(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				fmt.Fprintf(f.IO.ErrOut, "access lists: %v\n", err)
			case f.jsonOutput() && len(rep.Unreachable) > 0:
				printJSONLine(f.IO.ErrOut, map[string]any{"access_lists": rep})
			case !f.jsonOutput():
				for _, h := range rep.Unreachable {
					fmt.Fprintf(f.IO.ErrOut, "access lists: host %s not reached (%s); it keeps its list for ingress.acl_max_stale\n", h.Name, h.Error)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
