package agent

import (
	"bytes"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
)

// metric scrapes the agent's /v1/metrics and parses it with
// Prometheus's own text parser: family name → the value of its metric
// whose labels include labels (pairs).
func (h *host) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	b, err := h.client.Metrics(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the agent's metrics do not parse: %v\n%s", err, b)
	}
	f := fams[name]
	if f == nil {
		t.Fatalf("no %s in the agent's metrics:\n%s", name, b)
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return gaugeOrCounter(m)
	}
	t.Fatalf("no %s%v in the agent's metrics:\n%s", name, labels, b)
	return 0
}

func gaugeOrCounter(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}
