// Package pickle decodes Python pickles that hold plain data, without ever
// running Python or calling anything the pickle names.
//
// A pickle is a program for a stack machine: its GLOBAL, REDUCE, BUILD,
// INST, OBJ and NEWOBJ opcodes import a name and call it, which is how a
// hostile pickle runs os.system. This decoder is not Python: it builds Go
// values for the plain opcodes (None, bools, ints, floats, str, bytes,
// lists, tuples, dicts, sets) and refuses every opcode that imports or
// calls something, with an error naming the opcode and the global, with
// one exception that Libervia needs: a JID (twisted.words.protocols.jabber.jid.JID)
// pickled by copy_reg._reconstructor or NEWOBJ with a dict state becomes
// a JID value, never an object (see Options.AllowJID).
//
// Input is bounded before and while it is decoded: its size, the number
// of values made, the depth of the mark stack, and integer sizes. Values
// that refer to each other (memo) may form cycles or huge shared trees;
// Walk-style consumers must bound their own depth (see MaxDepth).
package pickle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrRefused is wrapped by errors about a pickle that imports or calls
// something, or uses a feature plain data does not need.
var ErrRefused = errors.New("pickle refused")

// ErrMalformed is wrapped by errors about a truncated or invalid pickle,
// or one over a limit.
var ErrMalformed = errors.New("malformed pickle")

// Limits bound what one pickle may cost.
const (
	// MaxSize is the largest pickle decoded (1 MiB): Libervia's hooks of
	// one node are a few hundred bytes each.
	MaxSize = 1 << 20
	// MaxValues bounds the values one pickle makes (each opcode pushes at
	// most one).
	MaxValues = 100_000
	// MaxMarks bounds nested MARKs (open tuples, lists and dicts).
	MaxMarks = 256
	// MaxDepth is how deep consumers should let a walk of the result go:
	// shared or cyclic values (memo) are not copied, so a walk must be
	// bounded. Depth checks the same bound.
	MaxDepth = 64
)

// Value is a decoded value: nil (None), bool, int64, float64, string,
// []byte, *List, Tuple, *Dict, *Set or JID.
type Value = any

// List is a Python list (a pointer: later APPENDs and memo references
// see the same list).
type List struct{ Items []Value }

// Tuple is a Python tuple.
type Tuple []Value

// Dict is a Python dict, keys in insertion order.
type Dict struct {
	Keys   []Value
	Values []Value
}

// Get returns the value of the string key k.
func (d *Dict) Get(k string) (Value, bool) {
	for i, key := range d.Keys {
		if s, ok := key.(string); ok && s == k {
			return d.Values[i], true
		}
	}
	return nil, false
}

// Set is a Python set or frozenset.
type Set struct{ Items []Value }

// JID is a twisted JID as pickled: its user, host and resource parts
// ("" when None).
type JID struct{ User, Host, Resource string }

// String renders the JID as user@host/resource.
func (j JID) String() string {
	s := j.Host
	if j.User != "" {
		s = j.User + "@" + s
	}
	if j.Resource != "" {
		s += "/" + j.Resource
	}
	return s
}

// Options say which non-plain values a pickle may hold.
type Options struct {
	// AllowJID accepts twisted JIDs (see the package doc) as JID values.
	AllowJID bool
}

// The globals a JID pickle names. They are compared as text; nothing is
// imported or called.
const (
	jidClass       = "twisted.words.protocols.jabber.jid JID"
	reconstructor  = "copy_reg _reconstructor"
	reconstructor3 = "copyreg _reconstructor"
	objectClass    = "__builtin__ object"
	objectClass3   = "builtins object"
)

// global is a name a GLOBAL opcode pushed: inert text, never resolved.
type global string

// pendingJID is _reconstructor(JID, object, None) or JID.__new__ before
// its BUILD sets the parts.
type pendingJID struct{}

// mark is the MARK opcode's entry on the stack.
type mark struct{}

// Decode decodes one pickle (protocols 0 to 5) into a Value.
func Decode(data []byte, opts Options) (Value, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(data), MaxSize)
	}
	d := &decoder{data: data, opts: opts, memo: map[int64]Value{}}
	v, err := d.run()
	if err != nil {
		return nil, fmt.Errorf("at byte %d: %w", d.op, err)
	}
	return v, nil
}

type decoder struct {
	data   []byte
	pos    int
	op     int // offset of the current opcode, for errors
	opts   Options
	stack  []Value
	marks  []int
	memo   map[int64]Value
	values int
}

