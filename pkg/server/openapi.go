package server

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
)

// The API document is openapi.json (the prose: summaries, parameters,
// errors) with the shapes of the bodies and answers added from the Go
// types each route declares (in, out), so that they cannot drift from
// what the server decodes and answers. The server's tests check every
// exchange of the client's contract suite against the document served.

// typeOf names a route's body or answer type.
func typeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

var openapiOnce struct {
	sync.Once
	doc []byte
	err error
}

// openapiServed is the document the server serves, built once.
func openapiServed() ([]byte, error) {
	openapiOnce.Do(func() { openapiOnce.doc, openapiOnce.err = buildOpenAPI(openapiDoc, (&Server{}).routes()) })
	return openapiOnce.doc, openapiOnce.err
}

func buildOpenAPI(prose []byte, routes []route) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(prose, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	g := &schemaGen{defs: map[string]any{}, names: map[reflect.Type]string{}}
	paths, _ := doc["paths"].(map[string]any)
	for _, rt := range routes {
		item, _ := paths[rt.path].(map[string]any)
		op, _ := item[strings.ToLower(rt.method)].(map[string]any)
		if op == nil {
			return nil, fmt.Errorf("openapi.json does not document %s %s", rt.method, rt.path)
		}
		delete(op, "requestBody")
		if rt.in != nil {
			op["requestBody"] = map[string]any{"required": false, "content": jsonContent(g.schema(rt.in))}
		}
		if rt.out != nil {
			resps, _ := op["responses"].(map[string]any)
			ok, _ := resps["200"].(map[string]any)
			if ok == nil {
				return nil, fmt.Errorf("openapi.json: %s %s has no 200 answer", rt.method, rt.path)
			}
			ok["content"] = jsonContent(g.schema(rt.out))
		}
	}
	comps, _ := doc["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	for name, s := range g.defs {
		schemas[name] = s
	}
	return json.MarshalIndent(doc, "", "  ")
}

func jsonContent(schema any) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": schema}}
}

// schemaGen makes JSON Schemas of Go types as encoding/json encodes
// them; named struct types become components (#/components/schemas/pkg.Name).
type schemaGen struct {
	defs  map[string]any
	names map[reflect.Type]string
}

var (
	timeType          = reflect.TypeFor[time.Time]()
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	switch {
	case t.Kind() == reflect.Pointer:
		// Before the marshalers: *time.Time is a json.Marshaler too.
		return orNull(g.schema(t.Elem()))
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawMessageType, t.Kind() == reflect.Interface:
		return map[string]any{} // any JSON value
	case t.Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(jsonMarshalerType):
		return map[string]any{}
	case t.Implements(textMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType):
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": []any{"string", "null"}, "contentEncoding": "base64"}
		}
		return map[string]any{"type": []any{"array", "null"}, "items": g.schema(t.Elem())}
	case reflect.Array:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": []any{"object", "null"}, "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		return g.structRef(t)
	}
	return map[string]any{}
}

// orNull lets s be null too (a nil pointer).
func orNull(s map[string]any) map[string]any {
	switch typ := s["type"].(type) {
	case string:
		c := make(map[string]any, len(s))
		for k, v := range s {
			c[k] = v
		}
		c["type"] = []any{typ, "null"}
		return c
	case []any:
		return s // null already
	}
	if len(s) == 0 {
		return s // any value, null too
	}
	return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
}

// structRef is a reference to t's component, made on first use; an
// anonymous struct is written out in place.
func (g *schemaGen) structRef(t reflect.Type) map[string]any {
	if t.Name() == "" {
		return g.object(t)
	}
	name, ok := g.names[t]
	if !ok {
		name = componentName(t)
		for n := 2; g.defs[name] != nil; n++ { // two packages, one name
			name = fmt.Sprintf("%s%d", componentName(t), n)
		}
		g.names[t] = name
		g.defs[name] = map[string]any{} // a recursive type refers to itself
		g.defs[name] = g.object(t)
	}
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

func componentName(t reflect.Type) string {
	pkg := t.PkgPath()
	pkg = pkg[strings.LastIndex(pkg, "/")+1:]
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, t.Name())
	if pkg == "" {
		return name
	}
	return pkg + "." + name
}

// object is the schema of a struct's JSON object: its exported fields by
// their JSON names, embedded structs' fields promoted, as encoding/json
// does.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	g.fields(t, props)
	return map[string]any{"type": "object", "properties": props}
}

// fields adds t's fields to props: its own first, then those of the
// structs it embeds (a shallower field hides a deeper one of its name).
func (g *schemaGen) fields(t reflect.Type, props map[string]any) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, seen := props[name]; seen {
			continue // the shallower field wins
		}
		s := g.schema(ft)
		if strings.Contains(","+opts+",", ",string,") {
			s = map[string]any{"type": "string"}
		}
		props[name] = s
	}
	for _, e := range embedded {
		g.fields(e, props)
	}
}
