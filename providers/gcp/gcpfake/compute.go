package gcpfake

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// ---- operations

// newOp records an operation on target. A fault with OpError in the
// request makes it fail; the caller then leaves the resource unchanged.
func (s *Server) newOp(r *http.Request, zone, opType, targetLink string, targetID uint64) *operation {
	now := s.now()
	id := s.nextID()
	name := fmt.Sprintf("operation-%d-%x", now.UnixMilli(), id)
	o := &operation{
		pb: &computepb.Operation{
			Kind:          proto.String("compute#operation"),
			Id:            proto.Uint64(id),
			Name:          proto.String(name),
			Zone:          proto.String(s.zoneLink(zone)),
			OperationType: proto.String(opType),
			TargetLink:    proto.String(targetLink),
			TargetId:      proto.Uint64(targetID),
			User:          proto.String("fake-service-account@" + s.opts.Project + ".iam.gserviceaccount.com"),
			InsertTime:    proto.String(rfc3339(now)),
			SelfLink:      proto.String(s.link("zones", zone, "operations", name)),
		},
		start: now,
		done:  now.Add(s.opts.OperationTime),
	}
	if f, ok := r.Context().Value(opFaultKey{}).(*Fault); ok && f != nil {
		o.errCode, o.errMsg, o.httpStatus = f.OpError, f.OpMessage, f.OpHTTPStatus
		if o.errMsg == "" {
			o.errMsg = fmt.Sprintf("The zone '%s' does not have enough resources available to fulfill the request.", s.zoneLink(zone))
			if !strings.Contains(f.OpError, "RESOURCE_POOL") {
				o.errMsg = f.OpError
			}
		}
	}
	s.ops[zone+"/"+name] = o
	if id := r.URL.Query().Get("requestId"); id != "" {
		s.requestIDs[routeKey(r)+"/"+id] = zone + "/" + name
	}
	return o
}

// failed reports whether the operation carries an injected error, in
// which case the change must not happen.
func (o *operation) failed() bool { return o.errCode != "" }

func routeKey(r *http.Request) string {
	rt, _ := parseRoute(r)
	return rt.action + "/" + rt.zone
}

// repeated returns the operation an earlier request with the same
// requestId made: GCE acts on a request id once.
func (s *Server) repeated(r *http.Request) (*computepb.Operation, bool) {
	id := r.URL.Query().Get("requestId")
	if id == "" {
		return nil, false
	}
	key, ok := s.requestIDs[routeKey(r)+"/"+id]
	if !ok {
		return nil, false
	}
	return s.opView(s.ops[key]), true
}

func (s *Server) opView(o *operation) *computepb.Operation {
	v := proto.Clone(o.pb).(*computepb.Operation)
	now := s.now()
	switch {
	case !now.Before(o.done):
		v.Status = computepb.Operation_DONE.Enum()
		v.Progress = proto.Int32(100)
		v.StartTime = proto.String(rfc3339(o.start))
		v.EndTime = proto.String(rfc3339(o.done))
		if o.errCode != "" {
			v.Error = &computepb.Error{Errors: []*computepb.Errors{{Code: proto.String(o.errCode), Message: proto.String(o.errMsg)}}}
			if o.httpStatus != 0 {
				v.HttpErrorStatusCode = proto.Int32(o.httpStatus)
				v.HttpErrorMessage = proto.String(strings.ToUpper(http.StatusText(int(o.httpStatus))))
			}
		}
	case !now.Before(o.start.Add(o.done.Sub(o.start) / 2)):
		v.Status = computepb.Operation_RUNNING.Enum()
		v.Progress = proto.Int32(50)
		v.StartTime = proto.String(rfc3339(o.start))
	default:
		v.Status = computepb.Operation_PENDING.Enum()
		v.Progress = proto.Int32(0)
	}
	return v
}

func (s *Server) getOperation(rt route) (proto.Message, *httpError) {
	o, ok := s.ops[rt.zone+"/"+rt.name]
	if !ok {
		return nil, errf(http.StatusNotFound, "notFound", "The resource '%s' was not found", s.link("zones", rt.zone, "operations", rt.name))
	}
	return s.opView(o), nil
}

// ---- instances

func (s *Server) instanceKey(zone, name string) string { return zone + "/" + name }

func (s *Server) findInstance(rt route) (*instance, *httpError) {
	in, ok := s.instances[s.instanceKey(rt.zone, rt.name)]
	if !ok {
		return nil, errf(http.StatusNotFound, "notFound", "The resource '%s' was not found", s.link("zones", rt.zone, "instances", rt.name))
	}
	return in, nil
}

