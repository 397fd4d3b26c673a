// Package promtest reads Prometheus metrics in tests with Prometheus's own
// text parser, so that what the tests check is what a scraper would see.
package promtest

import (
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
)

// Families is a parsed exposition: family name → family.
type Families map[string]*dto.MetricFamily

// Parse parses the text exposition format.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// Find is the first metric of family name whose labels include the given
// name/value pairs, or nil.
func (f Families) Find(name string, labels ...string) *dto.Metric {
	fam := f[name]
	if fam == nil {
		return nil
	}
next:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return m
	}
	return nil
}

// Value is the gauge's or counter's value of Find's metric, or nil when
// there is none (or it is another kind).
func (f Families) Value(name string, labels ...string) *float64 {
	m := f.Find(name, labels...)
	var v float64
	switch {
	case m == nil:
		return nil
	case m.Gauge != nil:
		v = m.GetGauge().GetValue()
	case m.Counter != nil:
		v = m.GetCounter().GetValue()
	default:
		return nil
	}
	return &v
}
