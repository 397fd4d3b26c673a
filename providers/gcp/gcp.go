// Package gcp runs project hosts on Google Compute Engine through its
// REST API (JSON over net/http, see api.go). The official Go client is
// not used: its protobuf types took ≈17 ms and 2.4 MB to initialise in
// every command, GCP or not.
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
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/restclient"
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
	_ provider.DiskSizer         = (*Provider)(nil)
	_ provider.CredentialChecker = (*Provider)(nil)
	_ provider.Closer            = (*Provider)(nil)
)

// Provider talks to one GCP project.
type Provider struct {
	deployment string
	opts       options
	compute    *restclient.Client // the Compute Engine API
	billing    *restclient.Client // the Cloud Billing Catalog API

	catalogMu sync.Mutex // one catalog fetch at a time
}

// New makes a gcp provider from cfg. It reads the credentials file but
// makes no API call; CheckCredentials does one.
func New(cfg provider.Config) (*Provider, error) {
	if cfg.Deployment == "" {
		return nil, fmt.Errorf("Config.Deployment is empty: the gcp provider labels VMs with it so List returns only this deployment's")
	}
	if !matchLen(labelValueRE(), cfg.Deployment, 0, 63) {
		return nil, fmt.Errorf("deployment id %q cannot be a GCP label value (lowercase letters, digits, _ and -, at most 63)", cfg.Deployment)
	}
	o, err := parseOptions(cfg.Options)
	if err != nil {
		return nil, err
	}
	token, err := tokenSource(cfg.CredentialsFile, o)
	if err != nil {
		return nil, err
	}
	computeBase, billingBase := computeRoot, billingRoot
	if o.endpoint != "" {
		computeBase = o.endpoint
	}
	if o.billingEndpoint != "" {
		billingBase = o.billingEndpoint
	}
	return &Provider{
		deployment: cfg.Deployment, opts: o,
		compute: newClient(computeBase, token, cfg.OnCall),
		billing: newClient(billingBase, token, cfg.OnCall),
	}, nil
}

// tokenSource reads the service-account key and returns what puts a
// token on each request: a JWT signed with the key is exchanged for an
// access token at the key's token_uri, which is kept until it nears
// expiry. Without a credentials file the provider can only talk to an
// explicit endpoint (a fake or a proxy that authenticates for us):
// falling back to Google's default credentials would read environment
// variables and the metadata server, which this tool never does.
func tokenSource(file string, o options) (func(context.Context, string) (string, error), error) {
	if file == "" {
		if o.endpoint != "" {
			return func(context.Context, string) (string, error) { return "", nil }, nil
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
		Type         string `json:"type"`
		ClientEmail  string `json:"client_email"`
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal(raw, &key); err != nil {
		return nil, provider.Errorf(errkind.Auth, Name, "credentials",
			"credentials file %s is not JSON (%v); want a service-account key from the GCP console; run: cocalc-hosts providers add %s --credentials FILE", file, err, Name)
	}
	// Only service-account keys: other credential types (external
	// accounts) would make a client execute commands and fetch URLs.
	if key.Type != "service_account" || key.ClientEmail == "" || key.PrivateKey == "" {
		return nil, provider.Errorf(errkind.Auth, Name, "credentials",
			"credentials file %s is not a service-account key (type %q); create a JSON key for a service account and run: cocalc-hosts providers add %s --credentials FILE", file, key.Type, Name)
	}
	if !validPrivateKey(key.PrivateKey) {
		return nil, provider.Errorf(errkind.Auth, Name, "credentials",
			"the private_key in credentials file %s is not a PEM-encoded RSA key; download a new JSON key for the service account and run: cocalc-hosts providers add %s --credentials FILE", file, Name)
	}
	if key.TokenURI == "" {
		key.TokenURI = tokenURL
	}
	conf := &jwt.Config{
		Email: key.ClientEmail, PrivateKey: []byte(key.PrivateKey), PrivateKeyID: key.PrivateKeyID,
		Scopes: []string{scope}, TokenURL: key.TokenURI,
	}
	// The token source keeps this context for every refresh; its client
	// bounds each token request.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: o.requestTimeout})
	ts := conf.TokenSource(ctx)
	return func(_ context.Context, op string) (string, error) {
		tok, err := ts.Token()
		if err != nil {
			return "", tokenError(op, err)
		}
		return tok.AccessToken, nil
	}, nil
}

func validPrivateKey(s string) bool {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return false
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		return true
	}
	_, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	return err == nil
}

func (p *Provider) Name() string                        { return Name }
func (p *Provider) Capabilities() provider.Capabilities { return capabilities }

// Close releases idle connections.
func (p *Provider) Close() error {
	p.compute.HTTP.CloseIdleConnections()
	p.billing.HTTP.CloseIdleConnections()
	return nil
}

// CheckCredentials lists at most one VM in the default zone: cheap,
// read-only, and it needs the permission every other call needs.
func (p *Provider) CheckCredentials(ctx context.Context) error {
	ctx, cancel := p.rctx(ctx)
	defer cancel()
	q := query("maxResults", "1")
	return p.compute.Do(ctx, "check credentials", http.MethodGet, p.zonePath(p.opts.zone, "instances")+"?"+q.Encode(), nil, nil)
}

// projectPath is the API path of the project's collection or resource.
func (p *Provider) projectPath(parts ...string) string {
	path := "/compute/v1/projects/" + url.PathEscape(p.opts.project)
	for _, s := range parts {
		path += "/" + url.PathEscape(s)
	}
	return path
}

// zonePath is the API path of a zonal collection or resource.
func (p *Provider) zonePath(zone string, parts ...string) string {
	return p.projectPath(append([]string{"zones", zone}, parts...)...)
}
