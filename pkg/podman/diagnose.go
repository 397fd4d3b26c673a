package podman

import (
	"errors"
	"strings"
)

// Why a container did not start, when retrying cannot help.
const (
	// ProblemPermission: the OCI runtime may not apply the container's
	// settings on this machine (rlimits above the hard limit, a cgroup
	// it cannot write).
	ProblemPermission = "permission"
	// ProblemImage: the image is missing or not usable.
	ProblemImage = "image"
	// ProblemLimits: the limits asked for are outside what this machine
	// offers (more CPUs than it has, memory below podman's minimum).
	ProblemLimits = "limits"
)

// Diagnosis is a failed `podman run` that will fail the same way again,
// with the fix.
type Diagnosis struct {
	Problem string
	Fix     string
}

// diagnoses map podman's and the OCI runtimes' messages (lower case) to
// problems. The first match wins.
var diagnoses = []struct {
	match   []string
	problem string
	fix     string
}{
	{[]string{"error setting rlimit", "setrlimit"}, ProblemPermission,
		"the container's ulimits exceed this machine's hard limits; restart the host's agent (it probes settings that work) or fix providers.local.containers_conf"},
	{[]string{"operation not permitted", "permission denied"}, ProblemPermission,
		"the container runtime is not allowed to apply the container's settings here; check the podman line of `cocalc-hosts show HOST`, or set providers.local.containers_conf"},
	{[]string{"range of cpus is from"}, ProblemLimits,
		"ask for fewer --cpus than the host has"},
	{[]string{"minimum memory limit allowed"}, ProblemLimits,
		"ask for at least 6M of --memory"},
	{[]string{"image not known", "no such image", "manifest unknown", "repository does not exist", "short-name",
		"executable file not found", "attempted to invoke a command that was not found"}, ProblemImage,
		"build the image on the host with `cocalc-hosts image build NAME --host HOST`, or use one that has the command"},
}

// Diagnose says whether err, from Start, is a problem that retrying will
// not mend, and how to mend it.
func Diagnose(err error) (Diagnosis, bool) {
	var pe *Error
	if !errors.As(err, &pe) {
		return Diagnosis{}, false
	}
	msg := strings.ToLower(pe.Msg)
	for _, d := range diagnoses {
		for _, m := range d.match {
			if strings.Contains(msg, m) {
				return Diagnosis{Problem: d.problem, Fix: d.fix}, true
			}
		}
	}
	return Diagnosis{}, false
}
