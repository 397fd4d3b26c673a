// Package deploy holds example deployments of cocalc-hosts; its test
// checks that they say what the program expects.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// object is what the test reads of a Kubernetes object.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string
	Metadata   struct{ Name string }
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas *int
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct{ Labels map[string]string }
			Spec     struct {
				Containers []container
				Volumes    []struct {
					Name   string
					Secret *struct {
						SecretName string `yaml:"secretName"`
					}
				}
			}
		}
		// A Service's.
		Ports []struct {
			Name       string
			Port       int
			TargetPort string `yaml:"targetPort"`
		}
	}
}

type container struct {
	Name  string
	Args  []string
	Env   []struct{ Name, Value string }
	Ports []struct {
		Name          string
		ContainerPort int `yaml:"containerPort"`
	}
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet struct{ Path, Port, Scheme string } `yaml:"httpGet"`
}

func TestKubernetesManifests(t *testing.T) {
	f, err := os.Open("kubernetes/cocalc-hosts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	byKind := map[string][]object{}
	for {
		var o object
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	secrets := map[string]object{}
	for _, s := range byKind["Secret"] {
		secrets[s.Metadata.Name] = s
	}
	if c := secrets["cocalc-hosts-config"].StringData["config.yaml"]; !strings.Contains(c, "db: postgres://") {
		t.Errorf("the config Secret does not give the database: %q", c)
	}
	var serve *container
	for _, d := range byKind["Deployment"] {
		if d.APIVersion != "apps/v1" || d.Spec.Replicas == nil {
			t.Errorf("deployment %s: apiVersion %q, replicas %v", d.Metadata.Name, d.APIVersion, d.Spec.Replicas)
		}
		for k, v := range d.Spec.Selector.MatchLabels {
			if d.Spec.Template.Metadata.Labels[k] != v {
				t.Errorf("deployment %s: its selector does not match its pods", d.Metadata.Name)
			}
		}
		vols := map[string]bool{}
		for _, v := range d.Spec.Template.Spec.Volumes {
			vols[v.Name] = true
			if v.Secret != nil && secrets[v.Secret.SecretName].Kind == "" {
				t.Errorf("deployment %s mounts Secret %s, which is not there", d.Metadata.Name, v.Secret.SecretName)
			}
		}
		for i, c := range d.Spec.Template.Spec.Containers {
			for _, m := range c.VolumeMounts {
				if !vols[m.Name] {
					t.Errorf("container %s mounts volume %s, which its pod does not have", c.Name, m.Name)
				}
			}
			if !slices.Contains(c.Args, "--config") {
				t.Errorf("container %s: no --config", c.Name)
			}
			for _, e := range c.Env {
				if strings.Contains(e.Value, "postgres://") || strings.Contains(strings.ToLower(e.Name), "key") {
					t.Errorf("container %s: a secret in its environment (%s)", c.Name, e.Name)
				}
			}
			if slices.Contains(c.Args, "serve") {
				serve = &d.Spec.Template.Spec.Containers[i]
			}
		}
	}
	if serve == nil {
		t.Fatal("no Deployment runs `cocalc-hosts serve`")
	}
	for _, flag := range []string{"--listen", "--tls-cert", "--tls-key"} {
		if !slices.Contains(serve.Args, flag) {
			t.Errorf("serve has no %s: without TLS it listens only on loopback", flag)
		}
	}
	if serve.LivenessProbe == nil || serve.LivenessProbe.HTTPGet.Path != "/healthz" ||
		serve.ReadinessProbe == nil || serve.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("serve's probes are not /healthz and /readyz")
	}
	if len(serve.Ports) != 1 {
		t.Fatalf("serve has %d ports", len(serve.Ports))
	}
	svcs := byKind["Service"]
	if len(svcs) != 1 {
		t.Fatalf("%d Services", len(svcs))
	}
	svc := svcs[0]
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != serve.Ports[0].Name {
		t.Errorf("the Service does not send to serve's port %q", serve.Ports[0].Name)
	}
}

func TestSystemdUnits(t *testing.T) {
	for file, verb := range map[string]string{"systemd/cocalc-hosts-serve.service": "serve", "systemd/cocalc-hosts-worker.service": "worker"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
				keys[k] = v
			}
		}
		exec := strings.Fields(keys["ExecStart"])
		if len(exec) == 0 || !slices.Contains(exec, verb) || !slices.Contains(exec, "--config") {
			t.Errorf("%s: ExecStart %q does not run `cocalc-hosts --config … %s`", file, keys["ExecStart"], verb)
		}
		if keys["KillSignal"] != "SIGTERM" || keys["User"] == "" || keys["WantedBy"] != "multi-user.target" {
			t.Errorf("%s: KillSignal %q, User %q, WantedBy %q", file, keys["KillSignal"], keys["User"], keys["WantedBy"])
		}
	}
}
