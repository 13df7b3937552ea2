package python

import (
	"strconv"

	"hookctl.dev/hookctl/internal/jsonstr"
)

// appendRunFrame appends fr as one JSON line, as json.Marshal would write
// it (but for HTML escaping, which JSON does not need): a run frame is
// encoded for every item, and reflection made most of its cost.
func appendRunFrame(b []byte, fr *runFrame) []byte {
	b = append(b, `{"op":"run","client":{"profile":`...)
	b = jsonstr.Append(b, fr.Client.Profile)
	b = append(b, `,"jid":`...)
	b = jsonstr.Append(b, fr.Client.JID)
	e := &fr.Event
	b = append(b, `},"event":{"service":`...)
	b = jsonstr.Append(b, e.Service)
	b = append(b, `,"node":`...)
	b = jsonstr.Append(b, e.Node)
	b = append(b, `,"kind":`...)
	b = jsonstr.Append(b, e.Kind)
	b = append(b, `,"item_id":`...)
	b = jsonstr.Append(b, e.ItemID)
	b = append(b, `,"publisher":`...)
	b = jsonstr.Append(b, e.Publisher)
	b = append(b, `,"catchup":`...)
	b = strconv.AppendBool(b, e.Catchup)
	b = append(b, `,"received":`...)
	b = jsonstr.Append(b, e.Received)
	b = append(b, '}')
	if fr.ItemXML != "" {
		b = append(b, `,"item_xml":`...)
		b = jsonstr.Append(b, fr.ItemXML)
	}
	return append(b, "}\n"...)
}
