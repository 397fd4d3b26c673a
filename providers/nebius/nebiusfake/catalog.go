package nebiusfake

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	billing "github.com/nebius/gosdk/proto/nebius/billing/v1alpha1"
	capacity "github.com/nebius/gosdk/proto/nebius/capacity/v1"
	common "github.com/nebius/gosdk/proto/nebius/common/v1"
	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"
)

// Price is the fake calculator's price model for one platform, in USD
// per hour. An instance costs GPUs×GPU + vCPUs×VCPU + GiB×MemoryGiB; a
// preemptible one uses PreemptibleGPU instead of GPU.
type Price struct {
	GPU            float64
	PreemptibleGPU float64
	VCPU           float64
	MemoryGiB      float64
}

// preset is a shorthand for building platforms.
type preset struct {
	name            string
	vcpu, mem, gpus int32
}

// platform builds a Platform; gpuMemGB is the memory of one GPU in the
// vendor's GB, as Nebius reports it in gpu_memory_gigabytes.
func platform(name, human string, gpuMemGB int32, preemptible bool, presets ...preset) *compute.Platform {
	p := &compute.Platform{
		Metadata: &common.ResourceMetadata{Id: "computeplatform-e00" + name, Name: name},
		Spec:     &compute.PlatformSpec{HumanReadableName: human, GpuMemoryGigabytes: gpuMemGB},
		Status:   &compute.PlatformStatus{AllowedForPreemptibles: preemptible},
	}
	for _, ps := range presets {
		p.Spec.Presets = append(p.Spec.Presets, &compute.Preset{Name: ps.name, Resources: &compute.PresetResources{
			VcpuCount: ps.vcpu, MemoryGibibytes: ps.mem, GpuCount: ps.gpus,
		}})
	}
	return p
}

// DefaultPlatforms is a catalog shaped like Nebius's (platform and preset
// names as the public docs list them; the set is a sample, not the whole
// offer).
func DefaultPlatforms() []*compute.Platform {
	return []*compute.Platform{
		platform("cpu-d3", "Non-GPU AMD EPYC Genoa", 0, false,
			preset{"2vcpu-8gb", 2, 8, 0}, preset{"4vcpu-16gb", 4, 16, 0}, preset{"8vcpu-32gb", 8, 32, 0},
			preset{"16vcpu-64gb", 16, 64, 0}),
		platform("cpu-e2", "Non-GPU Intel Ice Lake", 0, false,
			preset{"2vcpu-8gb", 2, 8, 0}, preset{"4vcpu-16gb", 4, 16, 0}),
		platform("gpu-l40s-a", "NVIDIA L40S PCIe with Intel Ice Lake", 48, false,
			preset{"1gpu-8vcpu-32gb", 8, 32, 1}, preset{"1gpu-16vcpu-64gb", 16, 64, 1}),
		platform("gpu-h100-sxm", "NVIDIA H100 NVLink with Intel Sapphire Rapids", 80, true,
			preset{"1gpu-16vcpu-200gb", 16, 200, 1}, preset{"8gpu-128vcpu-1600gb", 128, 1600, 8}),
		platform("gpu-h200-sxm", "NVIDIA H200 NVLink with Intel Sapphire Rapids", 141, true,
			preset{"1gpu-16vcpu-200gb", 16, 200, 1}, preset{"8gpu-128vcpu-1600gb", 128, 1600, 8}),
	}
}

// DefaultPrices are illustrative prices for DefaultPlatforms (of the
// order of Nebius's public list prices; not a price list).
func DefaultPrices() map[string]Price {
	cpu := Price{VCPU: 0.012, MemoryGiB: 0.0032}
	return map[string]Price{
		"cpu-d3":       cpu,
		"cpu-e2":       {VCPU: 0.01, MemoryGiB: 0.0027},
		"gpu-l40s-a":   {GPU: 1.35, VCPU: 0.012, MemoryGiB: 0.0032},
		"gpu-h100-sxm": {GPU: 2.95, PreemptibleGPU: 1.25, VCPU: 0, MemoryGiB: 0},
		"gpu-h200-sxm": {GPU: 3.50, PreemptibleGPU: 1.45, VCPU: 0, MemoryGiB: 0},
	}
}