func (s *Server) insertInstance(r *http.Request, rt route, body []byte) (proto.Message, *httpError) {
	if op, ok := s.repeated(r); ok {
		return op, nil
	}
	req := &computepb.Instance{}
	if err := unmarshal.Unmarshal(body, req); err != nil {
		return nil, errf(http.StatusBadRequest, "invalid", "Invalid JSON payload received. %v", err)
	}
	zone, name := rt.zone, req.GetName()
	if !nameRE.MatchString(name) {
		return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.name': '%s'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", name)
	}
	if _, dup := s.instances[s.instanceKey(zone, name)]; dup {
		return nil, errf(http.StatusConflict, "alreadyExists", "The resource '%s' already exists", s.link("zones", zone, "instances", name))
	}
	mtZone, mtName, ok := resourceIn(req.GetMachineType(), "machineTypes")
	if !ok || mtZone != zone {
		return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.machineType': '%s'. Machine type must be in zone %s.", req.GetMachineType(), zone)
	}
	mt := s.machineType(zone, mtName)
	if mt == nil {
		return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.machineType': '%s'. Machine type with name '%s' does not exist in zone '%s'.", req.GetMachineType(), mtName, zone)
	}
	if herr := validLabels(req.GetLabels()); herr != nil {
		return nil, herr
	}
	sched := req.GetScheduling()
	gpus := len(mt.GetAccelerators()) > 0 || len(req.GetGuestAccelerators()) > 0
	if gpus && sched.GetOnHostMaintenance() != "TERMINATE" {
		return nil, errf(http.StatusBadRequest, "invalid", "Instances with guest accelerators do not support live migration.")
	}
	if sched.GetProvisioningModel() == "SPOT" {
		if sched.GetOnHostMaintenance() != "TERMINATE" || sched.GetAutomaticRestart() {
			return nil, errf(http.StatusBadRequest, "invalid", "Scheduling must have preemptible be false when OnHostMaintenance isn't TERMINATE; Spot VMs cannot automatically restart.")
		}
		if a := sched.GetInstanceTerminationAction(); a != "STOP" && a != "DELETE" {
			return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.scheduling.instanceTerminationAction': '%s'.", a)
		}
	}
	if len(mt.GetAccelerators()) > 0 && len(req.GetGuestAccelerators()) > 0 {
		return nil, errf(http.StatusBadRequest, "invalid", "Machine type %s has accelerators attached already; guestAccelerators must be empty.", mtName)
	}
	var accels []*computepb.AcceleratorConfig
	for _, a := range req.GetGuestAccelerators() {
		az, an, ok := resourceIn(a.GetAcceleratorType(), "acceleratorTypes")
		at := s.acceleratorType(az, an)
		if !ok || az != zone || at == nil {
			return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.guestAccelerators[0].acceleratorType': '%s'. Accelerator type does not exist in zone %s.", a.GetAcceleratorType(), zone)
		}
		if a.GetAcceleratorCount() < 1 || a.GetAcceleratorCount() > at.GetMaximumCardsPerInstance() {
			return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.guestAccelerators[0].acceleratorCount': %d.", a.GetAcceleratorCount())
		}
		accels = append(accels, &computepb.AcceleratorConfig{
			AcceleratorType: proto.String(s.link("zones", zone, "acceleratorTypes", an)), AcceleratorCount: proto.Int32(a.GetAcceleratorCount()),
		})
	}

	// Disks: exactly one boot disk made from an image; the others must
	// exist in this zone and be free.
	var boot *computepb.AttachedDisk
	var attach []*disk
	for _, d := range req.GetDisks() {
		if d.GetBoot() {
			if boot != nil {
				return nil, errf(http.StatusBadRequest, "invalid", "Only one boot disk is allowed.")
			}
			boot = d
			continue
		}
		dz, dn, ok := resourceIn(d.GetSource(), "disks")
		if !ok || dz != zone {
			return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.disks[].source': '%s'. Disks must be in the instance's zone %s.", d.GetSource(), zone)
		}
		dd, exists := s.disks[zone+"/"+dn]
		if !exists || dd.pb.GetStatus() != "READY" {
			return nil, errf(http.StatusBadRequest, "resourceNotReady", "The resource '%s' is not ready", s.link("zones", zone, "disks", dn))
		}
		if len(dd.pb.GetUsers()) > 0 {
			return nil, errf(http.StatusBadRequest, "resourceInUseByAnotherResource", "The disk resource '%s' is already being used by '%s'", s.link("zones", zone, "disks", dn), dd.pb.GetUsers()[0])
		}
		attach = append(attach, dd)
	}
	if boot == nil || boot.GetInitializeParams().GetSourceImage() == "" {
		return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.disks': a boot disk with initializeParams.sourceImage is required.")
	}
	bootName := boot.GetInitializeParams().GetDiskName()
	if bootName == "" {
		bootName = name
	}
	if _, taken := s.disks[zone+"/"+bootName]; taken {
		return nil, errf(http.StatusConflict, "alreadyExists", "The resource '%s' already exists", s.link("zones", zone, "disks", bootName))
	}
	if len(req.GetNetworkInterfaces()) == 0 {
		return nil, errf(http.StatusBadRequest, "invalid", "At least one network interface is required.")
	}

	id := s.nextID()
	link := s.link("zones", zone, "instances", name)
	op := s.newOp(r, zone, "insert", link, id)
	if op.failed() {
		return s.opView(op), nil
	}

	now := s.now()
	bootSize := boot.GetInitializeParams().GetDiskSizeGb()
	if bootSize == 0 {
		bootSize = 10
	}
	bootDisk := &disk{pb: &computepb.Disk{
		Kind: proto.String("compute#disk"), Id: proto.Uint64(s.nextID()), Name: proto.String(bootName),
		SizeGb: proto.Int64(bootSize), Zone: proto.String(s.zoneLink(zone)), Status: proto.String("READY"),
		SourceImage: proto.String(boot.GetInitializeParams().GetSourceImage()),
		Type:        proto.String(s.diskTypeLink(zone, boot.GetInitializeParams().GetDiskType())),
		Labels:      boot.GetInitializeParams().GetLabels(), Users: []string{link},
		SelfLink: proto.String(s.link("zones", zone, "disks", bootName)), CreationTimestamp: proto.String(rfc3339(now)),
	}}
	s.disks[zone+"/"+bootName] = bootDisk
	disks := []*computepb.AttachedDisk{{
		Kind: proto.String("compute#attachedDisk"), Type: proto.String("PERSISTENT"), Mode: proto.String("READ_WRITE"),
		Source: bootDisk.pb.SelfLink, DeviceName: proto.String(orDefault(boot.GetDeviceName(), "persistent-disk-0")),
		Index: proto.Int32(0), Boot: proto.Bool(true), AutoDelete: proto.Bool(boot.GetAutoDelete()), Interface: proto.String("SCSI"),
	}}
	for i, dd := range attach {
		dd.pb.Users = append(dd.pb.Users, link)
		dd.pb.LastAttachTimestamp = proto.String(rfc3339(now))
		src := req.GetDisks()[0]
		for _, d := range req.GetDisks() {
			if !d.GetBoot() && strings.HasSuffix(d.GetSource(), "/"+dd.pb.GetName()) {
				src = d
			}
		}
		disks = append(disks, &computepb.AttachedDisk{
			Kind: proto.String("compute#attachedDisk"), Type: proto.String("PERSISTENT"), Mode: proto.String(orDefault(src.GetMode(), "READ_WRITE")),
			Source: dd.pb.SelfLink, DeviceName: proto.String(orDefault(src.GetDeviceName(), dd.pb.GetName())),
			Index: proto.Int32(int32(i + 1)), Boot: proto.Bool(false), AutoDelete: proto.Bool(src.GetAutoDelete()), Interface: proto.String("SCSI"),
		})
	}
	nics := make([]*computepb.NetworkInterface, 0, len(req.GetNetworkInterfaces()))
	for i, n := range req.GetNetworkInterfaces() {
		nic := proto.Clone(n).(*computepb.NetworkInterface)
		nic.Kind = proto.String("compute#networkInterface")
		nic.Name = proto.String(fmt.Sprintf("nic%d", i))
		nic.NetworkIP = proto.String(fmt.Sprintf("10.128.%d.%d", (id/250)%250, id%250+2))
		for _, ac := range nic.AccessConfigs {
			ac.Kind = proto.String("compute#accessConfig")
			ac.NatIP = nil
		}
		nics = append(nics, nic)
	}
	meta := proto.Clone(req.GetMetadata()).(*computepb.Metadata)
	if meta == nil {
		meta = &computepb.Metadata{}
	}
	meta.Kind = proto.String("compute#metadata")
	meta.Fingerprint = proto.String(strconv.FormatUint(id, 36))
	sch := proto.Clone(sched).(*computepb.Scheduling)
	if sch == nil {
		sch = &computepb.Scheduling{}
	}
	if sch.OnHostMaintenance == nil {
		sch.OnHostMaintenance = proto.String("MIGRATE")
	}
	if sch.ProvisioningModel == nil {
		sch.ProvisioningModel = proto.String("STANDARD")
	}
	in := &instance{pb: &computepb.Instance{
		Kind: proto.String("compute#instance"), Id: proto.Uint64(id), Name: proto.String(name),
		Zone: proto.String(s.zoneLink(zone)), MachineType: proto.String(s.link("zones", zone, "machineTypes", mtName)),
		Labels: req.GetLabels(), LabelFingerprint: proto.String(strconv.FormatUint(id, 36)),
		Disks: disks, NetworkInterfaces: nics, Metadata: meta, Scheduling: sch, GuestAccelerators: accels,
		CreationTimestamp: proto.String(rfc3339(now)), SelfLink: proto.String(link),
		CpuPlatform: proto.String("Intel Cascade Lake"), Fingerprint: proto.String(strconv.FormatUint(id, 36)),
	}}
	s.instances[s.instanceKey(zone, name)] = in
	s.creations[name]++
	s.boot(in)
	return s.opView(op), nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (s *Server) diskTypeLink(zone, t string) string {
	if t == "" {
		t = "pd-standard"
	}
	return s.link("zones", zone, "diskTypes", t[strings.LastIndexByte(t, '/')+1:])
}

// boot moves a VM PROVISIONING → STAGING → RUNNING.
func (s *Server) boot(in *instance) {
	in.gen++
	gen := in.gen
	s.setStatus(in, "PROVISIONING")
	s.after(s.opts.ProvisioningTime, func() {
		if in.gen == gen {
			s.setStatus(in, "STAGING")
		}
	})
	s.after(s.opts.ProvisioningTime+s.opts.StagingTime, func() {
		if in.gen == gen {
			s.setStatus(in, "RUNNING")
		}
	})
}

// setStatus changes a VM's status with its side effects: an external
// address while it runs, none while it is stopped.
func (s *Server) setStatus(in *instance, status string) {
	in.pb.Status = proto.String(status)
	now := rfc3339(s.now())
	zone := in.pb.GetZone()[strings.LastIndexByte(in.pb.GetZone(), '/')+1:]
	switch status {
	case "RUNNING":
		in.pb.LastStartTimestamp = proto.String(now)
		ip := fmt.Sprintf("203.0.113.%d", in.pb.GetId()%250+1)
		if s.opts.PublicIP != nil {
			ip = s.opts.PublicIP(zone, in.pb.GetName())
		}
		for _, nic := range in.pb.NetworkInterfaces {
			for _, ac := range nic.AccessConfigs {
				ac.NatIP = proto.String(ip)
			}
		}
	case "TERMINATED", "SUSPENDED":
		in.pb.LastStopTimestamp = proto.String(now)
		for _, nic := range in.pb.NetworkInterfaces {
			for _, ac := range nic.AccessConfigs {
				ac.NatIP = nil
			}
		}
	}
}

// instanceView is the VM as the API returns it: attached disks report
// their disk's current size.
func (s *Server) instanceView(in *instance) *computepb.Instance {
	v := proto.Clone(in.pb).(*computepb.Instance)
	zone := v.GetZone()[strings.LastIndexByte(v.GetZone(), '/')+1:]
	for _, ad := range v.Disks {
		name := ad.GetSource()[strings.LastIndexByte(ad.GetSource(), '/')+1:]
		if d, ok := s.disks[zone+"/"+name]; ok {
			ad.DiskSizeGb = proto.Int64(d.pb.GetSizeGb())
		}
	}
	return v
}

func (s *Server) getInstance(rt route) (proto.Message, *httpError) {
	in, herr := s.findInstance(rt)
	if herr != nil {
		return nil, herr
	}
	return s.instanceView(in), nil
}

func (s *Server) lifecycle(r *http.Request, rt route) (proto.Message, *httpError) {
	if op, ok := s.repeated(r); ok {
		return op, nil
	}
	in, herr := s.findInstance(rt)
	if herr != nil {
		return nil, herr
	}
	status := in.pb.GetStatus()
	notReady := errf(http.StatusBadRequest, "resourceNotReady", "The resource '%s' is not ready", in.pb.GetSelfLink())
	var change func()
	switch rt.verb {
	case "start":
		switch status {
		case "TERMINATED":
			change = func() { s.boot(in) }
		case "STOPPING", "SUSPENDING", "SUSPENDED":
			return nil, notReady
		}
	case "resume":
		switch status {
		case "SUSPENDED":
			change = func() { s.boot(in) }
		case "RUNNING", "PROVISIONING", "STAGING":
		default:
			return nil, notReady
		}
	case "stop", "suspend":
		next, final := "STOPPING", "TERMINATED"
		if rt.verb == "suspend" {
			next, final = "SUSPENDING", "SUSPENDED"
		}
		switch status {
		case "RUNNING", "PROVISIONING", "STAGING", "REPAIRING":
			change = func() {
				in.gen++
				gen := in.gen
				s.setStatus(in, next)
				s.after(s.opts.StoppingTime, func() {
					if in.gen == gen {
						s.setStatus(in, final)
					}
				})
			}
		case "STOPPING", "TERMINATED":
			if rt.verb == "suspend" {
				return nil, notReady
			}
		}
	}
	op := s.newOp(r, rt.zone, rt.verb, in.pb.GetSelfLink(), in.pb.GetId())
	if change != nil && !op.failed() {
		change()
	}
	return s.opView(op), nil
}

func (s *Server) deleteInstance(r *http.Request, rt route) (proto.Message, *httpError) {
	if op, ok := s.repeated(r); ok {
		return op, nil
	}
	in, herr := s.findInstance(rt)
	if herr != nil {
		return nil, herr
	}
	op := s.newOp(r, rt.zone, "delete", in.pb.GetSelfLink(), in.pb.GetId())
	if op.failed() {
		return s.opView(op), nil
	}
	in.gen++
	gen := in.gen
	s.setStatus(in, "STOPPING")
	key := s.instanceKey(rt.zone, rt.name)
	s.after(op.done.Sub(s.now()), func() {
		if in.gen != gen {
			return
		}
		delete(s.instances, key)
		for _, ad := range in.pb.GetDisks() {
			dkey := rt.zone + "/" + ad.GetSource()[strings.LastIndexByte(ad.GetSource(), '/')+1:]
			d, ok := s.disks[dkey]
			if !ok {
				continue
			}
			if ad.GetAutoDelete() {
				delete(s.disks, dkey)
				continue
			}
			users := d.pb.Users[:0]
			for _, u := range d.pb.Users {
				if u != in.pb.GetSelfLink() {
					users = append(users, u)
				}
			}
			d.pb.Users = users
			d.pb.LastDetachTimestamp = proto.String(rfc3339(s.now()))
		}
	})
	return s.opView(op), nil
}

func (s *Server) listInstances(r *http.Request, rt route) (proto.Message, *httpError) {
	f, herr := parseFilter(r.URL.Query().Get("filter"))
	if herr != nil {
		return nil, herr
	}
	var items []*computepb.Instance
	for _, in := range sortedByKey(s.instances) {
		if in.zone == rt.zone && f.match(in.v.pb.GetName(), in.v.pb.GetStatus(), in.v.pb.GetLabels()) {
			items = append(items, s.instanceView(in.v))
		}
	}
	start, end, next, herr := s.page(r, len(items))
	if herr != nil {
		return nil, herr
	}
	return &computepb.InstanceList{
		Kind: proto.String("compute#instanceList"), Id: proto.String("projects/" + s.opts.Project + "/zones/" + rt.zone + "/instances"),
		Items: items[start:end], NextPageToken: optional(next), SelfLink: proto.String(s.link("zones", rt.zone, "instances")),
	}, nil
}

func (s *Server) aggregatedInstances(r *http.Request) (proto.Message, *httpError) {
	f, herr := parseFilter(r.URL.Query().Get("filter"))
	if herr != nil {
		return nil, herr
	}
	var all []zoned[*computepb.Instance]
	for _, in := range sortedByKey(s.instances) {
		if f.match(in.v.pb.GetName(), in.v.pb.GetStatus(), in.v.pb.GetLabels()) {
			all = append(all, zoned[*computepb.Instance]{in.zone, s.instanceView(in.v)})
		}
	}
	start, end, next, herr := s.page(r, len(all))
	if herr != nil {
		return nil, herr
	}
	out := &computepb.InstanceAggregatedList{
		Kind: proto.String("compute#instanceAggregatedList"), Id: proto.String("projects/" + s.opts.Project + "/aggregated/instances"),
		NextPageToken: optional(next), SelfLink: proto.String(s.link("aggregated", "instances")),
		Items: byZone(all[start:end], func() *computepb.InstancesScopedList { return &computepb.InstancesScopedList{} },
			func(l *computepb.InstancesScopedList, v *computepb.Instance) { l.Instances = append(l.Instances, v) }),
	}
	for _, z := range s.Zones() {
		if out.Items["zones/"+z] == nil {
			out.Items["zones/"+z] = &computepb.InstancesScopedList{Warning: noResults(z)}
		}
	}
	return out, nil
}

type zoned[T any] struct {
	zone string
	v    T
}

// sortedByKey returns the values of m, keyed "zone/name", in key order
// with their zone.
func sortedByKey[T any](m map[string]T) []zoned[T] {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]zoned[T], 0, len(keys))
	for _, k := range keys {
		zone, _, _ := strings.Cut(k, "/")
		out = append(out, zoned[T]{zone, m[k]})
	}
	return out
}

