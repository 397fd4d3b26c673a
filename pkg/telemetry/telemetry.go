// Package telemetry traces the lifecycles of hosts and projects with
// OpenTelemetry: each job attempt is a span (host create, start, …;
// project start, …) whose children are its steps (the cloud's API calls,
// the wait for the VM, the bootstrap, the wait for the agent).
//
// Until Setup installs an exporter the spans are the API's no-ops: a
// process without `otel.endpoint` builds and sends nothing.
package telemetry

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// scope names the tracer of every span here.
const scope = "github.com/sagemathinc/cocalc-hosts"

// Start begins span name as a child of ctx's span (a root without one).
// Call end with the error of what the span covered: a non-nil error
// marks the span failed.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (_ context.Context, end func(error)) {
	ctx, span := otel.Tracer(scope).Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// Setup sends this process's spans over OTLP/HTTP (protobuf) to endpoint:
// a collector's base URL (http://HOST:4318, to which /v1/traces is
// added) or the full URL of its traces path, with the headers in
// headersFile (a 0600 file of "Name: value" lines, e.g. a hosted
// collector's Authorization; empty: none). Spans go in batches; the
// returned shutdown sends what is left (call it before exiting).
//
// Every exporter option is given here, so the library's OTEL_EXPORTER_OTLP_*
// environment variables change nothing: a credential never comes from the
// environment.
func Setup(ctx context.Context, endpoint, headersFile, version string) (shutdown func(context.Context) error, err error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("otel.endpoint %q is not an OTLP/HTTP address such as http://otel-collector:4318", endpoint)
	}
	if strings.TrimSuffix(u.Path, "/") == "" {
		u.Path = "/v1/traces"
	}
	headers, err := readHeaders(headersFile)
	if err != nil {
		return nil, err
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(u.String()), otlptracehttp.WithHeaders(headers),
		otlptracehttp.WithTimeout(10 * time.Second), otlptracehttp.WithCompression(otlptracehttp.NoCompression)}
	if u.Scheme == "https" {
		// The system's roots, not OTEL_EXPORTER_OTLP_CERTIFICATE's.
		opts = append(opts, otlptracehttp.WithTLSClientConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otel.endpoint %s: %w", endpoint, err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "cocalc-hosts"), attribute.String("service.version", version))))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// readHeaders reads otel.headers_file: "Name: value" lines; blank lines
// and lines starting with # are skipped.
func readHeaders(path string) (map[string]string, error) {
	headers := map[string]string{}
	if path == "" {
		return headers, nil
	}
	b, err := secrets.Read(path)
	if err != nil {
		return nil, fmt.Errorf("otel.headers_file: %w", err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if name = strings.TrimSpace(name); !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("otel.headers_file %s, line %d: not a \"Name: value\" header", path, i+1)
		}
		headers[name] = strings.TrimSpace(value)
	}
	return headers, nil
}
