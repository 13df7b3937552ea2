// Package filter compiles and evaluates hook filters: expr-lang boolean
// expressions over the event and its item, type-checked once at load time.
package filter

import (
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"hookctl.dev/hookctl"
)

// EventEnv is what a filter sees as `event`.
type EventEnv struct {
	Kind    string `expr:"kind"`
	Profile string `expr:"profile"`
	Service string `expr:"service"`
	Node    string `expr:"node"`
	ItemID  string `expr:"item_id"`
	Catchup bool   `expr:"catchup"`
}

// ItemEnv is what a filter sees as `item`.
type ItemEnv struct {
	ID        string `expr:"id"`
	Publisher string `expr:"publisher"`
	// Payload is the item's payload as XML text.
	Payload string `expr:"payload"`
}

// Env is the typed environment a filter is compiled against.
type Env struct {
	Event EventEnv `expr:"event"`
	Item  ItemEnv  `expr:"item"`
}

// NewEnv builds the environment for one event.
func NewEnv(ev hookctl.Event) Env {
	return Env{
		Event: EventEnv{Kind: string(ev.Kind), Profile: ev.Profile, Service: ev.Service, Node: ev.Node, ItemID: ev.ItemID, Catchup: ev.Catchup},
		Item:  ItemEnv{ID: ev.ItemID, Publisher: ev.Publisher, Payload: ev.Payload},
	}
}

// Filter is a compiled filter expression, safe for concurrent use.
type Filter struct {
	source  string
	program *vm.Program
}

// Error is a compile error with its position inside the expression.
type Error struct {
	// Line is 1-based; Column is 0-based, as expr-lang reports them.
	Line, Column int
	Message      string
}

func (e *Error) Error() string { return e.Message }

// Compile type-checks src against Env and requires a boolean result.
// An empty src yields nil: no filter, every event passes.
func Compile(src string) (*Filter, error) {
	if src == "" {
		return nil, nil
	}
	if err := CheckDepth(src); err != nil {
		return nil, err
	}
	p, err := expr.Compile(src, expr.Env(Env{}), expr.AsBool())
	if err != nil {
		if fe, ok := err.(*file.Error); ok {
			return nil, &Error{Line: fe.Line, Column: fe.Column, Message: fe.Message}
		}
		return nil, &Error{Line: 1, Message: err.Error()}
	}
	return &Filter{source: src, program: p}, nil
}

// String returns the filter's source.
func (f *Filter) String() string { return f.source }

// Match evaluates the filter for ev. A nil filter matches everything.
func (f *Filter) Match(ev hookctl.Event) (bool, error) {
	if f == nil {
		return true, nil
	}
	out, err := vm.Run(f.program, NewEnv(ev))
	if err != nil {
		return false, fmt.Errorf("filter %q: %w", f.source, err)
	}
	ok, _ := out.(bool) // expr.AsBool guarantees a bool
	return ok, nil
}
