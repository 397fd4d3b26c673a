// Package gcp runs project hosts on Google Compute Engine through the
// official REST client (cloud.google.com/go/compute/apiv1).
//
// Each host is one VM named provider.InstanceName(hostID) with a boot disk
// that dies with it and a separate persistent data disk named
// "<instance>-data" that does not: Delete(keepDisk=true) leaves it, and a
// later Create with the same name attaches it again. VMs and disks carry
// the labels provider.LabelDeployment and provider.LabelHost, so List (an
// aggregated list filtered by label) returns only this deployment's VMs.
//
// Prices come from the Cloud Billing Catalog API (see catalog.go).
//
// Credentials are a service-account JSON key in Config.CredentialsFile,
// read through pkg/secrets; the provider never looks at environment
// variables or the metadata server for credentials.
package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// Name is the provider's registered name.
const Name = "gcp"

var capabilities = provider.Capabilities{
	Stop:             provider.StopReal, // a TERMINATED VM bills only its disks
	DiskResize:       true,              // persistent disks grow online
	CustomImage:      true,
	GPU:              true,
	Zones:            true,
	Spot:             true,
	PersistentDisk:   true,
	Bootstrap:        true,
	InjectHostKey:    true,
	CheckCredentials: true,
}

func init() {
	provider.Register(provider.Registration{
		Name:         Name,
		Description:  "Google Compute Engine: VMs with a persistent data disk, GPUs, spot, real stop/start; prices from the Cloud Billing Catalog",
		Capabilities: capabilities,
		New:          func(cfg provider.Config) (provider.Provider, error) { return New(cfg) },
	})
}

var (
	_ provider.Provider          = (*Provider)(nil)
	_ provider.DiskResizer       = (*Provider)(nil)
	_ provider.CredentialChecker = (*Provider)(nil)
	_ provider.Closer            = (*Provider)(nil)
)

// Provider talks to one GCP project.
type Provider struct {
	deployment string
	opts       options
	clientOpts []option.ClientOption // for the compute clients
	billOpts   []option.ClientOption // for the billing catalog client

	instances    *compute.InstancesClient
	disks        *compute.DisksClient
	machineTypes *compute.MachineTypesClient
	accelerators *compute.AcceleratorTypesClient

	catalogMu sync.Mutex // one catalog fetch at a time
}

// New makes a gcp provider from cfg. It reads the credentials file but
// makes no API call; CheckCredentials does one.
func New(cfg provider.Config) (*Provider, error) {
	if cfg.Deployment == "" {
		return nil, fmt.Errorf("Config.Deployment is empty: the gcp provider labels VMs with it so List returns only this deployment's")
	}
	if !matchLen(labelValueRE, cfg.Deployment, 0, 63) {
		return nil, fmt.Errorf("deployment id %q cannot be a GCP label value (lowercase letters, digits, _ and -, at most 63)", cfg.Deployment)
	}
	o, err := parseOptions(cfg.Options)
	if err != nil {
		return nil, err
	}
	auth, err := authOptions(cfg.CredentialsFile, o)
	if err != nil {
		return nil, err
	}
	p := &Provider{deployment: cfg.Deployment, opts: o}
	p.clientOpts = append([]option.ClientOption{}, auth...)
	p.billOpts = append([]option.ClientOption{}, auth...)
	if o.endpoint != "" {
		p.clientOpts = append(p.clientOpts, option.WithEndpoint(o.endpoint))
	}
	if o.billingEndpoint != "" {
		// The billing client resolves paths against its base URL, which
		// must end in a slash.
		p.billOpts = append(p.billOpts, option.WithEndpoint(o.billingEndpoint+"/"))
	}
	ctx := context.Background()
	if p.instances, err = compute.NewInstancesRESTClient(ctx, p.clientOpts...); err != nil {
		return nil, clientErr(err)
	}
	if p.disks, err = compute.NewDisksRESTClient(ctx, p.clientOpts...); err != nil {
		p.Close()
		return nil, clientErr(err)
	}
	if p.machineTypes, err = compute.NewMachineTypesRESTClient(ctx, p.clientOpts...); err != nil {
		p.Close()
		return nil, clientErr(err)
	}
	if p.accelerators, err = compute.NewAcceleratorTypesRESTClient(ctx, p.clientOpts...); err != nil {
		p.Close()
		return nil, clientErr(err)
	}
	// The SDK retries some reads on 503/504 by itself, for up to ten
	// minutes. The control plane's queue already retries classified
	// errors with backoff and Retry-After, so the SDK's layer would only
	// hide failures and stack waits; each request gets our own timeout
	// instead (see rctx). The clients share these structs with their
	// internals, so they are cleared in place.
	*p.instances.CallOptions = compute.InstancesCallOptions{}
	*p.disks.CallOptions = compute.DisksCallOptions{}
	*p.machineTypes.CallOptions = compute.MachineTypesCallOptions{}
	*p.accelerators.CallOptions = compute.AcceleratorTypesCallOptions{}
	return p, nil
}

