package python

import (
	"strconv"
	"unicode/utf8"
)

// appendRunFrame appends fr as one JSON line, as json.Marshal would write
// it (but for HTML escaping, which JSON does not need): a run frame is
// encoded for every item, and reflection made most of its cost.
func appendRunFrame(b []byte, fr *runFrame) []byte {
	b = append(b, `{"op":"run","client":{"profile":`...)
	b = appendJSONString(b, fr.Client.Profile)
	b = append(b, `,"jid":`...)
	b = appendJSONString(b, fr.Client.JID)
	e := &fr.Event
	b = append(b, `},"event":{"service":`...)
	b = appendJSONString(b, e.Service)
	b = append(b, `,"node":`...)
	b = appendJSONString(b, e.Node)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, e.Kind)
	b = append(b, `,"item_id":`...)
	b = appendJSONString(b, e.ItemID)
	b = append(b, `,"publisher":`...)
	b = appendJSONString(b, e.Publisher)
	b = append(b, `,"catchup":`...)
	b = strconv.AppendBool(b, e.Catchup)
	b = append(b, `,"received":`...)
	b = appendJSONString(b, e.Received)
	b = append(b, '}')
	if fr.ItemXML != "" {
		b = append(b, `,"item_xml":`...)
		b = appendJSONString(b, fr.ItemXML)
	}
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD (as
// encoding/json does), U+2028 and U+2029 escaped (idem).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
