package model

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendHostJSON appends h as encoding/json writes it (json.Marshal when
// indent is "", else json.MarshalIndent with prefix and indent), byte for
// byte, without reflection or the re-scan indenting costs: listings of
// thousands of hosts spent most of their time there. TestAppendHostJSON
// fills every field of Host by reflection, so a field added to Host and
// not here fails it.
func AppendHostJSON(b []byte, h *Host, prefix, indent string) ([]byte, error) {
	e := hostEncoder{b: b, prefix: prefix, indent: indent}
	e.open()
	e.str("id", h.ID)
	e.str("name", h.Name)
	e.str("owner", h.Owner)
	e.str("provider", h.Provider)
	e.str("region", h.Region)
	e.str("zone", h.Zone)
	e.str("status", string(h.Status))
	e.key("spec")
	e.spec(&h.Spec)
	e.key("runtime")
	e.runtime(&h.Runtime)
	e.float("hourly_price", h.HourlyPrice)
	e.str("last_action", h.LastAction)
	e.str("last_error", h.LastError)
	e.key("shared")
	e.b = strconv.AppendBool(e.b, h.Shared)
	e.time("created_at", h.CreatedAt)
	e.time("updated_at", h.UpdatedAt)
	if h.DeletedAt != nil {
		e.time("deleted_at", *h.DeletedAt)
	}
	e.int("missing_count", h.MissingCount)
	e.close()
	return e.b, e.err
}

func (e *hostEncoder) spec(s *HostSpec) {
	e.open()
	e.strOmit("machine_type", s.MachineType)
	e.intOmit("cpus", s.CPUs)
	e.intOmit("memory_gib", s.MemoryGiB)
	e.strOmit("gpu_model", s.GPUModel)
	e.intOmit("gpu_count", s.GPUCount)
	e.intOmit("disk_gb", s.DiskGB)
	e.strOmit("image", s.Image)
	e.boolOmit("spot", s.Spot)
	e.strOmit("address", s.Address)
	e.boolOmit("reverse", s.Reverse)
	e.strOmit("data_disk_device", s.DataDiskDevice)
	e.floatOmit("disk_price_gb_month", s.DiskPricePerGBMonth)
	e.strOmit("disk_price_source", s.DiskPriceSource)
	e.floatOmit("boot_disk_monthly", s.BootDiskMonthly)
	e.close()
}

func (e *hostEncoder) runtime(r *Runtime) {
	e.open()
	e.strOmit("instance_id", r.InstanceID)
	e.strOmit("public_ip", r.PublicIP)
	e.strOmit("private_ip", r.PrivateIP)
	e.strOmit("data_disk", r.DataDisk)
	e.strOmit("data_disk_device", r.DataDiskDevice)
	e.strOmit("dns_name", r.DNSName)
	e.strOmit("ssh_user", r.SSHUser)
	e.strOmit("ssh_host", r.SSHHost)
	e.intOmit("ssh_port", r.SSHPort)
	e.strOmit("ssh_host_key", r.SSHHostKey)
	if len(r.Meta) > 0 {
		e.key("meta")
		e.open()
		keys := make([]string, 0, len(r.Meta))
		for k := range r.Meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			e.str(k, r.Meta[k])
		}
		e.close()
	}
	e.close()
}

// hostEncoder writes one JSON object tree; first tracks, per open object,
// whether a member was written yet.
type hostEncoder struct {
	b              []byte
	prefix, indent string
	first          []bool
	err            error
}

func (e *hostEncoder) newline() {
	if e.indent == "" {
		return
	}
	e.b = append(e.b, '\n')
	e.b = append(e.b, e.prefix...)
	for range e.first {
		e.b = append(e.b, e.indent...)
	}
}

func (e *hostEncoder) open() {
	e.b = append(e.b, '{')
	e.first = append(e.first, true)
}

func (e *hostEncoder) close() {
	empty := e.first[len(e.first)-1]
	e.first = e.first[:len(e.first)-1]
	if !empty {
		e.newline()
	}
	e.b = append(e.b, '}')
}

func (e *hostEncoder) key(k string) {
	if e.first[len(e.first)-1] {
		e.first[len(e.first)-1] = false
	} else {
		e.b = append(e.b, ',')
	}
	e.newline()
	e.b = appendJSONString(e.b, k)
	e.b = append(e.b, ':')
	if e.indent != "" {
		e.b = append(e.b, ' ')
	}
}

func (e *hostEncoder) str(k, v string) {
	e.key(k)
	e.b = appendJSONString(e.b, v)
}

func (e *hostEncoder) strOmit(k, v string) {
	if v != "" {
		e.str(k, v)
	}
}

func (e *hostEncoder) int(k string, v int) {
	e.key(k)
	e.b = strconv.AppendInt(e.b, int64(v), 10)
}

func (e *hostEncoder) intOmit(k string, v int) {
	if v != 0 {
		e.int(k, v)
	}
}

func (e *hostEncoder) boolOmit(k string, v bool) {
	if v {
		e.key(k)
		e.b = append(e.b, "true"...)
	}
}

func (e *hostEncoder) floatOmit(k string, v float64) {
	if v != 0 {
		e.float(k, v)
	}
}

// float writes v as encoding/json does (which refuses NaN and ±Inf).
func (e *hostEncoder) float(k string, v float64) {
	e.key(k)
	if math.IsInf(v, 0) || math.IsNaN(v) {
		if _, err := json.Marshal(v); e.err == nil {
			e.err = err
		}
		return
	}
	f := byte('f')
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		f = 'e'
	}
	e.b = strconv.AppendFloat(e.b, v, f, -1, 64)
	if f == 'e' { // e-09 to e-9, as encoding/json
		if n := len(e.b); n >= 4 && e.b[n-4] == 'e' && e.b[n-3] == '-' && e.b[n-2] == '0' {
			e.b[n-2] = e.b[n-1]
			e.b = e.b[:n-1]
		}
	}
}

func (e *hostEncoder) time(k string, t time.Time) {
	e.key(k)
	b, err := t.MarshalJSON()
	if err != nil && e.err == nil {
		e.err = err
	}
	e.b = append(e.b, b...)
}

// appendJSONString appends s quoted as encoding/json quotes it: plain
// ASCII as it is, anything else (escapes, HTML characters, non-ASCII)
// through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
