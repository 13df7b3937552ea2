# Differential check of hookctl's Item (domish.py) against Twisted's own
# domish.Element: run with a python3 that has Twisted, domish.py's path as
# argv[1], XML samples (one per line) on stdin. For each sample, both
# parse it (Twisted as its XMPP stream parser does, inside a stream whose
# default namespace is jabber:client) and describe what a hook reads; the
# two descriptions are printed as JSON lines: "twisted" then "hookctl".
import json
import sys
import xml.etree.ElementTree as ET

from twisted.words.xish import domish

SRC = open(sys.argv[1]).read()
NS = {}
exec(compile(SRC, sys.argv[1], "exec"), NS)


def twisted_parse(xml):
    got = []
    s = domish.elementStream()
    s.DocumentStartEvent = lambda root: None
    s.ElementEvent = got.append
    s.DocumentEndEvent = lambda: None
    s.parse("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>")
    s.parse(xml)
    return got[0]


def hookctl_parse(xml):
    return NS["item_from"](ET.fromstring(xml))


def key(k):
    return list(k) if isinstance(k, tuple) else k


def describe(el, depth=0):
    names = ["id", "node", "publisher", "type", "nope", "title", "body", "entry"]
    attrs = list(el.attributes.keys())
    d = {
        "name": el.name, "uri": el.uri, "defaultUri": el.defaultUri,
        "attributes": [[key(k), v] for k, v in el.attributes.items()],
        "localPrefixes": el.localPrefixes,
        "str": str(el), "bytes": bytes(el).decode(), "bool": bool(el),
        "toXml": el.toXml(),
        "toXml_open": el.toXml(closeElement=0),
        "getitem": {},
        "getAttribute": {n: el.getAttribute(n) for n in names},
        "getAttribute_default": el.getAttribute("nope", "dflt"),
        "hasAttribute": {n: el.hasAttribute(n) for n in names},
        "compareAttribute": [el.compareAttribute(k, el.attributes[k]) for k in attrs],
        "qualified": [[el.getAttribute(k), el.hasAttribute(k), el[k]] for k in attrs if isinstance(k, tuple)],
        "dequalified": [el.hasAttribute(("", "id")), el.getAttribute(("", "id"))],
        "getattr": {n: (getattr(el, n).toXml() if getattr(el, n) is not None else None) for n in names},
        "first": el.firstChildElement().toXml() if el.firstChildElement() is not None else None,
        "elements_all": [c.name for c in el.elements()],
        "elements_uri_only": [c.name for c in el.elements(el.uri)],
        "children": [c if isinstance(c, str) else ["el", c.name] for c in el.children],
        "kids": [describe(c, depth + 1) for c in el.elements()],
    }
    for n in names:
        try:
            d["getitem"][n] = el[n]
        except KeyError as e:
            d["getitem"][n] = "KeyError %r" % (e.args,)
    for c in el.elements():
        d.setdefault("elements_named", []).append([
            [x.name for x in el.elements(c.uri, c.name)],
            [x.name for x in el.elements(None, c.name)],
            [x.name for x in el.elements("urn:other", c.name)],
        ])
    try:
        getattr(el, "_private")
        d["underscore"] = "no error"
    except AttributeError:
        d["underscore"] = "AttributeError"
    return d


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    print(json.dumps({"twisted": describe(twisted_parse(line))}, sort_keys=True))
    print(json.dumps({"hookctl": describe(hookctl_parse(line))}, sort_keys=True))
