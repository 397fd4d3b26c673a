package model

import (
	"encoding/json"
	"strconv"
)

// DecodeHostSpec decodes b, a host's stored spec, into s as json.Unmarshal
// does into a zero HostSpec. The JSON the store writes (compact, known
// members, plain ASCII strings) is read without reflection; anything else
// (escapes, non-ASCII, null, unknown or differently cased members, errors)
// goes to json.Unmarshal. Listings of thousands of hosts spent a fifth of
// their time in json.Unmarshal. TestDecodeHost checks it against
// json.Unmarshal and that every field takes the quick way.
func DecodeHostSpec(b []byte, s *HostSpec) error {
	*s = HostSpec{}
	if d := (jsonDecoder{b: b}); d.whole(func(k []byte) bool { return d.spec(k, s) }) {
		return nil
	}
	*s = HostSpec{}
	return json.Unmarshal(b, s)
}

// DecodeRuntime decodes b, a host's stored runtime, into r as
// json.Unmarshal does into a zero Runtime (see DecodeHostSpec).
func DecodeRuntime(b []byte, r *Runtime) error {
	*r = Runtime{}
	if d := (jsonDecoder{b: b}); d.whole(func(k []byte) bool { return d.runtime(k, r) }) {
		return nil
	}
	*r = Runtime{}
	return json.Unmarshal(b, r)
}

func (d *jsonDecoder) spec(k []byte, s *HostSpec) bool {
	switch string(k) {
	case "machine_type":
		return d.str(&s.MachineType)
	case "cpus":
		return d.int(&s.CPUs)
	case "memory_gib":
		return d.int(&s.MemoryGiB)
	case "gpu_model":
		return d.str(&s.GPUModel)
	case "gpu_count":
		return d.int(&s.GPUCount)
	case "disk_gb":
		return d.int(&s.DiskGB)
	case "image":
		return d.str(&s.Image)
	case "spot":
		return d.bool(&s.Spot)
	case "address":
		return d.str(&s.Address)
	case "reverse":
		return d.bool(&s.Reverse)
	case "data_disk_device":
		return d.str(&s.DataDiskDevice)
	case "disk_price_gb_month":
		return d.float(&s.DiskPricePerGBMonth)
	case "disk_price_source":
		return d.str(&s.DiskPriceSource)
	case "boot_disk_monthly":
		return d.float(&s.BootDiskMonthly)
	}
	return false
}

func (d *jsonDecoder) runtime(k []byte, r *Runtime) bool {
	switch string(k) {
	case "instance_id":
		return d.str(&r.InstanceID)
	case "public_ip":
		return d.str(&r.PublicIP)
	case "private_ip":
		return d.str(&r.PrivateIP)
	case "data_disk":
		return d.str(&r.DataDisk)
	case "data_disk_device":
		return d.str(&r.DataDiskDevice)
	case "dns_name":
		return d.str(&r.DNSName)
	case "ssh_user":
		return d.str(&r.SSHUser)
	case "ssh_host":
		return d.str(&r.SSHHost)
	case "ssh_port":
		return d.int(&r.SSHPort)
	case "ssh_host_key":
		return d.str(&r.SSHHostKey)
	case "meta":
		if r.Meta == nil { // a second "meta" adds to the first, as json.Unmarshal does
			r.Meta = map[string]string{}
		}
		return d.object(func(k []byte) bool {
			v, ok := d.plain()
			if ok {
				r.Meta[string(k)] = string(v)
			}
			return ok
		})
	}
	return false
}

// jsonDecoder reads the plain JSON of DecodeHostSpec; each method reports
// false at anything it does not read exactly as encoding/json would.
type jsonDecoder struct {
	b []byte
	i int
}

// whole reads b as one object, member reading each member's value.
func (d *jsonDecoder) whole(member func(key []byte) bool) bool {
	if !d.object(member) {
		return false
	}
	d.space()
	return d.i == len(d.b)
}

func (d *jsonDecoder) object(member func(key []byte) bool) bool {
	d.space()
	if !d.byte('{') {
		return false
	}
	d.space()
	if d.byte('}') {
		return true
	}
	for {
		d.space()
		k, ok := d.plain()
		if !ok {
			return false
		}
		d.space()
		if !d.byte(':') {
			return false
		}
		d.space()
		if !member(k) {
			return false
		}
		d.space()
		if d.byte('}') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

func (d *jsonDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) byte(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// plain reads a string of printable ASCII without escapes.
func (d *jsonDecoder) plain() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			return d.b[start : d.i-1], true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

func (d *jsonDecoder) str(s *string) bool {
	v, ok := d.plain()
	if ok {
		*s = string(v)
	}
	return ok
}

func (d *jsonDecoder) bool(v *bool) bool {
	rest := d.b[d.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*v = true
		d.i += 4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*v = false
		d.i += 5
	default:
		return false
	}
	return d.end()
}

// end reports whether a literal ends where it should (not "truex", "12a").
func (d *jsonDecoder) end() bool {
	if d.i == len(d.b) {
		return true
	}
	switch d.b[d.i] {
	case ' ', '\t', '\n', '\r', ',', '}':
		return true
	}
	return false
}

// digits reads [0-9]* and returns how many.
func (d *jsonDecoder) digits() int {
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i - start
}

// int reads an integer of at most 18 digits (no fraction or exponent,
// which json.Unmarshal refuses for an int).
func (d *jsonDecoder) int(v *int) bool {
	neg := d.byte('-')
	n := d.digits()
	if n == 0 || n > 18 || (n > 1 && d.b[d.i-n] == '0') || !d.end() {
		return false
	}
	x := 0
	for _, c := range d.b[d.i-n : d.i] {
		x = x*10 + int(c-'0')
	}
	if neg {
		x = -x
	}
	*v = x
	return true
}

// float reads a JSON number as encoding/json does (strconv.ParseFloat of
// the literal).
func (d *jsonDecoder) float(v *float64) bool {
	start := d.i
	d.byte('-')
	n := d.digits()
	if n == 0 || (n > 1 && d.b[d.i-n] == '0') {
		return false
	}
	if d.byte('.') && d.digits() == 0 {
		return false
	}
	if d.byte('e') || d.byte('E') {
		if !d.byte('+') {
			d.byte('-')
		}
		if d.digits() == 0 {
			return false
		}
	}
	if !d.end() {
		return false
	}
	f, err := strconv.ParseFloat(string(d.b[start:d.i]), 64)
	if err != nil {
		return false
	}
	*v = f
	return true
}
