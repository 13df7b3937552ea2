package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"hookctl.dev/hookctl/internal/suggest"
)

// decodeFile decodes a config file's YAML into c and returns every problem
// at once, each as "FILE:LINE:COL: FIELD: MESSAGE" like hooks files: unknown
// fields with a suggestion, then values of the wrong type.
func decodeFile(path string, data []byte, c *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, cleanYAMLError(err))
	}
	if doc.Kind == 0 {
		return nil // an empty file is an empty config
	}
	var errs []error
	unknownFields(path, &doc, reflect.TypeOf(*c), "", &errs)
	decodeFields(path, &doc, reflect.ValueOf(c).Elem(), &errs)
	return errors.Join(errs...)
}

// decodeFields decodes each top-level field on its own, so that one bad
// value does not hide the next (yaml.v3 stops at a value's own error).
func decodeFields(path string, doc *yaml.Node, v reflect.Value, errs *[]error) {
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		*errs = append(*errs, fmt.Errorf("%s:%d:%d: a config file must be a mapping", path, root.Line, root.Column))
		return
	}
	index := make(map[string]int, v.NumField())
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		index[name] = i
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		f, ok := index[root.Content[i].Value]
		if !ok {
			continue // reported by unknownFields
		}
		err := root.Content[i+1].Decode(v.Field(f).Addr().Interface())
		var te *yaml.TypeError
		switch {
		case err == nil:
		case errors.As(err, &te):
			for _, msg := range te.Errors {
				*errs = append(*errs, typeError(path, msg))
			}
		default: // a value's own check (durations)
			*errs = append(*errs, typeError(path, strings.TrimPrefix(err.Error(), "yaml: ")))
		}
	}
}

// unknownFields reports the keys of n that t (a struct, or a map of
// structs) has no field for.
func unknownFields(path string, n *yaml.Node, t reflect.Type, prefix string, errs *[]error) {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	if t.Kind() == reflect.Map && t.Key().Kind() == reflect.String {
		for i := 0; i+1 < len(n.Content); i += 2 {
			unknownFields(path, n.Content[i+1], t.Elem(), join(prefix, n.Content[i].Value), errs)
		}
		return
	}
	if t.Kind() != reflect.Struct {
		return
	}
	fields := yamlFields(t)
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		ft, ok := fields[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := suggest.Closest(k.Value, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			*errs = append(*errs, fmt.Errorf("%s:%d:%d: %s: %s", path, k.Line, k.Column, join(prefix, k.Value), msg))
			continue
		}
		unknownFields(path, n.Content[i+1], ft, join(prefix, k.Value), errs)
	}
}

// yamlFields maps t's YAML field names to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" && f.IsExported() {
			out[name] = f.Type
		}
	}
	return out
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

var typeErrorRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// typeError turns yaml.v3's "line 6: cannot unmarshal !!str `x` into
// int" into "FILE:6: …", without Go type names.
func typeError(path, msg string) error {
	m := typeErrorRE.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s: %s", path, msg)
	}
	line, _ := strconv.Atoi(m[1])
	text := regexp.MustCompile(` into [\w.\[\]*]+`).ReplaceAllString(m[2], "")
	text = strings.TrimPrefix(text, "invalid: ")
	return fmt.Errorf("%s:%d: %s", path, line, text)
}
