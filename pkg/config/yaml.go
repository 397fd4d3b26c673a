package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// fileValues are the settings in a config file, by flattened key
// ("worker.lease"), and the provider sections it has (a provider added
// without options has an empty section).
type fileValues struct {
	values   map[string]fileValue
	sections []string
	// errs are keys that hold something other than one value.
	errs []error
}

type fileValue struct {
	raw   string // as written
	value any    // as YAML reads it (a number stays a number)
}

func readFile(path string) (fileValues, error) {
	out := fileValues{values: map[string]fileValue{}}
	doc, err := readDoc(path)
	if err != nil {
		return out, err
	}
	var walk func(prefix string, m *yaml.Node)
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			name := prefix + strings.ToLower(m.Content[i].Value)
			v := m.Content[i+1]
			if prefix == "providers." && (v.Kind == yaml.MappingNode || v.Tag == "!!null") {
				out.sections = append(out.sections, strings.TrimPrefix(name, prefix))
			}
			switch {
			case v.Kind == yaml.MappingNode:
				walk(name+".", v)
			case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
				// An empty key: nothing set.
			case v.Kind == yaml.ScalarNode:
				var value any
				if err := v.Decode(&value); err != nil {
					value = v.Value
				}
				out.values[name] = fileValue{raw: v.Value, value: value}
			default:
				out.errs = append(out.errs, fmt.Errorf("config %s: give one value, not a list", name))
			}
		}
	}
	walk("", doc.mapping())
	return out, nil
}

// document is a config file as YAML nodes, so that writing one key keeps
// everything else, comments included.
type document struct{ root yaml.Node }

func readDoc(path string) (*document, error) {
	d := &document{}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if err := yaml.Unmarshal(data, &d.root); err != nil {
		return nil, fmt.Errorf("config file %s: %v; fix or remove it", path, err)
	}
	if d.root.Kind == yaml.DocumentNode && len(d.root.Content) == 1 {
		if top := d.root.Content[0]; top.Kind != yaml.MappingNode && top.Tag != "!!null" {
			return nil, fmt.Errorf("config file %s: not a mapping of settings; fix or remove it", path)
		}
	}
	return d, nil
}

// mapping is the document's top-level mapping, made if missing.
func (d *document) mapping() *yaml.Node {
	if d.root.Kind != yaml.DocumentNode {
		d.root = yaml.Node{Kind: yaml.DocumentNode}
	}
	if len(d.root.Content) == 0 {
		d.root.Content = []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}
	}
	top := d.root.Content[0]
	if top.Kind != yaml.MappingNode {
		*top = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: top.HeadComment}
	}
	return top
}

// section returns the mapping at path, making it (and its parents) if
// missing. An empty key there becomes an empty mapping.
func (d *document) section(path []string) *yaml.Node {
	m := d.mapping()
	for _, name := range path {
		v := lookup(m, name)
		if v == nil {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name},
				&yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"})
			v = m.Content[len(m.Content)-1]
		}
		if v.Kind != yaml.MappingNode {
			// A value where a section belongs; settings keys never are both.
			*v = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", LineComment: v.LineComment, HeadComment: v.HeadComment}
		}
		v.Style &^= yaml.FlowStyle // `sim: {}` grows into a block
		m = v
	}
	return m
}

// set writes value at path, in place when the key exists.
func (d *document) set(path []string, value string) {
	m := d.section(path[:len(path)-1])
	name := path[len(path)-1]
	// Written plain (8, 30s) as a person would; keys are read as written,
	// so only the empty string needs quotes to stay a value.
	tag := ""
	if value == "" {
		tag = "!!str"
	}
	if v := lookup(m, name); v != nil {
		*v = yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value,
			HeadComment: v.HeadComment, LineComment: v.LineComment, FootComment: v.FootComment}
		return
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name},
		&yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value})
}

// lookup returns the value of key name in mapping m (names are
// case-insensitive, as keys are read), or nil.
func lookup(m *yaml.Node, name string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if strings.EqualFold(m.Content[i].Value, name) {
			return m.Content[i+1]
		}
	}
	return nil
}

// write replaces the file at path (mode 0600) with the document, all at
// once: a crash leaves the old file or the new one.
func (d *document) write(path string) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&d.root); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	return nil
}