// byZone groups one page of an aggregated list under "zones/<zone>"
// keys; scoped makes a zone's empty list and add appends to it.
func byZone[T, L any](items []zoned[T], scoped func() L, add func(L, T)) map[string]L {
	out := map[string]L{}
	for _, it := range items {
		key := "zones/" + it.zone
		l, ok := out[key]
		if !ok {
			l = scoped()
			out[key] = l
		}
		add(l, it.v)
	}
	return out
}

func noResults(zone string) *computepb.Warning {
	return &computepb.Warning{
		Code:    proto.String("NO_RESULTS_ON_PAGE"),
		Message: proto.String("There are no results for scope 'zones/" + zone + "' on this page."),
		Data:    []*computepb.Data{{Key: proto.String("scope"), Value: proto.String("zones/" + zone)}},
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// page applies maxResults and pageToken (an offset) to n items.
func (s *Server) page(r *http.Request, n int) (start, end int, next string, herr *httpError) {
	q := r.URL.Query()
	size := s.opts.PageSize
	if v := q.Get("maxResults"); v != "" {
		m, err := strconv.Atoi(v)
		if err != nil || m < 0 || m > 500 {
			return 0, 0, "", errf(http.StatusBadRequest, "invalid", "Invalid value for field 'maxResults': '%s'. Must be in the range [0, 500].", v)
		}
		if m > 0 && m < size {
			size = m
		}
	}
	if tok := q.Get("pageToken"); tok != "" {
		off, err := strconv.Atoi(strings.TrimPrefix(tok, "page-"))
		if err != nil || off < 0 || off > n {
			return 0, 0, "", errf(http.StatusBadRequest, "invalid", "Invalid value for field 'pageToken': '%s'.", tok)
		}
		start = off
	}
	end = min(start+size, n)
	if end < n {
		next = "page-" + strconv.Itoa(end)
	}
	return start, end, next, nil
}

// ---- filters

// filter is the subset of the list filter language the provider uses:
// terms FIELD = VALUE or FIELD != VALUE on name, status and labels.KEY,
// optionally parenthesized and joined by AND or spaces.
type filter []filterTerm

type filterTerm struct {
	field string
	neg   bool
	value string
}

var filterTermRE = regexp.MustCompile(`^\s*(?:AND\s+)?\(?\s*([a-zA-Z][a-zA-Z0-9_.-]*)\s*(=|!=)\s*(?:"([^"]*)"|([^\s()"]+))\s*\)?`)

func parseFilter(expr string) (filter, *httpError) {
	var f filter
	rest := strings.TrimSpace(expr)
	for rest != "" {
		m := filterTermRE.FindStringSubmatchIndex(rest)
		if m == nil {
			return nil, errf(http.StatusBadRequest, "invalid", "Invalid list filter expression: %q", expr)
		}
		field := rest[m[2]:m[3]]
		value := ""
		if m[6] >= 0 {
			value = rest[m[6]:m[7]]
		} else {
			value = rest[m[8]:m[9]]
		}
		if field != "name" && field != "status" && !strings.HasPrefix(field, "labels.") {
			return nil, errf(http.StatusBadRequest, "invalid", "Invalid list filter expression: the fake filters only on name, status and labels.KEY, not %q", field)
		}
		f = append(f, filterTerm{field: field, neg: rest[m[4]:m[5]] == "!=", value: value})
		rest = strings.TrimSpace(rest[m[1]:])
	}
	return f, nil
}

func (f filter) match(name, status string, labels map[string]string) bool {
	for _, t := range f {
		var got string
		var has bool
		switch {
		case t.field == "name":
			got, has = name, true
		case t.field == "status":
			got, has = status, true
		default:
			got, has = labels[strings.TrimPrefix(t.field, "labels.")]
		}
		if (has && got == t.value) == t.neg {
			return false
		}
	}
	return true
}

var (
	labelKeyRE   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[a-z0-9_-]{0,63}$`)
)

func validLabels(labels map[string]string) *httpError {
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) || !labelValueRE.MatchString(v) {
			return errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.labels': label %s=%s is not valid.", k, v)
		}
	}
	return nil
}

// ---- disks

func (s *Server) insertDisk(r *http.Request, rt route, body []byte) (proto.Message, *httpError) {
	if op, ok := s.repeated(r); ok {
		return op, nil
	}
	req := &computepb.Disk{}
	if err := unmarshal.Unmarshal(body, req); err != nil {
		return nil, errf(http.StatusBadRequest, "invalid", "Invalid JSON payload received. %v", err)
	}
	name := req.GetName()
	if !nameRE.MatchString(name) {
		return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.name': '%s'.", name)
	}
	if _, dup := s.disks[rt.zone+"/"+name]; dup {
		return nil, errf(http.StatusConflict, "alreadyExists", "The resource '%s' already exists", s.link("zones", rt.zone, "disks", name))
	}
	if req.GetSizeGb() < 10 || req.GetSizeGb() > 65536 {
		return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.sizeGb': '%d'. Disk size must be between 10 and 65536 GB.", req.GetSizeGb())
	}
	if t := req.GetType(); t != "" {
		if tz, _, ok := resourceIn(t, "diskTypes"); !ok || tz != rt.zone {
			return nil, errf(http.StatusBadRequest, "invalid", "Invalid value for field 'resource.type': '%s'.", t)
		}
	}
	if herr := validLabels(req.GetLabels()); herr != nil {
		return nil, herr
	}
	id := s.nextID()
	link := s.link("zones", rt.zone, "disks", name)
	op := s.newOp(r, rt.zone, "insert", link, id)
	if op.failed() {
		return s.opView(op), nil
	}
	d := &disk{pb: &computepb.Disk{
		Kind: proto.String("compute#disk"), Id: proto.Uint64(id), Name: proto.String(name), SizeGb: proto.Int64(req.GetSizeGb()),
		Zone: proto.String(s.zoneLink(rt.zone)), Status: proto.String("CREATING"), Type: proto.String(s.diskTypeLink(rt.zone, req.GetType())),
		Labels: req.GetLabels(), SelfLink: proto.String(link), CreationTimestamp: proto.String(rfc3339(s.now())),
		PhysicalBlockSizeBytes: proto.Int64(4096),
	}}
	s.disks[rt.zone+"/"+name] = d
	s.after(op.done.Sub(s.now()), func() {
		if d.pb.GetStatus() == "CREATING" {
			d.pb.Status = proto.String("READY")
		}
	})
	return s.opView(op), nil
}

func (s *Server) findDisk(rt route) (*disk, *httpError) {
	d, ok := s.disks[rt.zone+"/"+rt.name]
	if !ok {
		return nil, errf(http.StatusNotFound, "notFound", "The resource '%s' was not found", s.link("zones", rt.zone, "disks", rt.name))
	}
	return d, nil
}

func (s *Server) getDisk(rt route) (proto.Message, *httpError) {
	d, herr := s.findDisk(rt)
	if herr != nil {
		return nil, herr
	}
	return proto.Clone(d.pb), nil
}

func (s *Server) listDisks(r *http.Request, rt route) (proto.Message, *httpError) {
	f, herr := parseFilter(r.URL.Query().Get("filter"))
	if herr != nil {
		return nil, herr
	}
	var items []*computepb.Disk
	for _, d := range sortedByKey(s.disks) {
		if d.zone == rt.zone && f.match(d.v.pb.GetName(), d.v.pb.GetStatus(), d.v.pb.GetLabels()) {
			items = append(items, proto.Clone(d.v.pb).(*computepb.Disk))
		}
	}
	start, end, next, herr := s.page(r, len(items))
	if herr != nil {
		return nil, herr
	}
	return &computepb.DiskList{Kind: proto.String("compute#diskList"), Items: items[start:end], NextPageToken: optional(next)}, nil
}

func (s *Server) aggregatedDisks(r *http.Request) (proto.Message, *httpError) {
	f, herr := parseFilter(r.URL.Query().Get("filter"))
	if herr != nil {
		return nil, herr
	}
	var all []zoned[*computepb.Disk]
	for _, d := range sortedByKey(s.disks) {
		if f.match(d.v.pb.GetName(), d.v.pb.GetStatus(), d.v.pb.GetLabels()) {
			all = append(all, zoned[*computepb.Disk]{d.zone, proto.Clone(d.v.pb).(*computepb.Disk)})
		}
	}
	start, end, next, herr := s.page(r, len(all))
	if herr != nil {
		return nil, herr
	}
	out := &computepb.DiskAggregatedList{
		Kind: proto.String("compute#diskAggregatedList"), NextPageToken: optional(next),
		Items: byZone(all[start:end], func() *computepb.DisksScopedList { return &computepb.DisksScopedList{} },
			func(l *computepb.DisksScopedList, v *computepb.Disk) { l.Disks = append(l.Disks, v) }),
	}
	for _, z := range s.Zones() {
		if out.Items["zones/"+z] == nil {
			out.Items["zones/"+z] = &computepb.DisksScopedList{Warning: noResults(z)}
		}
	}
	return out, nil
}

func (s *Server) deleteDisk(r *http.Request, rt route) (proto.Message, *httpError) {
	if op, ok := s.repeated(r); ok {
		return op, nil
	}
	d, herr := s.findDisk(rt)
	if herr != nil {
		return nil, herr
	}
	if len(d.pb.GetUsers()) > 0 {
		return nil, errf(http.StatusBadRequest, "resourceInUseByAnotherResource",
			"The disk resource '%s' is already being used by '%s'", d.pb.GetSelfLink(), d.pb.GetUsers()[0])
	}
	op := s.newOp(r, rt.zone, "delete", d.pb.GetSelfLink(), d.pb.GetId())
	if op.failed() {
		return s.opView(op), nil
	}
	d.pb.Status = proto.String("DELETING")
	key := rt.zone + "/" + rt.name
	s.after(op.done.Sub(s.now()), func() {
		if s.disks[key] == d {
			delete(s.disks, key)
		}
	})
	return s.opView(op), nil
}

func (s *Server) resizeDisk(r *http.Request, rt route, body []byte) (proto.Message, *httpError) {
	if op, ok := s.repeated(r); ok {
		return op, nil
	}
	d, herr := s.findDisk(rt)
	if herr != nil {
		return nil, herr
	}
	req := &computepb.DisksResizeRequest{}
	if err := unmarshal.Unmarshal(body, req); err != nil {
		return nil, errf(http.StatusBadRequest, "invalid", "Invalid JSON payload received. %v", err)
	}
	if req.GetSizeGb() <= d.pb.GetSizeGb() {
		return nil, errf(http.StatusBadRequest, "invalid",
			"Invalid value for field 'sizeGb': '%d'. Requested disk size cannot be smaller than or equal to the current size %d GB.", req.GetSizeGb(), d.pb.GetSizeGb())
	}
	if d.pb.GetStatus() != "READY" {
		return nil, errf(http.StatusBadRequest, "resourceNotReady", "The resource '%s' is not ready", d.pb.GetSelfLink())
	}
	op := s.newOp(r, rt.zone, "resize", d.pb.GetSelfLink(), d.pb.GetId())
	if !op.failed() {
		d.pb.SizeGb = proto.Int64(req.GetSizeGb())
	}
	return s.opView(op), nil
}

// ---- machine and accelerator types

func (s *Server) machineType(zone, name string) *computepb.MachineType {
	for _, mt := range s.opts.MachineTypes[zone] {
		if mt.GetName() == name {
			return mt
		}
	}
	return nil
}

func (s *Server) acceleratorType(zone, name string) *computepb.AcceleratorType {
	for _, at := range s.opts.AcceleratorTypes[zone] {
		if at.GetName() == name {
			return at
		}
	}
	return nil
}

func (s *Server) types(r *http.Request, rt route) (proto.Message, *httpError) {
	switch rt.action {
	case "machineTypes.get":
		mt := s.machineType(rt.zone, rt.name)
		if mt == nil {
			return nil, errf(http.StatusNotFound, "notFound", "The resource '%s' was not found", s.link("zones", rt.zone, "machineTypes", rt.name))
		}
		return s.mtView(rt.zone, mt), nil
	case "acceleratorTypes.get":
		at := s.acceleratorType(rt.zone, rt.name)
		if at == nil {
			return nil, errf(http.StatusNotFound, "notFound", "The resource '%s' was not found", s.link("zones", rt.zone, "acceleratorTypes", rt.name))
		}
		return s.atView(rt.zone, at), nil
	case "machineTypes.list":
		items := make([]*computepb.MachineType, 0)
		for _, mt := range s.opts.MachineTypes[rt.zone] {
			items = append(items, s.mtView(rt.zone, mt))
		}
		start, end, next, herr := s.page(r, len(items))
		if herr != nil {
			return nil, herr
		}
		return &computepb.MachineTypeList{Kind: proto.String("compute#machineTypeList"), Items: items[start:end], NextPageToken: optional(next)}, nil
	case "acceleratorTypes.list":
		items := make([]*computepb.AcceleratorType, 0)
		for _, at := range s.opts.AcceleratorTypes[rt.zone] {
			items = append(items, s.atView(rt.zone, at))
		}
		start, end, next, herr := s.page(r, len(items))
		if herr != nil {
			return nil, herr
		}
		return &computepb.AcceleratorTypeList{Kind: proto.String("compute#acceleratorTypeList"), Items: items[start:end], NextPageToken: optional(next)}, nil
	case "machineTypes.aggregatedList":
		var all []zoned[*computepb.MachineType]
		for _, z := range s.Zones() {
			for _, mt := range s.opts.MachineTypes[z] {
				all = append(all, zoned[*computepb.MachineType]{z, s.mtView(z, mt)})
			}
		}
		start, end, next, herr := s.page(r, len(all))
		if herr != nil {
			return nil, herr
		}
		return &computepb.MachineTypeAggregatedList{Kind: proto.String("compute#machineTypeAggregatedList"), NextPageToken: optional(next),
			Items: byZone(all[start:end], func() *computepb.MachineTypesScopedList { return &computepb.MachineTypesScopedList{} },
				func(l *computepb.MachineTypesScopedList, v *computepb.MachineType) {
					l.MachineTypes = append(l.MachineTypes, v)
				}),
		}, nil
	case "acceleratorTypes.aggregatedList":
		var all []zoned[*computepb.AcceleratorType]
		for _, z := range s.Zones() {
			for _, at := range s.opts.AcceleratorTypes[z] {
				all = append(all, zoned[*computepb.AcceleratorType]{z, s.atView(z, at)})
			}
		}
		start, end, next, herr := s.page(r, len(all))
		if herr != nil {
			return nil, herr
		}
		return &computepb.AcceleratorTypeAggregatedList{Kind: proto.String("compute#acceleratorTypeAggregatedList"), NextPageToken: optional(next),
			Items: byZone(all[start:end], func() *computepb.AcceleratorTypesScopedList { return &computepb.AcceleratorTypesScopedList{} },
				func(l *computepb.AcceleratorTypesScopedList, v *computepb.AcceleratorType) {
					l.AcceleratorTypes = append(l.AcceleratorTypes, v)
				}),
		}, nil
	}
	return nil, errf(http.StatusNotFound, "notFound", "no such method %s", rt.action)
}

func (s *Server) mtView(zone string, mt *computepb.MachineType) *computepb.MachineType {
	v := proto.Clone(mt).(*computepb.MachineType)
	v.Zone = proto.String(zone)
	v.SelfLink = proto.String(s.link("zones", zone, "machineTypes", mt.GetName()))
	if v.Id == nil {
		v.Id = proto.Uint64(uint64(len(mt.GetName()))*1000003 + uint64(mt.GetGuestCpus()))
	}
	return v
}

func (s *Server) atView(zone string, at *computepb.AcceleratorType) *computepb.AcceleratorType {
	v := proto.Clone(at).(*computepb.AcceleratorType)
	v.Zone = proto.String(s.zoneLink(zone))
	v.SelfLink = proto.String(s.link("zones", zone, "acceleratorTypes", at.GetName()))
	return v
}
