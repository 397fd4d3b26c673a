package tui

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// catalogView is the cross-cloud catalog, cheapest first, filtered as
// you type: words match the cloud, region, machine type or GPU; gpu:l4,
// cpu:8, ram:32 (minimums), region:east, cloud:gcp and max:1.5 ($/hour)
// narrow it down.
type catalogView struct {
	input   textinput.Model
	cat     Catalog
	err     error
	loading bool
	index   []int
	list    list
	grid    grid
}

const (
	ccCloud = iota
	ccRegion
	ccType
	ccCPU
	ccRAM
	ccGPU
	ccPrice
	ccSpot
	ccMonth
	ccAvail
)

func newCatalogView(t Theme) catalogView {
	in := textinput.New()
	in.Prompt = "filter> "
	in.Placeholder = "l4 cpu:8 ram:32 region:us cloud:gcp max:2"
	in.Focus()
	return catalogView{input: in, grid: grid{sortCol: ccPrice, cols: []column{
		{title: "CLOUD", width: 6, priority: 0},
		{title: "REGION", width: 14, priority: 5, flex: true},
		{title: "TYPE", width: 16, priority: 0},
		{title: "CPU", width: 3, priority: 6, right: true},
		{title: "RAM", width: 4, priority: 7, right: true},
		{title: "GPU", width: 9, priority: 8},
		{title: "$/H", width: 7, priority: 0, right: true},
		{title: "SPOT", width: 7, priority: 2, right: true},
		{title: "$/MONTH", width: 8, priority: 4, right: true},
		{title: "CAP", width: 3, priority: 3},
	}}}
}

type catalogMsg struct {
	cat Catalog
	err error
}

func (m *Model) loadCatalog() tea.Cmd {
	if m.catalog.loading {
		return nil
	}
	m.catalog.loading = true
	src := m.src
	ctx, cancel := m.fetchCtx()
	return func() tea.Msg {
		defer cancel()
		c, err := src.Catalog(ctx)
		return catalogMsg{cat: c, err: err}
	}
}

// catalogQuery is a parsed catalog filter.
type catalogQuery struct {
	words              []string
	gpu, region, cloud string
	cpu                int
	ram, maxPrice      float64
	bad                string
}

func parseCatalogQuery(s string) catalogQuery {
	var q catalogQuery
	for _, w := range strings.Fields(strings.ToLower(s)) {
		k, v, ok := strings.Cut(w, ":")
		if !ok || v == "" {
			q.words = append(q.words, w)
			continue
		}
		num := func() float64 {
			f, err := strconv.ParseFloat(strings.TrimPrefix(v, "$"), 64)
			if err != nil {
				q.bad = fmt.Sprintf("%s: %q is not a number", k, v)
			}
			return f
		}
		switch k {
		case "gpu":
			q.gpu = v
		case "region":
			q.region = v
		case "cloud":
			q.cloud = v
		case "cpu":
			q.cpu = int(num())
		case "ram":
			q.ram = num()
		case "max":
			q.maxPrice = num()
		default:
			q.bad = fmt.Sprintf("unknown filter %q: use gpu: cpu: ram: region: cloud: max:", k+":")
		}
	}
	return q
}

func (q catalogQuery) match(e *Machine) bool {
	lc := strings.ToLower
	switch {
	case q.gpu != "" && !strings.Contains(lc(e.GPUModel), q.gpu):
		return false
	case q.region != "" && !strings.Contains(lc(e.Region+" "+e.Zone), q.region):
		return false
	case q.cloud != "" && !strings.HasPrefix(lc(e.Provider), q.cloud):
		return false
	case e.CPUs < q.cpu, e.MemoryGiB < q.ram:
		return false
	case q.maxPrice > 0 && e.HourlyPrice > q.maxPrice:
		return false
	}
	hay := lc(strings.Join([]string{e.Provider, e.Region, e.Zone, e.Type, e.GPUModel}, " "))
	for _, w := range q.words {
		if !strings.Contains(hay, w) {
			return false
		}
	}
	return true
}

