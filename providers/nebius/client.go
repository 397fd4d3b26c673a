package nebius

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/nebius/gosdk/auth"
	"github.com/nebius/gosdk/conn"
	"github.com/nebius/gosdk/serviceerror"
	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	iamsvc "github.com/nebius/gosdk/services/nebius/iam/v1"
)

// client is what the generated service clients (computesvc.NewInstanceService
// and the like) need: a conn.Resolver and a conn.Dialer. It is built from the
// SDK's conn and auth packages as gosdk.New builds its SDK, without the SDK's
// root package, which imports every Nebius service there is (about 90
// packages initialised at every start of the binary).
//
// What it keeps of gosdk.New: TLS by default, the idempotency-key and
// service-error interceptors, the user agent, an auth timeout and the
// request timeout, IAM-token and service-account credentials (JWT exchanged
// through iam/v1 TokenExchangeService, cached and refreshed in the
// background). What it leaves out: SDK retries (do retries, honouring
// RetryInfo), parent and tenant ids from a CLI profile (every request names
// project_id), logging (nothing to log to).
type client struct {
	conn.Resolver
	conn.Dialer
	cancel context.CancelFunc // stops the token refresher
}

const (
	// defaultDomain is the Nebius API domain that gosdk resolves
	// "compute.{domain}" and the like against.
	defaultDomain = "api.nebius.cloud:443"
	// authTimeout bounds authentication and request together, as gosdk's
	// DefaultAuthTimeout does.
	authTimeout = 15 * time.Minute
)

// credential is either a static IAM token or a service account.
type credential struct {
	token string
	sa    *auth.ServiceAccount
}

// newClient dials endpoint (host:port; empty for the Nebius API) with cred.
// Plain (non-TLS) connections are for the in-repo fake. extra interceptors
// run after the idempotency key is set and before authentication.
func newClient(endpoint string, plain bool, cred credential, timeout time.Duration, extra ...grpc.UnaryClientInterceptor) *client {
	logger := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{cancel: cancel}
	if endpoint != "" {
		c.Resolver = conn.NewConstantResolver(conn.Address(endpoint))
	} else {
		c.Resolver = conn.NewTemplateExpander(map[string]string{"{domain}": defaultDomain}, conn.NewConventionResolver())
	}

	var tokener auth.BearerTokener = auth.StaticBearerToken(cred.token)
	var exchange *auth.ExchangeableBearerTokener
	var cache *auth.CachedServiceTokener
	if cred.sa != nil {
		exchange = auth.NewExchangeableBearerTokener(auth.NewServiceAccountExchangeTokenRequester(auth.StaticServiceAccount(*cred.sa)), nil)
		// 90%, 1 s and 1 min are the IAM team's recommended values (as in gosdk.New).
		cache = auth.NewCachedServiceTokener(logger, exchange, 0.9, time.Second, 1.5, time.Minute)
		tokener = cache
	}
	auths := map[auth.Selector]auth.Authenticator{auth.Select("default"): auth.NewAuthenticatorFromBearerTokener(tokener)}

	transport := grpccreds.NewTLS(nil)
	if plain {
		transport = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(conn.IdempotencyKeyInterceptor),
		grpc.WithTransportCredentials(transport),
		grpc.WithChainUnaryInterceptor(extra...),
		grpc.WithUserAgent(userAgent()),
		grpc.WithChainUnaryInterceptor(
			conn.UnaryClientTimeoutInterceptor(authTimeout),
			auth.UnaryClientInterceptor(logger, auths, false),
			conn.UnaryClientTimeoutInterceptor(timeout),
			serviceerror.UnaryClientInterceptor,
		),
		grpc.WithChainStreamInterceptor(
			auth.StreamClientInterceptor(logger, auths, false),
			serviceerror.StreamClientInterceptor,
		),
	}
	c.Dialer = conn.NewDialer(logger, opts...)
	if cache != nil {
		exchange.SetClient(iamsvc.NewTokenExchangeService(c))
		// Run returns when ctx ends; a refresh that fails shows as an
		// auth error on the next call.
		go func() { _ = cache.Run(ctx) }()
	}
	return c
}

// Close stops the token refresher and closes the connections.
func (c *client) Close() error {
	c.cancel()
	return c.Dialer.Close()
}

// gosdkVersion is the SDK version in go.mod (a test checks); it goes in
// the user agent, as gosdk.Version does.
const gosdkVersion = "0.2.8"

// userAgent is gosdk's, prefixed with ours: "cocalc-hosts
// nebius-gosdk/0.2.8 (linux amd64; go/1.26.8)".
func userAgent() string {
	goVer, _, _ := strings.Cut(strings.TrimPrefix(runtime.Version(), "go"), " X:")
	return "cocalc-hosts nebius-gosdk/" + gosdkVersion + " (" + runtime.GOOS + " " + runtime.GOARCH + "; go/" + goVer + ")"
}
