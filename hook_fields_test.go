package hookctl

import (
	"reflect"
	"testing"
	"time"
)

// TestAttributeChangesCoversEveryField fails when a field is added to Hook
// (or Key) and AttributeChanges does not compare it: plans, the dispatcher
// and diff output would then miss that a hook changed.
func TestAttributeChangesCoversEveryField(t *testing.T) {
	bookkeeping := map[string]bool{"Source": true, "Created": true, "Quarantined": true}
	base := Hook{Key: Key{Profile: "p", Service: "s", Node: "n", Type: TypeExec, Arg: "/a"}}
	for _, path := range fieldPaths(reflect.TypeOf(base), nil) {
		name := reflect.TypeOf(base).FieldByIndex(path).Name
		if bookkeeping[name] {
			continue
		}
		changed := base
		setNonZero(t, reflect.ValueOf(&changed).Elem().FieldByIndex(path))
		if len(base.AttributeChanges(changed)) == 0 || base.SameAttributes(changed) {
			t.Errorf("field %s: a change is not seen by AttributeChanges/SameAttributes", name)
		}
	}
}

// fieldPaths lists the index paths of every leaf field, descending into
// the embedded Key.
func fieldPaths(t reflect.Type, prefix []int) [][]int {
	var out [][]int
	for i := range t.NumField() {
		f := t.Field(i)
		p := append(append([]int(nil), prefix...), i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, fieldPaths(f.Type, p)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func setNonZero(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + int64(7*time.Second))
	case reflect.Slice:
		e := reflect.New(v.Type().Elem()).Elem()
		if e.Kind() == reflect.String {
			e.SetString(string(EventDelete))
		}
		v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), e))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		m.SetMapIndex(reflect.ValueOf("X-A"), reflect.ValueOf("b"))
		v.Set(m)
	default:
		t.Fatalf("field kind %s: teach setNonZero about it", v.Kind())
	}
}
