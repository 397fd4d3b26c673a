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
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
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
// added) or the full URL of its traces path. Spans go in batches; the
// returned shutdown sends what is left (call it before exiting).
func Setup(ctx context.Context, endpoint, version string) (shutdown func(context.Context) error, err error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("otel.endpoint %q is not an OTLP/HTTP address such as http://otel-collector:4318", endpoint)
	}
	if strings.TrimSuffix(u.Path, "/") == "" {
		u.Path = "/v1/traces"
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, fmt.Errorf("otel.endpoint %s: %w", endpoint, err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "cocalc-hosts"), attribute.String("service.version", version))))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}
