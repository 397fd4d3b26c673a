package agent

import (
	"bytes"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/promtest"
)

// metric scrapes the agent's /v1/metrics and parses it with
// Prometheus's own text parser: the value of family name's metric whose
// labels include labels (pairs).
func (h *host) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	b, err := h.client.Metrics(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	fams, err := promtest.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the agent's metrics do not parse: %v\n%s", err, b)
	}
	v := fams.Value(name, labels...)
	if v == nil {
		t.Fatalf("no %s%v in the agent's metrics:\n%s", name, labels, b)
	}
	return *v
}