// DefaultDiskPrices are illustrative per-GiB-hour prices of each disk
// type (about 0.071, 0.036 and 0.057 USD per GiB-month; not a price list).
func DefaultDiskPrices() map[compute.DiskSpec_DiskType]float64 {
	return map[compute.DiskSpec_DiskType]float64{
		compute.DiskSpec_NETWORK_SSD:                0.0000972,
		compute.DiskSpec_NETWORK_HDD:                0.0000486,
		compute.DiskSpec_NETWORK_SSD_NON_REPLICATED: 0.0000777,
	}
}

// findPreset returns the platform and preset named; errors are shaped
// like the API's. Called with s.mu held.
func (s *Server) findPreset(platformName, presetName string) (*compute.Platform, *compute.Preset, error) {
	if platformName == "" {
		return nil, nil, badRequest("spec.resources.platform", "required")
	}
	for _, p := range s.platforms {
		if p.GetMetadata().GetName() != platformName {
			continue
		}
		for _, ps := range p.GetSpec().GetPresets() {
			if ps.GetName() == presetName {
				return p, ps, nil
			}
		}
		return nil, nil, badRequest("spec.resources.preset", fmt.Sprintf("preset %q is not offered on platform %s", presetName, platformName))
	}
	return nil, nil, badRequest("spec.resources.platform", fmt.Sprintf("platform %q does not exist", platformName))
}

// inProject is p as the project sees it (platforms are listed per
// project, and their metadata names it as parent).
func (s *Server) inProject(p *compute.Platform) *compute.Platform {
	c := proto.Clone(p).(*compute.Platform)
	if md := c.GetMetadata(); md != nil && md.GetParentId() == "" && !s.raw[MethodPlatformList] {
		md.ParentId = s.opts.ProjectID
	}
	return c
}

type platformService struct {
	compute.UnimplementedPlatformServiceServer
	s *Server
}

