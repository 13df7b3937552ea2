package pickle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The .pkl files are made by the real Python pickle module
// (testdata/gen.py), so the decoder is checked against what Python writes.
func readPickle(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodePlainEveryProtocol(t *testing.T) {
	want := &Dict{
		Keys: []Value{"s", "i", "big", "f", "t", "n", "l", "e", "one"},
		Values: []Value{"héllo\n\\u", int64(-5), int64(1 << 40), 1.5, true, nil,
			&List{Items: []Value{int64(1), &List{Items: []Value{int64(2), Tuple{int64(3), "x"}}}}}, Tuple{}, Tuple{int64(1)}},
	}
	for p := range 6 {
		name := "plain-p" + string(rune('0'+p)) + ".pkl"
		got, err := Decode(readPickle(t, name), Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

func TestDecodeBytesAndSets(t *testing.T) {
	want := &Dict{Keys: []Value{"b", "set", "fs"}, Values: []Value{[]byte{0, 0xff}, &Set{Items: []Value{int64(1)}}, &Set{Items: []Value{}}}}
	for _, name := range []string{"binary-p4.pkl", "binary-p5.pkl"} {
		got, err := Decode(readPickle(t, name), Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

// Libervia's stored value: a list of dicts whose service is a twisted JID
// (protocol 0, as Libervia writes it; protocol 2's NEWOBJ form too).
func TestDecodeLiberviaHooks(t *testing.T) {
	want := &List{Items: []Value{
		&Dict{Keys: []Value{"service", "type", "arg"}, Values: []Value{JID{User: "alice", Host: "localhost"}, "python_file", "/h/a.py"}},
		&Dict{Keys: []Value{"service", "type", "arg"}, Values: []Value{JID{Host: "pubsub.localhost"}, "python_code", "print(item)"}},
	}}
	for _, name := range []string{"hooks-p0.pkl", "hooks-p2.pkl"} {
		got, err := Decode(readPickle(t, name), Options{AllowJID: true})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
		// Without AllowJID the JID's GLOBAL is refused like any other.
		if _, err := Decode(readPickle(t, name), Options{}); !errors.Is(err, ErrRefused) {
			t.Errorf("%s without AllowJID: %v, want ErrRefused", name, err)
		}
	}
}

// A pickle whose __reduce__ is os.system: refused, with the global named,
// and nothing runs (the decoder never imports or calls; the file the
// command would make does not appear).
func TestDecodeRefusesCode(t *testing.T) {
	names := []string{"evil-p0.pkl", "evil-p2.pkl", "evil-p4.pkl"}
	data := make(map[string][]byte)
	for _, name := range names {
		data[name] = readPickle(t, name)
	}
	dir := t.TempDir()
	t.Chdir(dir) // where `touch pwned` would write
	for _, name := range names {
		for _, opts := range []Options{{}, {AllowJID: true}} {
			_, err := Decode(data[name], opts)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("%s: %v, want ErrRefused", name, err)
			}
			if !strings.Contains(err.Error(), "system") {
				t.Errorf("%s: error %q does not name the global", name, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatal("the pickle's command ran")
	}
}

func TestDecodeRefusals(t *testing.T) {
	deep := strings.Repeat("(", MaxMarks+1)
	nested := strings.Repeat("]", 201) + strings.Repeat("a", 200) + "."
	// Each list holds the previous one twice: 2^60 paths in 1 KiB.
	shared := "]p0\n0"
	for i := range 60 {
		shared += fmt.Sprintf("(g%d\ng%d\nlp%d\n0", i, i, i+1)
	}
	shared += "g60\n."
	for _, tc := range []struct {
		name, in string
		want     error
		msg      string
	}{
		{"empty", "", ErrMalformed, "no STOP"},
		{"truncated", "(lp0\n", ErrMalformed, "no STOP"},
		{"inst", "(i__builtin__\nlist\n.", ErrRefused, "INST"},
		{"obj", "(o.", ErrRefused, "OBJ"},
		{"global builtins eval", "cbuiltins\neval\n.", ErrRefused, "builtins.eval"},
		{"reduce of a tuple", ")(tR.", ErrRefused, "REDUCE"},
		{"build on a list", "]}b.", ErrRefused, "BUILD"},
		{"stack global", "\x80\x04\x93.", ErrRefused, "STACK_GLOBAL"},
		{"persid", "P1\n.", ErrRefused, "PERSID"},
		{"unknown opcode", "\xff.", ErrMalformed, "unknown opcode"},
		{"deep marks", deep, ErrMalformed, "nested marks"},
		{"huge length", "\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f.", ErrMalformed, "length"},
		{"bad utf8", "X\x02\x00\x00\x00\xff\xfe.", ErrMalformed, "UTF-8"},
		{"list as dict key", "(]I1\nd.", ErrMalformed, "dict key"},
		{"memo before write", "g7\n.", ErrMalformed, "memo 7"},
		{"two results", "NN.", ErrMalformed, "STOP with 2"},
		{"huge int", "I" + strings.Repeat("9", 40) + "\n.", ErrMalformed, "64-bit"},
		{"protocol 9", "\x80\x09N.", ErrMalformed, "protocol 9"},
		{"append to int", "I1\nNa.", ErrMalformed, "on a int"},
	} {
		_, err := Decode([]byte(tc.in), Options{AllowJID: true})
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v containing %q", tc.name, err, tc.want, tc.msg)
		}
	}
	// Nesting and sharing decode (no recursion while decoding) and are
	// refused by Depth, which bounds every walk of the result.
	for name, in := range map[string]string{"nested": nested, "shared": shared} {
		v, err := Decode([]byte(in), Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := Depth(v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Depth = %v, want ErrMalformed", name, err)
		}
	}
	// A list that contains itself.
	v, err := Decode([]byte("(lp0\ng0\na."), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Depth(v); err == nil {
		t.Error("Depth of a cycle: no error")
	}
	if _, err := Decode(make([]byte, MaxSize+1), Options{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("over MaxSize: %v", err)
	}
}

func TestJIDString(t *testing.T) {
	for j, want := range map[JID]string{
		{Host: "h"}: "h", {User: "u", Host: "h"}: "u@h", {User: "u", Host: "h", Resource: "r"}: "u@h/r",
	} {
		if got := j.String(); got != want {
			t.Errorf("%#v: %q, want %q", j, got, want)
		}
	}
}
