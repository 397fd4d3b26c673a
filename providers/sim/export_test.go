package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// Disks returns, for tests of the sim, every kept data disk in state, keyed by instance name.
func Disks(ctx context.Context, state provider.StateStore) (map[string]Disk, error) {
	all, err := state.List(ctx, Name)
	if err != nil {
		return nil, fmt.Errorf("list sim disks: %w", err)
	}
	out := map[string]Disk{}
	for k, v := range all {
		if !strings.HasPrefix(k, diskPrefix) {
			continue
		}
		var d Disk
		if err := json.Unmarshal(v, &d); err != nil {
			return nil, fmt.Errorf("sim disk record %q is corrupt: %w", k, err)
		}
		out[strings.TrimPrefix(k, diskPrefix)] = d
	}
	return out, nil
}
