package gcp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider/restclient"
)

// The Compute Engine v1 and Cloud Billing v1 REST APIs, as JSON: only the
// fields the provider sends or reads. Field names follow the published
// resources (https://cloud.google.com/compute/docs/reference/rest/v1);
// the fake decodes requests strictly against the real schema, so a
// misspelled field fails the tests.

const (
	computeRoot = "https://compute.googleapis.com"
	billingRoot = "https://cloudbilling.googleapis.com"
	// tokenURL is where a key without token_uri gets its tokens.
	tokenURL = "https://oauth2.googleapis.com/token"
	// scope covers compute and the billing catalog, as the SDK's did.
	scope = "https://www.googleapis.com/auth/cloud-platform"
	// maxReply bounds one reply: a page of 5,000 billing SKUs is a few MB.
	maxReply = 64 << 20
)

type instance struct {
	ID                u64                 `json:"id,omitempty"`
	Name              string              `json:"name,omitempty"`
	Zone              string              `json:"zone,omitempty"`
	Status            string              `json:"status,omitempty"`
	MachineType       string              `json:"machineType,omitempty"`
	Labels            map[string]string   `json:"labels,omitempty"`
	Disks             []attachedDisk      `json:"disks,omitempty"`
	NetworkInterfaces []networkInterface  `json:"networkInterfaces,omitempty"`
	Metadata          *metadata           `json:"metadata,omitempty"`
	Scheduling        *scheduling         `json:"scheduling,omitempty"`
	GuestAccelerators []acceleratorConfig `json:"guestAccelerators,omitempty"`
}

type attachedDisk struct {
	Boot             bool              `json:"boot,omitempty"`
	AutoDelete       bool              `json:"autoDelete,omitempty"`
	Type             string            `json:"type,omitempty"`
	Mode             string            `json:"mode,omitempty"`
	DeviceName       string            `json:"deviceName,omitempty"`
	Source           string            `json:"source,omitempty"`
	DiskSizeGb       i64               `json:"diskSizeGb,omitempty"`
	InitializeParams *initializeParams `json:"initializeParams,omitempty"`
}