func (v *catalogView) rebuild() {
	q := parseCatalogQuery(v.input.Value())
	v.index = v.index[:0]
	ms := v.cat.Machines
	for i := range ms {
		if q.match(&ms[i]) {
			v.index = append(v.index, i)
		}
	}
	slices.SortStableFunc(v.index, func(a, b int) int {
		return cmp.Or(cmp.Compare(ms[a].HourlyPrice, ms[b].HourlyPrice), strings.Compare(ms[a].Provider, ms[b].Provider),
			strings.Compare(ms[a].Type, ms[b].Type), strings.Compare(ms[a].Region+ms[a].Zone, ms[b].Region+ms[b].Zone))
	})
	v.list.clampTo(len(v.index))
}

func (v catalogView) selected() (Machine, bool) {
	if v.list.cursor < 0 || v.list.cursor >= len(v.index) {
		return Machine{}, false
	}
	return v.cat.Machines[v.index[v.list.cursor]], true
}

func (m Model) catalogSubtitle() string {
	t := m.opt.Theme
	v := m.catalog
	s := v.input.View()
	info := fmt.Sprintf("  %d of %d", len(v.index), len(v.cat.Machines))
	if q := parseCatalogQuery(v.input.Value()); q.bad != "" {
		info = "  " + t.Bad.Render(q.bad)
	}
	return s + t.Dim.Render(info)
}

func (m Model) catalogBody(height int) string {
	t := m.opt.Theme
	v := &m.catalog
	var head []string
	if v.err != nil {
		head = append(head, t.Bad.Render("catalog: "+oneLine(v.err.Error())))
	}
	for _, w := range v.cat.Warnings {
		head = append(head, t.Warn.Render("warning: "+oneLine(w)))
	}
	if len(head) > 2 {
		head = head[:2]
	}
	pre := strings.Join(head, "\n")
	if pre != "" {
		pre += "\n"
	}
	if len(v.cat.Machines) == 0 {
		if v.loading || v.cat.At.IsZero() && v.err == nil {
			return pre + "\n  " + m.spinner.View() + " reading the catalogs…"
		}
		return pre + "\n  No machines: add a cloud with `cocalc-hosts providers add`."
	}
	if len(v.index) == 0 {
		return pre + "\n  No machine matches the filter."
	}
	h := height - len(head)
	start, end := v.list.window(len(v.index), h-1)
	return pre + v.grid.render(t, m.width, h, start, end, v.list.cursor, func(r, col, width int, _ bool) string {
		return clip(machineCell(&v.cat.Machines[v.index[r]], col), width)
	})
}

func machineCell(e *Machine, col int) string {
	switch col {
	case ccCloud:
		return e.Provider
	case ccRegion:
		if e.Zone != "" && e.Zone != e.Region {
			return e.Zone
		}
		return e.Region
	case ccType:
		return e.Type
	case ccCPU:
		return fmt.Sprint(e.CPUs)
	case ccRAM:
		return model.FormatGiB(e.MemoryGiB)
	case ccGPU:
		if e.GPUCount == 0 {
			return "-"
		}
		return fmt.Sprintf("%dx%s", e.GPUCount, e.GPUModel)
	case ccPrice:
		return fmt.Sprintf("%.4f", e.HourlyPrice)
	case ccSpot:
		if e.SpotPrice == 0 {
			return "-"
		}
		return fmt.Sprintf("%.4f", e.SpotPrice)
	case ccMonth:
		return fmt.Sprintf("%.2f", monthly(*e, e.DefaultDisk, false))
	case ccAvail:
		if e.Available {
			return "yes"
		}
		return "no"
	}
	return ""
}

// hoursPerMonth converts hourly prices to monthly ones, as the catalog does.
const hoursPerMonth = 730

// monthly is what a machine with a diskGB data disk costs running all
// month.
func monthly(e Machine, diskGB int, spot bool) float64 {
	p := e.HourlyPrice
	if spot && e.SpotPrice > 0 {
		p = e.SpotPrice
	}
	return p*hoursPerMonth + stoppedMonthly(e, diskGB)
}

// stoppedMonthly is what it costs while stopped: its disks.
func stoppedMonthly(e Machine, diskGB int) float64 {
	return float64(diskGB)*e.DiskGBMonth + e.BootMonthly
}
