//go:build !linux

package agent

import (
	"context"
	"net"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

type netnsCache struct{}

func (r *runtime) forgetNetns(string) {}

// projectNetns needs Linux network namespaces.
func (r *runtime) projectNetns(context.Context, string) (int, error) {
	return 0, perr(agentapi.CodeUnsupported, "the ingress needs Linux")
}

// dialProject needs Linux network namespaces.
func (r *runtime) dialProject(context.Context, string, int) (net.Conn, error) {
	return nil, perr(agentapi.CodeUnsupported, "the ingress needs Linux")
}
