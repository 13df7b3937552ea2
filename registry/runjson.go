package registry

import (
	"strconv"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/internal/jsonstr"
)

// appendRunJSON appends the JSON of storedRun{r, payloadInXML} to b, with
// the event's payload left out when payloadInXML, byte for byte as
// encoding/json writes it without HTML escaping (fields in declaration
// order, omitempty honoured). ok is false, and b to be ignored, when a
// time is one encoding/json refuses.
func appendRunJSON(b []byte, r *hookctl.Run, payloadInXML bool) (_ []byte, ok bool) {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, r.ID, 10)
	b = append(b, `,"hook":{"profile":`...)
	b = jsonstr.Append(b, r.Hook.Profile)
	b = append(b, `,"service":`...)
	b = jsonstr.Append(b, r.Hook.Service)
	b = append(b, `,"node":`...)
	b = jsonstr.Append(b, r.Hook.Node)
	b = append(b, `,"type":`...)
	b = jsonstr.Append(b, string(r.Hook.Type))
	b = append(b, `,"arg":`...)
	b = jsonstr.Append(b, r.Hook.Arg)
	b = append(b, '}')
	b = appendOptString(b, `,"hook_name":`, r.HookName)
	b = append(b, `,"event":`...)
	b = jsonstr.Append(b, string(r.Event))
	b = appendOptString(b, `,"item_id":`, r.ItemID)
	b = append(b, `,"started":`...)
	if b, ok = appendJSONTime(b, r.Started); !ok {
		return b, false
	}
	b = append(b, `,"duration":`...)
	b = jsonstr.Append(b, r.Duration.String())
	b = append(b, `,"outcome":`...)
	b = jsonstr.Append(b, r.Outcome)
	if r.ExitCode != 0 {
		b = append(b, `,"exit_code":`...)
		b = strconv.AppendInt(b, int64(r.ExitCode), 10)
	}
	b = appendOptString(b, `,"output":`, r.Output)
	b = appendOptString(b, `,"error":`, r.Error)
	b = appendOptBool(b, `,"catchup":true`, r.Catchup)
	b = appendOptString(b, `,"set":`, r.Set)
	if r.Queued != 0 {
		b = append(b, `,"queued":`...)
		b = jsonstr.Append(b, r.Queued.String())
	}
	if r.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(r.Attempt), 10)
	}
	b = appendOptString(b, `,"manual":`, r.Manual)
	if in := r.Input; in != nil {
		b = append(b, `,"input":`...)
		if b, ok = appendEventJSON(b, in, payloadInXML); !ok {
			return b, false
		}
	}
	b = appendOptBool(b, `,"input_truncated":true`, r.InputTruncated)
	b = appendOptBool(b, `,"payload_in_xml":true`, payloadInXML)
	return append(b, '}'), true
}

// appendEventJSON appends the JSON of ev, without its payload when
// noPayload.
func appendEventJSON(b []byte, ev *hookctl.Event, noPayload bool) (_ []byte, ok bool) {
	b = append(b, `{"profile":`...)
	b = jsonstr.Append(b, ev.Profile)
	b = append(b, `,"service":`...)
	b = jsonstr.Append(b, ev.Service)
	b = append(b, `,"node":`...)
	b = jsonstr.Append(b, ev.Node)
	b = append(b, `,"kind":`...)
	b = jsonstr.Append(b, string(ev.Kind))
	b = appendOptString(b, `,"item_id":`, ev.ItemID)
	b = appendOptString(b, `,"publisher":`, ev.Publisher)
	if !noPayload {
		b = appendOptString(b, `,"payload":`, ev.Payload)
	}
	b = appendOptString(b, `,"item_xml":`, ev.ItemXML)
	b = append(b, `,"received":`...)
	if b, ok = appendJSONTime(b, ev.Received); !ok {
		return b, false
	}
	b = appendOptBool(b, `,"catchup":true`, ev.Catchup)
	return append(b, '}'), true
}

func appendOptString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return jsonstr.Append(append(b, key...), s)
}

func appendOptBool(b []byte, field string, v bool) []byte {
	if !v {
		return b
	}
	return append(b, field...)
}

// appendJSONTime appends t as time.Time.MarshalJSON does: quoted RFC 3339
// with nanoseconds; not ok where MarshalJSON fails.
func appendJSONTime(b []byte, t time.Time) (_ []byte, ok bool) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return b, false
	}
	return append(b, '"'), true
}