func clientErr(err error) error {
	return provider.Errorf(errkind.Auth, Name, "connect", "cannot set up the GCP client: %v; check the credentials with: cocalc-hosts providers add %s --credentials FILE", err, Name)
}

// authOptions reads the service-account key. Without a credentials file
// the provider can only talk to an explicit endpoint (a fake or a proxy
// that authenticates for us): falling back to Google's default
// credentials would read environment variables and the metadata server,
// which this tool never does.
func authOptions(file string, o options) ([]option.ClientOption, error) {
	if file == "" {
		if o.endpoint != "" {
			return []option.ClientOption{option.WithoutAuthentication()}, nil
		}
		return nil, provider.Errorf(errkind.Auth, Name, "credentials",
			"no credentials file configured; run: cocalc-hosts providers add %s --credentials FILE (a service-account JSON key, mode 0600)", Name)
	}
	raw, err := secrets.Read(file)
	if err != nil {
		var me *secrets.ModeError
		if errors.As(err, &me) {
			return nil, provider.Errorf(errkind.Auth, Name, "credentials", "%v", err)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, provider.Errorf(errkind.Auth, Name, "credentials",
				"credentials file %s does not exist; run: cocalc-hosts providers add %s --credentials FILE", file, Name)
		}
		return nil, provider.Errorf(errkind.Auth, Name, "credentials", "%v; run: cocalc-hosts providers add %s --credentials FILE", err, Name)
	}
	var key struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	if err := json.Unmarshal(raw, &key); err != nil {
		return nil, provider.Errorf(errkind.Auth, Name, "credentials",
			"credentials file %s is not JSON (%v); want a service-account key from the GCP console; run: cocalc-hosts providers add %s --credentials FILE", file, err, Name)
	}
	if key.Type != "service_account" || key.ClientEmail == "" || key.PrivateKey == "" {
		return nil, provider.Errorf(errkind.Auth, Name, "credentials",
			"credentials file %s is not a service-account key (type %q); create a JSON key for a service account and run: cocalc-hosts providers add %s --credentials FILE", file, key.Type, Name)
	}
	// The type-specific option refuses anything but a service-account
	// key, so a crafted file cannot make the client run other credential
	// flows (external accounts execute commands and fetch URLs).
	return []option.ClientOption{option.WithAuthCredentialsJSON(option.ServiceAccount, raw)}, nil
}

func (p *Provider) Name() string                        { return Name }
func (p *Provider) Capabilities() provider.Capabilities { return capabilities }

// Close releases the clients' connections.
func (p *Provider) Close() error {
	var errs []error
	if p.instances != nil {
		errs = append(errs, p.instances.Close())
	}
	if p.disks != nil {
		errs = append(errs, p.disks.Close())
	}
	if p.machineTypes != nil {
		errs = append(errs, p.machineTypes.Close())
	}
	if p.accelerators != nil {
		errs = append(errs, p.accelerators.Close())
	}
	return errors.Join(errs...)
}

// CheckCredentials lists at most one VM in the default zone: cheap,
// read-only, and it needs the permission every other call needs.
func (p *Provider) CheckCredentials(ctx context.Context) error {
	const op = "check credentials"
	ctx, cancel := context.WithTimeout(ctx, p.opts.requestTimeout)
	defer cancel()
	it := p.instances.List(ctx, &computepb.ListInstancesRequest{Project: p.opts.project, Zone: p.opts.zone, MaxResults: ptr(uint32(1))})
	if _, err := it.Next(); err != nil && !errors.Is(err, iterator.Done) {
		return classify(op, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
