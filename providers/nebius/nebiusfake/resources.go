package nebiusfake

import (
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	common "github.com/nebius/gosdk/proto/nebius/common/v1"
)

// resource is what the instance and disk services share, so that their
// Get, GetByName and List handlers have one home.
type resource[V any] interface {
	metadata() *common.ResourceMetadata
	view() V
}

func (in *instance) metadata() *common.ResourceMetadata { return in.meta }
func (d *disk) metadata() *common.ResourceMetadata      { return d.meta }

// findByID returns the resource with id, or NotFound naming kind.
func findByID[R resource[V], V any](m map[string]R, kind, id string) (R, error) {
	r, ok := m[id]
	if !ok {
		return r, notFound(kind, id)
	}
	return r, nil
}

// viewByID answers Get over m.
func viewByID[R resource[V], V any](m map[string]R, kind, id string) (V, error) {
	r, err := findByID(m, kind, id)
	if err != nil {
		var zero V
		return zero, err
	}
	return r.view(), nil
}

// viewByName answers GetByName over m.
func viewByName[R resource[V], V any](s *Server, m map[string]R, kind string, req *common.GetByNameRequest) (V, error) {
	var zero V
	if err := s.checkParent(req.GetParentId()); err != nil {
		return zero, err
	}
	for _, r := range m {
		if r.metadata().GetName() == req.GetName() {
			return r.view(), nil
		}
	}
	return zero, notFound(kind, req.GetName())
}

// listViews answers List over m: resources in id order, one page of views.
func listViews[R resource[V], V any](s *Server, m map[string]R, parent string, size int64, token string) ([]V, string, error) {
	if err := s.checkParent(parent); err != nil {
		return nil, "", err
	}
	all := make([]R, 0, len(m))
	for _, r := range m {
		all = append(all, r)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].metadata().GetId() < all[j].metadata().GetId() })
	items, next, err := page(all, size, token)
	if err != nil {
		return nil, "", err
	}
	var views []V
	for _, r := range items {
		views = append(views, r.view())
	}
	return views, next, nil
}

// viewsByName is every resource in m as Get would return it, sorted by
// name, for the test accessors.
func viewsByName[R resource[V], V any](m map[string]R) []V {
	all := make([]R, 0, len(m))
	for _, r := range m {
		all = append(all, r)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].metadata().GetName() < all[j].metadata().GetName() })
	out := make([]V, 0, len(all))
	for _, r := range all {
		out = append(out, r.view())
	}
	return out
}

// checkNewName refuses a name Nebius would reject or one already used
// by a resource in m.
func checkNewName[R resource[V], V any](m map[string]R, kind, name string) error {
	if !nameRE().MatchString(name) {
		return badRequest("metadata.name", fmt.Sprintf("%q is not a valid name", name))
	}
	for _, r := range m {
		if r.metadata().GetName() == name {
			return alreadyExists(r.metadata().GetId(), fmt.Sprintf("%s with name %q already exists", kind, name))
		}
	}
	return nil
}

// newMetadata is the metadata of a resource created now from md.
func newMetadata(md *common.ResourceMetadata, id string, now time.Time) *common.ResourceMetadata {
	return &common.ResourceMetadata{
		Id: id, ParentId: md.GetParentId(), Name: md.GetName(), ResourceVersion: 1,
		CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now), Labels: copyLabels(md.GetLabels()),
	}
}

// doneOp records an operation that succeeded at once, for a request
// that had nothing to do, and returns the caller's copy.
func (s *Server) doneOp(now time.Time, description, resourceID string, request proto.Message) *common.Operation {
	op := s.newOp(now, description, resourceID, request)
	finish(op, now, nil)
	return clone(op)
}