func (d *decoder) run() (Value, error) {
	for {
		if d.pos >= len(d.data) {
			return nil, fmt.Errorf("%w: no STOP opcode (truncated?)", ErrMalformed)
		}
		d.op = d.pos
		code := d.data[d.pos]
		d.pos++
		if code == '.' { // STOP
			if len(d.stack) != 1 || len(d.marks) != 0 {
				return nil, fmt.Errorf("%w: STOP with %d values and %d marks on the stack", ErrMalformed, len(d.stack), len(d.marks))
			}
			return d.finish(d.stack[0])
		}
		if err := d.step(code); err != nil {
			return nil, err
		}
	}
}

// finish refuses a result that still holds an unfinished object.
func (d *decoder) finish(v Value) (Value, error) {
	switch v.(type) {
	case mark, global, pendingJID:
		return nil, fmt.Errorf("%w: the pickle's result is not a value", ErrMalformed)
	}
	return v, nil
}

func (d *decoder) push(v Value) error {
	d.values++
	if d.values > MaxValues {
		return fmt.Errorf("%w: more than %d values", ErrMalformed, MaxValues)
	}
	d.stack = append(d.stack, v)
	return nil
}

func (d *decoder) pop() (Value, error) {
	if len(d.stack) == 0 || (len(d.marks) > 0 && len(d.stack) == d.marks[len(d.marks)-1]) {
		return nil, fmt.Errorf("%w: stack underflow", ErrMalformed)
	}
	v := d.stack[len(d.stack)-1]
	d.stack = d.stack[:len(d.stack)-1]
	return v, nil
}

func (d *decoder) top() (Value, error) {
	if len(d.stack) == 0 || (len(d.marks) > 0 && len(d.stack) == d.marks[len(d.marks)-1]) {
		return nil, fmt.Errorf("%w: stack underflow", ErrMalformed)
	}
	return d.stack[len(d.stack)-1], nil
}

// popMark returns the values pushed since the last MARK and removes them
// and the mark.
func (d *decoder) popMark() ([]Value, error) {
	if len(d.marks) == 0 {
		return nil, fmt.Errorf("%w: no MARK", ErrMalformed)
	}
	m := d.marks[len(d.marks)-1]
	d.marks = d.marks[:len(d.marks)-1]
	items := append(make([]Value, 0, len(d.stack)-m), d.stack[m:]...)
	d.stack = d.stack[:m]
	return items, nil
}

