# Micro-benchmark of the item a Python hook receives (domish.py): CPU time
# per item of parsing it and reading it, with a plain ElementTree Element
# (before) and with hookctl's Item (after), interleaved, best of 15 rounds.
#   python3 runner/python/testdata/item_bench.py runner/python/domish.py
import sys
import time
import timeit
import xml.etree.ElementTree as ET

NS = {}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), NS)
item_from = NS["item_from"]
X = ('<item xmlns="http://jabber.org/protocol/pubsub#event" id="post-1">'
     '<entry xmlns="http://www.w3.org/2005/Atom"><title type="text">Hello world</title>'
     '<id>urn:uuid:123</id><published>2025-01-01T00:00:00Z</published>'
     '<updated>2025-01-01T00:00:00Z</updated><content type="xhtml">some text here</content>'
     '<author><name>me</name><uri>xmpp:me@x</uri></author></entry></item>')
A = "{http://www.w3.org/2005/Atom}"

CASES = [
    ("parse + item.get('id')", lambda: ET.fromstring(X).get("id"), lambda: item_from(ET.fromstring(X)).get("id")),
    ("parse + item[0].findtext(title)", lambda: ET.fromstring(X)[0].findtext(A + "title"),
     lambda: item_from(ET.fromstring(X))[0].findtext(A + "title")),
    ("parse + item.find(entry/title).text", lambda: ET.fromstring(X).find(A + "entry/" + A + "title").text,
     lambda: item_from(ET.fromstring(X)).find(A + "entry/" + A + "title").text),
    ("parse + domish reads (id, entry.title, elements())", None,
     lambda: (lambda it: (it["id"], str(it.entry.title), [c.name for c in it.entry.elements()]))(item_from(ET.fromstring(X)))),
    ("parse + toXml()", None, lambda: item_from(ET.fromstring(X)).toXml()),
]


def measure(cases, rounds=15, n=500):
    """Best CPU µs per call of each function, the functions interleaved
    round by round so that a busy moment hits all of them."""
    fs = [f for _, before, after in cases for f in (before, after) if f]
    best = {f: float("inf") for f in fs}
    for _ in range(rounds):
        for f in fs:
            best[f] = min(best[f], timeit.timeit(f, number=n, timer=time.process_time) / n * 1e6)
    return best


best = measure(CASES)
print("| read | ElementTree µs | Item µs |")
print("|---|---|---|")
for name, before, after in CASES:
    b = "%.1f" % best[before] if before else "–"
    print("| %s | %s | %.1f |" % (name, b, best[after]))
