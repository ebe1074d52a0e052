package controller

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// openAPIDocument renders the route table as an OpenAPI 3.1 document.
// Schemas are derived from the Go types by reflection, so the document
// describes what the server really sends.
func openAPIDocument(routes []route) ([]byte, error) {
	g := &schemaGen{defs: map[string]any{}}
	paths := map[string]map[string]any{}
	param := regexp.MustCompile(`\{([a-z]+)\}`)
	for _, rt := range routes {
		op := map[string]any{
			"summary":     rt.summary,
			"operationId": strings.ToLower(rt.method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_").Replace(rt.pattern),
		}
		if rt.access == public || rt.access == probe {
			op["security"] = []any{}
		}
		var params []any
		for _, m := range param.FindAllStringSubmatch(rt.pattern, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]string{"type": "string"}})
		}
		if rt.method == "GET" && pagedRoutes[rt.pattern] {
			params = append(params,
				map[string]any{"name": "limit", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": 500}},
				map[string]any{"name": "after", "in": "query", "description": "the 'next' cursor of the previous page", "schema": map[string]string{"type": "string"}})
		}
		if rt.method == "GET" && rt.in != nil {
			params = append(params, g.queryParams(reflect.TypeOf(rt.in))...)
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.in != nil && rt.method != "GET" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(rt.in))}}}
		}
		ok := map[string]any{"description": "success"}
		if st, isStream := rt.out.(streamed); isStream {
			ok["description"] = "a stream of JSON values as the schema says, one per line, each flushed as it comes; a stream that fails after it began ends with an {\"error\": {\"code\", \"message\"}} line"
			ok["content"] = map[string]any{"application/x-ndjson": map[string]any{"schema": g.schema(st.streamItem())}}
		} else if rt.out != nil && rt.status != 204 {
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(rt.out))}}
		}
		op["responses"] = map[string]any{
			itoa(rt.status): ok,
			"default":       map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": map[string]string{"$ref": "#/components/schemas/Error"}}}},
		}
		if paths[rt.pattern] == nil {
			paths[rt.pattern] = map[string]any{}
		}
		paths[rt.pattern][strings.ToLower(rt.method)] = op
	}
	g.defs["Error"] = g.schema(reflect.TypeOf(errorBody{}))
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "Pier API",
			"version":     "1",
			"description": "Pier's REST API. Errors are {\"error\":{\"code\",\"message\"}}; lists are {\"items\",\"next\"}.",
		},
		"paths":      paths,
		"security":   []any{map[string]any{"bearer": []any{}}},
		"components": map[string]any{"schemas": g.defs, "securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}}},
	}
	return json.MarshalIndent(doc, "", "  ")
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

type schemaGen struct{ defs map[string]any }

// queryParams documents the query parameters of a GET route: the fields of
// t tagged `query:"name"`, described by their `doc` tag (see decodeQuery).
func (g *schemaGen) queryParams(t reflect.Type) []any {
	var params []any
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("query")
		if name == "" {
			continue
		}
		p := map[string]any{"name": name, "in": "query", "schema": g.schema(f.Type)}
		if doc := f.Tag.Get("doc"); doc != "" {
			p["description"] = doc
		}
		params = append(params, p)
	}
	return params
}

var timeType = reflect.TypeOf(time.Time{})

func (g *schemaGen) schema(t reflect.Type) any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return map[string]string{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.String:
		return map[string]string{"type": "string"}
	case t.Kind() == reflect.Bool:
		return map[string]string{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return map[string]string{"type": "integer"}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return map[string]string{"type": "number"}
	case t.Kind() == reflect.Slice:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case t.Kind() == reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case t.Kind() == reflect.Interface:
		return map[string]any{}
	case t.Kind() == reflect.Struct:
		name := schemaName(t)
		if name != "" {
			if _, done := g.defs[name]; !done {
				g.defs[name] = nil // break cycles
				g.defs[name] = g.object(t)
			}
			return map[string]string{"$ref": "#/components/schemas/" + name}
		}
		return g.object(t)
	}
	return map[string]any{}
}

func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = g.schema(f.Type)
			if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
				required = append(required, name)
			}
		}
	}
	walk(t)
	o := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

// schemaName names exported domain types; request types stay inline.
func schemaName(t reflect.Type) string {
	n := t.Name()
	if n == "" || strings.ToLower(n[:1]) == n[:1] {
		return ""
	}
	n = strings.NewReplacer("[", "Of", "]", "", "github.com/pierpaas/pier.", "").Replace(n)
	return n
}