func (d *decoder) read(n int) ([]byte, error) {
	if n < 0 || n > len(d.data)-d.pos {
		return nil, fmt.Errorf("%w: %d bytes wanted, %d left (truncated?)", ErrMalformed, n, len(d.data)-d.pos)
	}
	b := d.data[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

// line reads up to the next newline (protocol 0 arguments).
func (d *decoder) line() (string, error) {
	i := strings.IndexByte(string(d.data[d.pos:]), '\n')
	if i < 0 {
		return "", fmt.Errorf("%w: argument without end of line (truncated?)", ErrMalformed)
	}
	s := string(d.data[d.pos : d.pos+i])
	d.pos += i + 1
	return s, nil
}

func (d *decoder) uint(n int) (uint64, error) {
	b, err := d.read(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

// sized reads a length of n bytes, then that many bytes.
func (d *decoder) sized(n int) ([]byte, error) {
	l, err := d.uint(n)
	if err != nil {
		return nil, err
	}
	if l > uint64(len(d.data)) {
		return nil, fmt.Errorf("%w: a length of %d bytes in a pickle of %d", ErrMalformed, l, len(d.data))
	}
	return d.read(int(l))
}

// refuse is the error of an opcode plain data never needs.
func refuse(name string) error {
	return fmt.Errorf("%w: opcode %s imports or calls Python code (only plain data is read)", ErrRefused, name)
}

func (d *decoder) step(code byte) error {
	switch code {
	case '(': // MARK
		if len(d.marks) >= MaxMarks {
			return fmt.Errorf("%w: more than %d nested marks", ErrMalformed, MaxMarks)
		}
		d.marks = append(d.marks, len(d.stack))
		return nil
	case '0': // POP
		_, err := d.pop()
		return err
	case '1': // POP_MARK
		_, err := d.popMark()
		return err
	case '2': // DUP
		v, err := d.top()
		if err != nil {
			return err
		}
		return d.push(v)
	case 0x80: // PROTO
		v, err := d.uint(1)
		if err == nil && v > 5 {
			err = fmt.Errorf("%w: protocol %d (known: 0 to 5)", ErrMalformed, v)
		}
		return err
	case 0x95: // FRAME: a hint only
		_, err := d.uint(8)
		return err
	}
	if v, ok, err := d.scalar(code); ok || err != nil {
		if err != nil {
			return err
		}
		return d.push(v)
	}
	if ok, err := d.container(code); ok || err != nil {
		return err
	}
	if ok, err := d.memoOp(code); ok || err != nil {
		return err
	}
	return d.object(code)
}

// scalar decodes the opcodes that push one plain value.
func (d *decoder) scalar(code byte) (Value, bool, error) {
	switch code {
	case 'N':
		return nil, true, nil
	case 0x88:
		return true, true, nil
	case 0x89:
		return false, true, nil
	case 'I':
		s, err := d.line()
		if err != nil {
			return nil, true, err
		}
		switch s { // protocol 0 booleans
		case "01":
			return true, true, nil
		case "00":
			return false, true, nil
		}
		v, err := parseInt(s)
		return v, true, err
	case 'L':
		s, err := d.line()
		if err != nil {
			return nil, true, err
		}
		v, err := parseInt(strings.TrimSuffix(s, "L"))
		return v, true, err
	case 'J':
		v, err := d.uint(4)
		return int64(int32(uint32(v))), true, err
	case 'K':
		v, err := d.uint(1)
		return int64(v), true, err
	case 'M':
		v, err := d.uint(2)
		return int64(v), true, err
	case 0x8a, 0x8b: // LONG1, LONG4
		n := 1
		if code == 0x8b {
			n = 4
		}
		b, err := d.sized(n)
		if err != nil {
			return nil, true, err
		}
		v, err := longLE(b)
		return v, true, err
	case 'F':
		s, err := d.line()
		if err != nil {
			return nil, true, err
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, true, fmt.Errorf("%w: bad float %q", ErrMalformed, s)
		}
		return f, true, nil
	case 'G':
		v, err := d.read(8)
		if err != nil {
			return nil, true, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(v)), true, nil
	}
	return d.text(code)
}

// text decodes the string and bytes opcodes.
func (d *decoder) text(code byte) (Value, bool, error) {
	var (
		b   []byte
		err error
	)
	switch code {
	case 'V': // UNICODE, raw-unicode-escape
		s, err := d.line()
		if err != nil {
			return nil, true, err
		}
		v, err := rawUnicodeEscape(s)
		return v, true, err
	case 'S': // STRING (Python 2 str: Libervia loads it as UTF-8 text)
		s, err := d.line()
		if err != nil {
			return nil, true, err
		}
		v, err := pyStringLiteral(s)
		return v, true, err
	case 'X', 0x8c, 0x8d: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
		b, err = d.sized(map[byte]int{'X': 4, 0x8c: 1, 0x8d: 8}[code])
		if err == nil && !utf8.Valid(b) {
			err = fmt.Errorf("%w: a str that is not UTF-8", ErrMalformed)
		}
		return string(b), true, err
	case 'T', 'U': // BINSTRING, SHORT_BINSTRING (Python 2 str, as UTF-8)
		b, err = d.sized(map[byte]int{'T': 4, 'U': 1}[code])
		if err == nil && !utf8.Valid(b) {
			err = fmt.Errorf("%w: a Python 2 str that is not UTF-8", ErrMalformed)
		}
		return string(b), true, err
	case 'B', 'C', 0x8e, 0x96: // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
		b, err = d.sized(map[byte]int{'B': 4, 'C': 1, 0x8e: 8, 0x96: 8}[code])
		return append([]byte(nil), b...), true, err
	}
	return nil, false, nil
}

// container decodes the opcodes that make or fill lists, tuples, dicts
// and sets.
func (d *decoder) container(code byte) (bool, error) {
	switch code {
	case ']':
		return true, d.push(&List{})
	case ')':
		return true, d.push(Tuple{})
	case '}':
		return true, d.push(&Dict{})
	case 0x8f:
		return true, d.push(&Set{})
	case 'l', 't', 'd', 0x91: // LIST, TUPLE, DICT, FROZENSET from a mark
		items, err := d.popMark()
		if err != nil {
			return true, err
		}
		switch code {
		case 'l':
			return true, d.push(&List{Items: items})
		case 't':
			return true, d.push(Tuple(items))
		case 0x91:
			return true, d.push(&Set{Items: items})
		}
		dict := &Dict{}
		if err := dict.add(items); err != nil {
			return true, err
		}
		return true, d.push(dict)
	case 0x85, 0x86, 0x87: // TUPLE1..3
		n := int(code - 0x84)
		if len(d.stack) < n || (len(d.marks) > 0 && len(d.stack)-n < d.marks[len(d.marks)-1]) {
			return true, fmt.Errorf("%w: stack underflow", ErrMalformed)
		}
		t := Tuple(append([]Value(nil), d.stack[len(d.stack)-n:]...))
		d.stack = d.stack[:len(d.stack)-n]
		return true, d.push(t)
	case 'a', 'e', 's', 'u', 0x90: // APPEND, APPENDS, SETITEM, SETITEMS, ADDITEMS
		return true, d.fill(code)
	}
	return false, nil
}

// fill adds the values on the stack to the container below them.
func (d *decoder) fill(code byte) error {
	var items []Value
	var err error
	switch code {
	case 'a':
		var v Value
		v, err = d.pop()
		items = []Value{v}
	case 's':
		var k, v Value
		if v, err = d.pop(); err == nil {
			k, err = d.pop()
		}
		items = []Value{k, v}
	default:
		items, err = d.popMark()
	}
	if err != nil {
		return err
	}
	target, err := d.top()
	if err != nil {
		return err
	}
	for _, it := range items {
		if !plain(it) {
			return fmt.Errorf("%w: a %T in a container", ErrMalformed, it)
		}
	}
	switch t := target.(type) {
	case *List:
		if code == 'a' || code == 'e' {
			t.Items = append(t.Items, items...)
			return nil
		}
	case *Dict:
		if code == 's' || code == 'u' {
			return t.add(items)
		}
	case *Set:
		if code == 0x90 {
			t.Items = append(t.Items, items...)
			return nil
		}
	}
	return fmt.Errorf("%w: opcode %q on a %s", ErrMalformed, code, typeName(target))
}

// add sets the key, value pairs of kv, refusing keys Python could not
// hash (lists, dicts, sets).
func (dict *Dict) add(kv []Value) error {
	if len(kv)%2 != 0 {
		return fmt.Errorf("%w: a dict with a key and no value", ErrMalformed)
	}
	for i := 0; i < len(kv); i += 2 {
		switch kv[i].(type) {
		case *List, *Dict, *Set:
			return fmt.Errorf("%w: a dict key of type %s", ErrMalformed, typeName(kv[i]))
		}
		if !plain(kv[i+1]) {
			return fmt.Errorf("%w: a %T in a dict", ErrMalformed, kv[i+1])
		}
		dict.Keys = append(dict.Keys, kv[i])
		dict.Values = append(dict.Values, kv[i+1])
	}
	return nil
}

// memoOp decodes PUT, GET and their binary forms.
func (d *decoder) memoOp(code byte) (bool, error) {
	var (
		idx int64
		err error
	)
	switch code {
	case 'p', 'g':
		var s string
		if s, err = d.line(); err == nil {
			idx, err = parseInt(s)
		}
	case 'q', 'h':
		var v uint64
		v, err = d.uint(1)
		idx = int64(v)
	case 'r', 'j':
		var v uint64
		v, err = d.uint(4)
		idx = int64(v)
	case 0x94: // MEMOIZE
		idx = int64(len(d.memo))
	default:
		return false, nil
	}
	if err != nil {
		return true, err
	}
	switch code {
	case 'g', 'h', 'j':
		v, ok := d.memo[idx]
		if !ok {
			return true, fmt.Errorf("%w: memo %d read before it is written", ErrMalformed, idx)
		}
		return true, d.push(v)
	}
	v, err := d.top()
	if err != nil {
		return true, err
	}
	if len(d.memo) >= MaxValues {
		return true, fmt.Errorf("%w: more than %d memo entries", ErrMalformed, MaxValues)
	}
	d.memo[idx] = v
	return true, nil
}

// object handles the opcodes that import or call: refused, but for the
// one JID pattern when Options.AllowJID says so.
func (d *decoder) object(code byte) error {
	switch code {
	case 'c': // GLOBAL
		mod, err := d.line()
		if err != nil {
			return err
		}
		name, err := d.line()
		if err != nil {
			return err
		}
		g := mod + " " + name
		if !d.opts.AllowJID || !allowedGlobal(g) {
			return fmt.Errorf("%w: GLOBAL %s.%s: only plain data is read, never code or objects", ErrRefused, mod, name)
		}
		return d.push(global(g))
	case 'R': // REDUCE
		return d.reduce()
	case 0x81: // NEWOBJ
		return d.newobj()
	case 'b': // BUILD
		return d.build()
	case 'i':
		return refuse("INST")
	case 'o':
		return refuse("OBJ")
	case 0x92:
		return refuse("NEWOBJ_EX")
	case 0x93: // STACK_GLOBAL: name the global it would import
		name, _ := d.pop()
		mod, _ := d.pop()
		if ms, ok := mod.(string); ok {
			if ns, ok := name.(string); ok {
				return fmt.Errorf("%w: STACK_GLOBAL %s.%s: only plain data is read, never code or objects", ErrRefused, ms, ns)
			}
		}
		return refuse("STACK_GLOBAL")
	case 'P', 'Q':
		return refuse("PERSID")
	case 0x82, 0x83, 0x84:
		return refuse("EXT")
	case 0x97, 0x98:
		return fmt.Errorf("%w: out-of-band buffers", ErrRefused)
	}
	return fmt.Errorf("%w: unknown opcode 0x%02x", ErrMalformed, code)
}

func allowedGlobal(g string) bool {
	switch g {
	case jidClass, reconstructor, reconstructor3, objectClass, objectClass3:
		return true
	}
	return false
}

// reduce accepts only copy_reg._reconstructor(JID, object, None), the
// form protocol 0 gives a JID; the call is not made.
func (d *decoder) reduce() error {
	args, err := d.pop()
	if err != nil {
		return err
	}
	fn, err := d.pop()
	if err != nil {
		return err
	}
	g, _ := fn.(global)
	t, _ := args.(Tuple)
	if (g == reconstructor || g == reconstructor3) && len(t) == 3 &&
		t[0] == global(jidClass) && (t[1] == global(objectClass) || t[1] == global(objectClass3)) && t[2] == nil {
		return d.push(pendingJID{})
	}
	return fmt.Errorf("%w: REDUCE calls %s: only plain data is read, never code", ErrRefused, describe(fn))
}

// newobj accepts only JID.__new__(JID), protocol 2's form of a JID.
func (d *decoder) newobj() error {
	args, err := d.pop()
	if err != nil {
		return err
	}
	cls, err := d.pop()
	if err != nil {
		return err
	}
	if t, ok := args.(Tuple); ok && len(t) == 0 && cls == global(jidClass) {
		return d.push(pendingJID{})
	}
	return fmt.Errorf("%w: NEWOBJ of %s: only plain data is read, never objects", ErrRefused, describe(cls))
}

// build sets a pending JID's parts from a dict of strings (or None).
func (d *decoder) build() error {
	state, err := d.pop()
	if err != nil {
		return err
	}
	obj, err := d.pop()
	if err != nil {
		return err
	}
	if _, ok := obj.(pendingJID); !ok {
		return fmt.Errorf("%w: BUILD on %s: only plain data is read, never objects", ErrRefused, describe(obj))
	}
	st, ok := state.(*Dict)
	if !ok {
		return fmt.Errorf("%w: a JID's state is a %s, not a dict", ErrMalformed, typeName(state))
	}
	var j JID
	for i, k := range st.Keys {
		var dst *string
		switch k {
		case "user":
			dst = &j.User
		case "host":
			dst = &j.Host
		case "resource":
			dst = &j.Resource
		default:
			return fmt.Errorf("%w: a JID's state has the field %s (want user, host, resource)", ErrMalformed, describe(k))
		}
		switch v := st.Values[i].(type) {
		case nil:
		case string:
			*dst = v
		default:
			return fmt.Errorf("%w: a JID's %s is a %s", ErrMalformed, k, typeName(v))
		}
	}
	if j.Host == "" {
		return fmt.Errorf("%w: a JID without host", ErrMalformed)
	}
	return d.push(j)
}

// plain reports whether v may be held in a container (not a mark, a bare
// global or an unfinished object).
func plain(v Value) bool {
	switch v.(type) {
	case mark, global, pendingJID:
		return false
	}
	return true
}

// describe names a value for messages without printing its content.
func describe(v Value) string {
	switch t := v.(type) {
	case global:
		mod, name, _ := strings.Cut(string(t), " ")
		return mod + "." + name
	case string:
		if len(t) > 40 {
			t = t[:40] + "…"
		}
		return strconv.Quote(t)
	}
	return "a " + typeName(v)
}

// typeName is the Python name of v's type.
func typeName(v Value) string {
	switch v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case *List:
		return "list"
	case Tuple:
		return "tuple"
	case *Dict:
		return "dict"
	case *Set:
		return "set"
	case JID:
		return "JID"
	case global:
		return "global"
	case pendingJID:
		return "unfinished object"
	}
	return fmt.Sprintf("%T", v)
}

// TypeName is the Python name of v's type, for messages.
func TypeName(v Value) string { return typeName(v) }

func parseInt(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if len(s) > 24 {
			s = s[:24] + "…"
		}
		return 0, fmt.Errorf("%w: integer %q is not a 64-bit integer", ErrMalformed, s)
	}
	return v, nil
}

// longLE decodes a little-endian two's complement integer of up to 8
// bytes (LONG1, LONG4).
func longLE(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if len(b) > 8 {
		return 0, fmt.Errorf("%w: a %d-byte integer (at most 8)", ErrMalformed, len(b))
	}
	var u uint64
	for i := len(b) - 1; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	if b[len(b)-1]&0x80 != 0 && len(b) < 8 {
		u |= ^uint64(0) << (8 * len(b)) // sign-extend
	}
	return int64(u), nil
}

// rawUnicodeEscape decodes protocol 0's str argument: bytes are Latin-1
// code points, except \uXXXX and \UXXXXXXXX escapes.
func rawUnicodeEscape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			n := 4
			if s[i+1] == 'U' {
				n = 8
			}
			if i+2+n > len(s) {
				return "", fmt.Errorf("%w: truncated \\%c escape", ErrMalformed, s[i+1])
			}
			r, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32)
			if err != nil || r > utf8.MaxRune {
				return "", fmt.Errorf("%w: bad \\%c escape", ErrMalformed, s[i+1])
			}
			b.WriteRune(rune(r))
			i += 1 + n
			continue
		}
		b.WriteRune(rune(c))
	}
	return b.String(), nil
}

