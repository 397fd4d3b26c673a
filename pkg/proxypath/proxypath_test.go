package proxypath

import (
	"strconv"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

const id = "3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13"

func TestParse(t *testing.T) {
	for _, c := range []struct {
		path string
		want Target
	}{
		{"/" + id + "/port/8888/", Target{id, 8888, "/"}},
		{"/" + id + "/port/8888", Target{id, 8888, ""}},
		{"/" + id + "/port/1/lab/tree?x", Target{id, 1, "/lab/tree?x"}},
		{"/" + id + "/port/65535/a%2Fb/../c", Target{id, 65535, "/a%2Fb/../c"}},
		{"/" + id + "/port/80//x", Target{id, 80, "//x"}},
	} {
		got, ok := Parse(c.path)
		if !ok || got != c.want {
			t.Errorf("Parse(%q) = %+v %v, want %+v", c.path, got, ok, c.want)
		}
	}
}

// Every trick is not an ingress path at all: the handler answers 404
// without looking at any project.
func TestParseRefuses(t *testing.T) {
	upper := strings.ToUpper(id)
	for _, p := range []string{
		"", "/", "//" + id + "/port/80/", "/" + id + "//port/80/", "/" + id + "/port//80/",
		"/" + upper + "/port/80/", "/{" + id + "}/port/80/", "/" + strings.ReplaceAll(id, "-", "") + "/port/80/",
		"/" + id[:35] + "/port/80/", "/" + id + "0/port/80/", "/urn:uuid:" + id + "/port/80/",
		"/%33" + id[1:] + "/port/80/", "/" + id + "%2Fport/80/", "/" + id + "/port%2F80/", "/" + id + "/port/80%2F",
		"/" + id + "/port/%38%30/", "/" + id + "/../" + id + "/port/80/", "/./" + id + "/port/80/",
		"/" + id + "/port/0/", "/" + id + "/port/080/", "/" + id + "/port/65536/", "/" + id + "/port/99999999999999999999/",
		"/" + id + "/port/-1/", "/" + id + "/port/+80/", "/" + id + "/port/80x/", "/" + id + "/port/ 80/",
		"/" + id + "/port/8.0/", "/" + id + "/ports/80/", "/" + id + "/PORT/80/", "/" + id + "/port/", "/" + id,
		id + "/port/80/", "\\" + id + "/port/80/",
	} {
		if got, ok := Parse(p); ok {
			t.Errorf("Parse(%q) accepted: %+v", p, got)
		}
	}
}

// FuzzParse: no input panics, and whatever is accepted is exactly the
// canonical prefix of what it names followed by Rest.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/" + id + "/port/8888/", "/" + id + "/port/1", "/" + id + "/port/65535/x/../y",
		"//" + id + "/port/80/", "/" + id + "/port/080/", "/" + id + "%2Fport/80/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, ok := Parse(p)
		if !ok {
			return
		}
		if !model.CanonicalUUID(got.Project) || got.Port < 1 || got.Port > 65535 {
			t.Fatalf("accepted %q as %+v", p, got)
		}
		if want := "/" + got.Project + "/port/" + strconv.Itoa(got.Port) + got.Rest; want != p {
			t.Fatalf("%q parsed as %+v, which is %q", p, got, want)
		}
		if got.Rest != "" && got.Rest[0] != '/' {
			t.Fatalf("rest %q of %q does not start with a slash", got.Rest, p)
		}
	})
}