type initializeParams struct {
	SourceImage string            `json:"sourceImage,omitempty"`
	DiskSizeGb  i64               `json:"diskSizeGb,omitempty"`
	DiskType    string            `json:"diskType,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

type networkInterface struct {
	Network       string         `json:"network,omitempty"`
	Subnetwork    string         `json:"subnetwork,omitempty"`
	NetworkIP     string         `json:"networkIP,omitempty"`
	AccessConfigs []accessConfig `json:"accessConfigs,omitempty"`
}

type accessConfig struct {
	Name  string `json:"name,omitempty"`
	Type  string `json:"type,omitempty"`
	NatIP string `json:"natIP,omitempty"`
}

type metadata struct {
	Items []metadataItem `json:"items,omitempty"`
}

type metadataItem struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type scheduling struct {
	ProvisioningModel string `json:"provisioningModel,omitempty"`
	OnHostMaintenance string `json:"onHostMaintenance,omitempty"`
	// A pointer: the API's default is true, so false must be sent.
	AutomaticRestart          *bool  `json:"automaticRestart,omitempty"`
	InstanceTerminationAction string `json:"instanceTerminationAction,omitempty"`
}

type acceleratorConfig struct {
	AcceleratorType  string `json:"acceleratorType,omitempty"`
	AcceleratorCount int32  `json:"acceleratorCount,omitempty"`
}

type disk struct {
	Name                string            `json:"name,omitempty"`
	Zone                string            `json:"zone,omitempty"`
	SizeGb              i64               `json:"sizeGb,omitempty"`
	Type                string            `json:"type,omitempty"`
	Labels              map[string]string `json:"labels,omitempty"`
	Users               []string          `json:"users,omitempty"`
	LastAttachTimestamp string            `json:"lastAttachTimestamp,omitempty"`
}

type machineType struct {
	Name         string               `json:"name"`
	GuestCpus    int32                `json:"guestCpus"`
	MemoryMb     int32                `json:"memoryMb"`
	IsSharedCpu  bool                 `json:"isSharedCpu"`
	Deprecated   *deprecationStatus   `json:"deprecated"`
	Accelerators []bundledAccelerator `json:"accelerators"`
}

type bundledAccelerator struct {
	GuestAcceleratorType  string `json:"guestAcceleratorType"`
	GuestAcceleratorCount int32  `json:"guestAcceleratorCount"`
}

type acceleratorType struct {
	Name                    string             `json:"name"`
	MaximumCardsPerInstance int32              `json:"maximumCardsPerInstance"`
	Deprecated              *deprecationStatus `json:"deprecated"`
}

type deprecationStatus struct {
	State string `json:"state"`
}

type operation struct {
	Name   string `json:"name"`
	Zone   string `json:"zone"`
	Status string `json:"status"` // PENDING, RUNNING, DONE
	Error  *struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	} `json:"error"`
	HTTPErrorStatusCode int32  `json:"httpErrorStatusCode"`
	HTTPErrorMessage    string `json:"httpErrorMessage"`
}

func (o *operation) done() bool { return o.Status == "DONE" }

// page is one page of a zonal list (T a slice) or an aggregated list (T
// a map from "zones/<zone>" to a scopedList).
type page[T any] struct {
	Items         T      `json:"items"`
	NextPageToken string `json:"nextPageToken"`
}

// scopedList is one zone of an aggregated list; only the member of the
// listed kind is present.
type scopedList struct {
	Instances        []instance        `json:"instances"`
	Disks            []disk            `json:"disks"`
	MachineTypes     []machineType     `json:"machineTypes"`
	AcceleratorTypes []acceleratorType `json:"acceleratorTypes"`
}

// Billing catalog SKUs (services.skus.list).
type sku struct {
	SkuID       string `json:"skuId"`
	Description string `json:"description"`
	Category    *struct {
		UsageType string `json:"usageType"`
	} `json:"category"`
	ServiceRegions []string `json:"serviceRegions"`
	GeoTaxonomy    *struct {
		Regions []string `json:"regions"`
	} `json:"geoTaxonomy"`
	PricingInfo []*pricingInfo `json:"pricingInfo"`
}

type pricingInfo struct {
	EffectiveTime     string `json:"effectiveTime"`
	PricingExpression *struct {
		UsageUnit   string      `json:"usageUnit"`
		TieredRates []*tierRate `json:"tieredRates"`
	} `json:"pricingExpression"`
}

type tierRate struct {
	StartUsageAmount float64 `json:"startUsageAmount"`
	UnitPrice        *struct {
		CurrencyCode string `json:"currencyCode"`
		Units        i64    `json:"units"`
		Nanos        int64  `json:"nanos"`
	} `json:"unitPrice"`
}

// i64 is an int64, which the APIs carry as a JSON string ("20"); a bare
// number is accepted too.
type i64 int64

func (n i64) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, strconv.FormatInt(int64(n), 10)), nil
}

func (n *i64) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(unquoteNumber(b), 10, 64)
	if err != nil {
		return &json.UnsupportedValueError{Str: string(b)}
	}
	*n = i64(v)
	return nil
}

// u64 is a uint64 carried the same way (resource ids).
type u64 uint64

func (n u64) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, strconv.FormatUint(uint64(n), 10)), nil
}

func (n *u64) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseUint(unquoteNumber(b), 10, 64)
	if err != nil {
		return &json.UnsupportedValueError{Str: string(b)}
	}
	*n = u64(v)
	return nil
}

func unquoteNumber(b []byte) string {
	s := string(b)
	if s == "null" {
		return "0"
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	return s
}

// apiError is Google's error reply: {"error": {"code", "message",
// "errors": [{"reason"}]}}, with the Retry-After header if any.
type apiError struct {
	Code    int
	Message string
	Reasons []string
	Header  http.Header
}

func (e *apiError) Error() string {
	text := e.Message
	if text == "" {
		text = http.StatusText(e.Code)
	}
	return "HTTP " + strconv.Itoa(e.Code) + ": " + text
}

func (e *apiError) has(reasons ...string) bool {
	for _, r := range e.Reasons {
		for _, want := range reasons {
			if strings.EqualFold(r, want) {
				return true
			}
		}
	}
	return false
}

// parseAPIError reads an error reply; a body that is not Google's shape
// (a proxy's HTML page) becomes the message.
func parseAPIError(resp *http.Response, raw []byte) *apiError {
	e := &apiError{Code: resp.StatusCode, Header: resp.Header}
	var body struct {
		Error struct {
			Message string `json:"message"`
			Errors  []struct {
				Reason string `json:"reason"`
			} `json:"errors"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error.Message != "" {
		e.Message = body.Error.Message
		for _, r := range body.Error.Errors {
			e.Reasons = append(e.Reasons, r.Reason)
		}
	} else if len(strings.TrimSpace(string(raw))) > 0 {
		e.Message = restclient.Snippet(raw)
	}
	return e
}

// newClient is a REST client for one API root. The request timeout is
// the caller's context (rctx, listCtx); no retries of its own: the
// control plane's queue retries classified errors with backoff and
// Retry-After, and a layer here would only hide failures and stack waits.
func newClient(base string, token func(context.Context, string) (string, error), onCall func(string, time.Duration, error)) *restclient.Client {
	return &restclient.Client{
		OnCall:   onCall,
		Provider: Name, KeyName: "GCP service-account key",
		Base: base, HTTP: &http.Client{}, MaxReply: maxReply,
		MaxRetries: 0, Sleep: restclient.SleepCtx,
		Token: token,
		Authorize: func(req *http.Request, tok string) {
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
		},
		Classify: func(op, _, _ string, resp *http.Response, raw []byte) error {
			return classifyHTTP(op, parseAPIError(resp, raw))
		},
		Decode: func(op, method, path string, _ *http.Response, raw []byte, out any) error {
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(raw, out); err != nil {
				return malformedReply(op, method, path, err, raw)
			}
			return nil
		},
	}
}

// query builds a query string from key, value pairs, leaving out empty
// values.
func query(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}

// listAll GETs every page of a list, handing each page's items to each.
func listAll[T any](ctx context.Context, c *restclient.Client, op, path string, q url.Values, each func(T) error) error {
	for {
		var pg page[T]
		if err := c.Do(ctx, op, http.MethodGet, path+"?"+q.Encode(), nil, &pg); err != nil {
			return err
		}
		if err := each(pg.Items); err != nil {
			return err
		}
		if pg.NextPageToken == "" {
			return nil
		}
		if pg.NextPageToken == q.Get("pageToken") {
			return malformedReply(op, http.MethodGet, path, fmt.Errorf("the same nextPageToken twice"), nil)
		}
		q.Set("pageToken", pg.NextPageToken)
	}
}