func (x *platformService) List(_ context.Context, req *compute.ListPlatformsRequest) (*compute.ListPlatformsResponse, error) {
	if err := x.s.checkParent(req.GetParentId()); err != nil {
		return nil, err
	}
	items, next, err := page(x.s.platforms, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &compute.ListPlatformsResponse{NextPageToken: next}
	for _, p := range items {
		resp.Items = append(resp.Items, x.s.inProject(p))
	}
	return resp, nil
}

func (x *platformService) GetByName(_ context.Context, req *common.GetByNameRequest) (*compute.Platform, error) {
	if err := x.s.checkParent(req.GetParentId()); err != nil {
		return nil, err
	}
	for _, p := range x.s.platforms {
		if p.GetMetadata().GetName() == req.GetName() {
			return x.s.inProject(p), nil
		}
	}
	return nil, notFound("platform", req.GetName())
}

type calculatorService struct {
	billing.UnimplementedCalculatorServiceServer
	s *Server
}

// Estimate prices one compute instance or disk spec, the way the billing
// calculator does: the hourly cost and 720 times it for a month.
func (x *calculatorService) Estimate(_ context.Context, req *billing.EstimateRequest) (*billing.EstimateResponse, error) {
	if x.s.estimate != nil {
		return x.s.estimate(req)
	}
	if d := req.GetResourceSpec().GetComputeDiskSpec(); d != nil {
		return x.s.estimateDisk(d)
	}
	create := req.GetResourceSpec().GetComputeInstanceSpec()
	if create == nil {
		return nil, status.Error(codes.InvalidArgument, "resource_spec: only compute_instance_spec and compute_disk_spec are supported by this fake")
	}
	res := create.GetSpec().GetResources()
	plat, ps, err := x.s.findPreset(res.GetPlatform(), res.GetPreset())
	if err != nil {
		return nil, err
	}
	price, ok := x.s.prices[plat.GetMetadata().GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no price for platform %s", plat.GetMetadata().GetName())
	}
	gpuPrice := price.GPU
	if create.GetSpec().GetPreemptible() != nil {
		if !plat.GetStatus().GetAllowedForPreemptibles() {
			return nil, badRequest("spec.preemptible", "platform does not allow preemptible instances")
		}
		gpuPrice = price.PreemptibleGPU
	}
	r := ps.GetResources()
	hourly := float64(r.GetGpuCount())*gpuPrice + float64(r.GetVcpuCount())*price.VCPU + float64(r.GetMemoryGibibytes())*price.MemoryGiB
	return &billing.EstimateResponse{HourlyCost: cost(hourly), MonthlyCost: cost(hourly * 720)}, nil
}

// estimateDisk prices a disk as size in GiB × its type's GiB-hour rate.
func (s *Server) estimateDisk(d *compute.CreateDiskRequest) (*billing.EstimateResponse, error) {
	spec := d.GetSpec()
	size := spec.GetSizeGibibytes()
	if size <= 0 {
		return nil, badRequest("resource_spec.compute_disk_spec.spec.size", "a positive size_gibibytes is required")
	}
	rate, ok := s.diskPrices[spec.GetType()]
	if !ok {
		return nil, badRequest("resource_spec.compute_disk_spec.spec.type", fmt.Sprintf("disk type %s is not offered", spec.GetType()))
	}
	hourly := float64(size) * rate
	return &billing.EstimateResponse{HourlyCost: cost(hourly), MonthlyCost: cost(hourly * 720)}, nil
}

func cost(v float64) *billing.ResourceGroupCost {
	return &billing.ResourceGroupCost{CostType: &billing.ResourceGroupCost_General{General: &billing.GeneralTotalCost{
		Total: &billing.CostBreakdown{Cost: strconv.FormatFloat(v, 'f', 9, 64), CostRounded: strconv.FormatFloat(v, 'f', 2, 64)},
	}}}
}

// Cost builds an EstimateResponse cost, for tests that replace the
// calculator's answer.
func Cost(v string) *billing.ResourceGroupCost {
	return &billing.ResourceGroupCost{CostType: &billing.ResourceGroupCost_General{General: &billing.GeneralTotalCost{
		Total: &billing.CostBreakdown{Cost: v, CostRounded: v},
	}}}
}

// capacityService is the capacity advisor: how many instances of each
// preset the region can start now (on demand and preemptible). A platform
// put out of capacity with SetCapacity advises 0.
type capacityService struct {
	capacity.UnimplementedResourceAdviceServiceServer
	s *Server
}

// AdvisedAvailable is what the advisor reports as available for a preset
// that has capacity.
const AdvisedAvailable = 64

func (x *capacityService) List(_ context.Context, req *capacity.ListResourceAdviceRequest) (*capacity.ListResourceAdviceResponse, error) {
	if err := x.s.checkParent(req.GetParentId()); err != nil {
		return nil, err
	}
	var all []*capacity.ResourceAdvice
	for _, pl := range x.s.platforms {
		name := pl.GetMetadata().GetName()
		for _, ps := range pl.GetSpec().GetPresets() {
			n := uint32(AdvisedAvailable)
			if x.s.noCap[name] {
				n = 0
			}
			avail := func() *capacity.ResourceAdviceStatus_Availability {
				return &capacity.ResourceAdviceStatus_Availability{
					DataState: capacity.ResourceAdviceStatus_Availability_DATA_STATE_FRESH, Available: n, Limit: AdvisedAvailable,
				}
			}
			r := ps.GetResources()
			adv := &capacity.ResourceAdvice{
				Metadata: &common.ResourceMetadata{Id: "capacityadvice-e00" + name + "-" + ps.GetName(), ParentId: x.s.opts.ProjectID},
				Spec: &capacity.ResourceAdviceSpec{Region: x.s.opts.Region, ResourceDetails: &capacity.ResourceAdviceSpec_ComputeInstance{
					ComputeInstance: &capacity.ComputeInstanceDetails{Platform: name, Preset: &capacity.ComputeInstanceDetails_Preset{
						Name: ps.GetName(), Resources: &capacity.ComputeInstanceDetails_Preset_Resources{
							VcpuCount: r.GetVcpuCount(), MemoryGibibytes: r.GetMemoryGibibytes(), GpuCount: r.GetGpuCount(),
						},
					}},
				}},
				Status: &capacity.ResourceAdviceStatus{OnDemand: avail()},
			}
			if pl.GetStatus().GetAllowedForPreemptibles() {
				adv.Status.Preemptible = avail()
			}
			all = append(all, adv)
		}
	}
	items, next, err := page(all, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &capacity.ListResourceAdviceResponse{Items: items, NextPageToken: next}, nil
}
