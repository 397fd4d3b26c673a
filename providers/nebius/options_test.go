package nebius

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

func baseOptions() map[string]string {
	return map[string]string{"project_id": "project-e00abc", "region": "eu-north1", "subnet_id": "vpcsubnet-e00abc"}
}

func TestOptionsDefaults(t *testing.T) {
	o, err := parseOptions(baseOptions())
	if err != nil {
		t.Fatal(err)
	}
	if o.endpoint != "" || o.insecure || o.platform != "cpu-d3" || o.dataDiskGB != 50 || o.bootDiskGB != 50 ||
		o.diskType != compute.DiskSpec_NETWORK_SSD || !o.publicIP || o.sshUser != "ubuntu" || o.retries != 3 ||
		o.pollInterval != provider.DefaultPollInterval || o.maxRetryWait != 30*time.Second {
		t.Fatalf("defaults: %+v", o)
	}
}

func TestOptionsRefusals(t *testing.T) {
	for name, c := range map[string]struct {
		set  map[string]string
		drop string
		want string
	}{
		"unknown key":      {set: map[string]string{"projectid": "x"}, want: `unknown option "projectid"`},
		"no project":       {drop: "project_id", want: "project_id is required"},
		"bad project":      {set: map[string]string{"project_id": "my-project"}, want: "project_id="},
		"no region":        {drop: "region", want: "region is required"},
		"bad region":       {set: map[string]string{"region": "EU North"}, want: "region="},
		"no subnet":        {drop: "subnet_id", want: "subnet_id is required"},
		"bad subnet":       {set: map[string]string{"subnet_id": "subnet-1"}, want: "subnet_id="},
		"insecure alone":   {set: map[string]string{"insecure": "true"}, want: "insecure=true needs option endpoint"},
		"endpoint scheme":  {set: map[string]string{"endpoint": "https://api.example:443"}, want: "want host:port"},
		"endpoint no port": {set: map[string]string{"endpoint": "api.example"}, want: "want host:port"},
		"bad bool":         {set: map[string]string{"public_ip": "yes please"}, want: "public_ip="},
		"bad disk type":    {set: map[string]string{"disk_type": "ssd"}, want: "disk_type="},
		"zero disk":        {set: map[string]string{"data_disk_gb": "0"}, want: "data_disk_gb="},
		"bad duration":     {set: map[string]string{"poll_interval": "fast"}, want: "poll_interval="},
		"negative retries": {set: map[string]string{"retries": "-1"}, want: "retries="},
		"bad ssh user":     {set: map[string]string{"ssh_user": "Root"}, want: "ssh_user="},
		"empty platform":   {set: map[string]string{"platform": " "}, want: "must not be empty"},
	} {
		t.Run(name, func(t *testing.T) {
			m := baseOptions()
			delete(m, c.drop)
			for k, v := range c.set {
				m[k] = v
			}
			_, err := parseOptions(m)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestNewNeedsDeployment(t *testing.T) {
	if _, err := New(provider.Config{Options: baseOptions()}); err == nil || !strings.Contains(err.Error(), "Deployment") {
		t.Fatalf("New without a deployment: %v", err)
	}
}

func TestRegistered(t *testing.T) {
	r, err := provider.Lookup(Name)
	if err != nil {
		t.Fatal(err)
	}
	c := r.Capabilities
	if c.Stop != provider.StopReal || !c.DiskResize || !c.DiskResizeRequiresStop || !c.PersistentDisk || !c.GPU || !c.Spot || !c.Bootstrap || c.Simulated || c.Zones {
		t.Fatalf("capabilities %+v", c)
	}
}

func TestClassify(t *testing.T) {
	withRetry := func(code codes.Code, d time.Duration) error {
		st, err := status.New(code, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for name, c := range map[string]struct {
		err   error
		kind  errkind.Kind
		after time.Duration
	}{
		"unauthenticated":       {status.Error(codes.Unauthenticated, "x"), errkind.Auth, 0},
		"permission denied":     {status.Error(codes.PermissionDenied, "x"), errkind.Auth, 0},
		"not found":             {status.Error(codes.NotFound, "x"), errkind.NotFound, 0},
		"invalid":               {status.Error(codes.InvalidArgument, "x"), errkind.Invalid, 0},
		"precondition":          {status.Error(codes.FailedPrecondition, "x"), errkind.Invalid, 0},
		"unimplemented":         {status.Error(codes.Unimplemented, "x"), errkind.Refused, 0},
		"unavailable":           {status.Error(codes.Unavailable, "x"), errkind.Transient, 0},
		"deadline":              {status.Error(codes.DeadlineExceeded, "x"), errkind.Transient, 0},
		"internal":              {status.Error(codes.Internal, "x"), errkind.Transient, 0},
		"exhausted, no info":    {status.Error(codes.ResourceExhausted, "x"), errkind.RateLimited, defaultRateLimitWait},
		"exhausted, retry info": {withRetry(codes.ResourceExhausted, 7*time.Second), errkind.RateLimited, 7 * time.Second},
		"wrapped":               {errors.Join(errors.New("context"), status.Error(codes.NotFound, "x")), errkind.NotFound, 0},
		"caller gave up":        {context.DeadlineExceeded, errkind.Transient, 0},
		"plain network failure": {errors.New("connection reset by peer"), errkind.Transient, 0},
		"already classified":    {provider.Errorf(errkind.Quota, Name, "x", "y"), errkind.Quota, 0},
	} {
		err := classify("op", c.err)
		if errkind.Of(err) != c.kind || errkind.RetryAfter(err) != c.after {
			t.Errorf("%s: kind %s retry after %s; want %s, %s", name, errkind.Of(err), errkind.RetryAfter(err), c.kind, c.after)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: the error has several lines: %q", name, err)
		}
	}
	if classify("op", nil) != nil {
		t.Error("classify(nil) is not nil")
	}
}