// pyStringLiteral decodes protocol 0's STRING argument, a quoted Python 2
// str literal, as UTF-8 text (Libervia loads with encoding="utf-8").
func pyStringLiteral(s string) (string, error) {
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') || s[len(s)-1] != s[0] {
		return "", fmt.Errorf("%w: STRING argument is not quoted", ErrMalformed)
	}
	s = s[1 : len(s)-1]
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b = append(b, s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case 'n':
			b = append(b, '\n')
		case 't':
			b = append(b, '\t')
		case 'r':
			b = append(b, '\r')
		case '\\', '\'', '"':
			b = append(b, c)
		case 'x':
			if i+3 > len(s) {
				return "", fmt.Errorf("%w: truncated \\x escape", ErrMalformed)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("%w: bad \\x escape", ErrMalformed)
			}
			b = append(b, byte(v))
			i += 2
		default:
			b = append(b, '\\', c)
		}
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%w: a Python 2 str that is not UTF-8", ErrMalformed)
	}
	return string(b), nil
}

// Depth returns how deep v nests, or an error past MaxDepth (cycles
// included) or after MaxValues visits (a small pickle can share one list
// many times over): callers check it before walking a value recursively.
func Depth(v Value) (int, error) {
	budget := MaxValues
	return depth(v, 0, &budget)
}

func depth(v Value, d int, budget *int) (int, error) {
	if d > MaxDepth {
		return 0, fmt.Errorf("%w: values nested deeper than %d (or a value that contains itself)", ErrMalformed, MaxDepth)
	}
	if *budget--; *budget < 0 {
		return 0, fmt.Errorf("%w: more than %d values once shared values are counted", ErrMalformed, MaxValues)
	}
	var kids []Value
	switch t := v.(type) {
	case *List:
		kids = t.Items
	case Tuple:
		kids = t
	case *Set:
		kids = t.Items
	case *Dict:
		kids = append(append(kids, t.Keys...), t.Values...)
	default:
		return d, nil
	}
	most := d
	for _, k := range kids {
		n, err := depth(k, d+1, budget)
		if err != nil {
			return 0, err
		}
		most = max(most, n)
	}
	return most, nil
}
