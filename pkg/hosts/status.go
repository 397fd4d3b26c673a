// Package hosts is the domain layer for project hosts: it validates
// requests against provider capabilities, enqueues actions on the durable
// queue, and executes them (calling the provider, updating the host row and
// appending to cloud_vm_log).
package hosts

import (
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// StatusFromState maps a provider's normalized instance state to a host
// status.
func StatusFromState(s provider.State) model.Status {
	switch s {
	case provider.StatePending:
		return model.StatusStarting
	case provider.StateRunning:
		return model.StatusRunning
	case provider.StateStopping:
		return model.StatusStopping
	case provider.StateStopped:
		return model.StatusOff
	case provider.StateTerminating:
		return model.StatusDeprovisioning
	case provider.StateTerminated:
		return model.StatusDeprovisioned
	default:
		return model.StatusError
	}
}
