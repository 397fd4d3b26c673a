//go:build !linux

package agent

import (
	"context"
	"errors"
	"net"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

// netnsInode needs Linux network namespaces.
func netnsInode(int) (uint64, error) { return 0, errors.New("network namespaces need Linux") }

// projectNetns needs Linux network namespaces.
func (r *runtime) projectNetns(context.Context, string) (int, error) {
	return 0, perr(agentapi.CodeUnsupported, "the ingress needs Linux")
}

// dialProject needs Linux network namespaces.
func (r *runtime) dialProject(context.Context, string, int) (net.Conn, error) {
	return nil, perr(agentapi.CodeUnsupported, "the ingress needs Linux")
}
