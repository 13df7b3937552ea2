
# --- domish.py: the item, client and host as a Libervia hook expects them.
# worker.go appends this file to shim.py (the worker program, one namespace).
#
# A Libervia hook gets Twisted's domish.Element as item; a hookctl hook
# gets an xml.etree.ElementTree.Element. Item is both: a subclass of
# ET.Element (every ElementTree use keeps working) that also has the read
# side of domish.Element (twisted/words/xish/domish.py), written from that
# file's behaviour, and most of its write side in ElementTree terms. Where
# the two APIs use one name:
#   - item[key]: an int or a slice is ElementTree's child index, anything
#     else (a str, or a (uri, name) tuple) a domish attribute (KeyError
#     when absent); the same for item[key] = v and del item[key].
#   - ElementTree's attributes and methods (tag, text, tail, attrib, get,
#     set, keys, items, find, iter, ...) win over domish's child access by
#     name (item.text is the text, not a <text/> child: use
#     item.elements(uri, "text") or item.find(...) for such a child).
#   - str(item) is domish's (the first text child), bool(item) is always
#     True as for domish (ElementTree's truth value is deprecated).
# Per-item cost: the worker parses the item with ElementTree's C parser and
# copies only the root into an Item; children become Items (shallow copies
# put in place of the plain ones) when they are first reached, one level at
# a time, or the whole subtree before find/iter.

import xml.etree.ElementTree as ET

XML_NS = "http://www.w3.org/XML/1998/namespace"
ALL = slice(None)  # ET.Element.__getitem__(el, ALL): el's children, by the C method


def qname(tag):
    """(uri, name) of an ElementTree tag; uri is "" in no namespace."""
    if tag[:1] == "{":
        uri, _, name = tag[1:].partition("}")
        return uri, name
    return "", tag


def attr_key(key, dequalify=True):
    """The ElementTree attrib key of a domish attribute key: "name", or
    (uri, name) for a namespaced attribute. domish dequalifies ("", name)
    to name in item[key] and hasAttribute but not in getAttribute."""
    if isinstance(key, tuple) and len(key) == 2:
        uri, name = key
        if uri:
            return "{%s}%s" % (uri, name)
        return name if dequalify else key
    return key


def is_element(node):
    # Comments and processing instructions a hook adds have a function as tag.
    return isinstance(node, ET.Element) and isinstance(node.tag, str)


def as_item(el, parent):
    """An Item to put in el's place: same tag, attributes (the same dict),
    text and tail, el's children moved over (not copied). el is dropped."""
    it = Item(el.tag)
    it.attrib, it.text, it.tail = el.attrib, el.text, el.tail
    ET.Element.__setitem__(it, ALL, ET.Element.__getitem__(el, ALL))
    it._parent, it._done = parent, 0
    return it


def item_kids(el):
    """Make el's direct children Items (in place, in one slice assignment);
    return them."""
    kids = ET.Element.__getitem__(el, ALL)
    for c in kids:
        if type(c) is not Item and is_element(c):
            kids = [c if type(c) is Item or not is_element(c) else as_item(c, el) for c in kids]
            ET.Element.__setitem__(el, ALL, kids)
            break
    if type(el) is Item and el._done < 1:
        el._done = 1
    return kids


def item_tree(el):
    """Make every element below el an Item (item_kids, inlined: this is
    the cost of a hook's first find or iter)."""
    get, put = ET.Element.__getitem__, ET.Element.__setitem__
    todo = [el]
    while todo:
        e = todo.pop()
        if e._done == 2:
            continue
        e._done = 2
        kids = get(e, ALL)
        if not kids:
            continue
        for i, c in enumerate(kids):
            if type(c) is not Item:
                if not isinstance(c.tag, str):
                    continue
                it = kids[i] = Item(c.tag)
                it.attrib, it.text, it.tail = c.attrib, c.text, c.tail
                put(it, ALL, get(c, ALL))
                it._parent, it._done = e, 0
        put(e, ALL, kids)
        todo.extend(k for k in kids if type(k) is Item)


def child_elements(el):
    if type(el) is Item:
        return [c for c in item_kids(el) if is_element(c)]
    return [c for c in ET.Element.__getitem__(el, ALL) if is_element(c)]


def domish_children(el, convert=True):
    """domish's children: text and elements in document order, adjacent
    text merged, no empty text. convert=False leaves plain children plain
    (for serialising, which hands nothing out)."""
    out = [el.text] if el.text else []
    for c in (item_kids(el) if convert and type(el) is Item else ET.Element.__getitem__(el, ALL)):
        if is_element(c):
            out.append(c)
        if c.tail:
            if out and isinstance(out[-1], str):
                out[-1] += c.tail
            else:
                out.append(c.tail)
    return out


def local_prefixes(el):
    """domish's localPrefixes of an element hookctl delivered: the backend
    writes every element with its namespace as default namespace and
    declares ns0, ns1, ... on an element for its namespaced attributes, in
    their order."""
    out = {}
    for k in el.attrib:
        if k[:1] == "{":
            uri = qname(k)[0]
            if uri != XML_NS and uri not in out.values():
                out["ns%d" % len(out)] = uri
    return out


def domish_attributes(el):
    """domish's attributes: namespaced ones keyed by (uri, name)."""
    a = el.attrib
    for k in a:
        if k[:1] == "{":
            return {(qname(k) if k[:1] == "{" else k): v for k, v in a.items()}
    return a


def escape_xml(text, attr=False):
    """domish.escapeToXml."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attr:
        text = text.replace("'", "&apos;").replace('"', "&quot;")
    return text


class DomishSerializer:
    """domish._ListSerializer, over ElementTree elements: the uri of an
    element is its tag's, its defaultUri the same (see Item.defaultUri)."""

    def __init__(self, prefixes=None, prefixesInScope=None):
        self.out = []
        self.prefixes = dict(prefixes or {})
        self.prefixes[XML_NS] = "xml"
        self.stack = [["xml"]] + list(prefixesInScope or [])
        self.counter = 0

    def prefix(self, uri):
        if uri not in self.prefixes:
            self.prefixes[uri] = "xn%d" % self.counter
            self.counter += 1
        return self.prefixes[uri]

    def in_scope(self, prefix):
        return any(prefix in s for s in self.stack)

    def serialize(self, el, close=1, current=""):
        write = self.out.append
        if isinstance(el, str):
            write(escape_xml(el))
            return
        uri, name = qname(el.tag)
        default = uri
        local = local_prefixes(el)
        for p, u in local.items():
            self.prefixes[u] = p
        self.stack.append(list(local))
        prefix, in_scope = None, False
        if uri != default or uri in self.prefixes:
            prefix = self.prefix(uri)
            in_scope = self.in_scope(prefix)
        if not prefix:
            write("<%s" % name)
        else:
            write("<%s:%s" % (prefix, name))
            if not in_scope:
                write(" xmlns:%s='%s'" % (prefix, uri))
                self.stack[-1].append(prefix)
                in_scope = True
        if default != current and (uri != default or not prefix or not in_scope):
            write(" xmlns='%s'" % default)
        for p, u in local.items():
            write(" xmlns:%s='%s'" % (p, u))
        for k, v in el.attrib.items():
            if k[:1] == "{":
                auri, aname = qname(k)
                ap = self.prefix(auri)
                if not self.in_scope(ap):
                    write(" xmlns:%s='%s'" % (ap, auri))
                    self.stack[-1].append(ap)
                write(" %s:%s='%s'" % (ap, aname, escape_xml(v, True)))
            else:
                write(" %s='%s'" % (k, escape_xml(v, True)))
        if close == 0:
            write(">")
            return
        children = domish_children(el, convert=False)
        if children:
            write(">")
            for c in children:
                self.serialize(c, current=default)
            write("</%s>" % name if not prefix else "</%s:%s>" % (prefix, name))
        else:
            write("/>")
        self.stack.pop()


class Item(ET.Element):
    """The item a hook receives: an ElementTree Element that also reads as
    Twisted's domish.Element (see the top of this file for the rules)."""

    __slots__ = ("_parent", "_done")  # _done: 0, 1 children are Items, 2 all below

    # --- ElementTree, children made Items before they are handed out.

    def __getitem__(self, key):
        if isinstance(key, (int, slice)) or hasattr(key, "__index__"):
            if self._done < 1:
                item_kids(self)
            return ET.Element.__getitem__(self, key)
        try:
            return self.attrib[attr_key(key)]
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key, value):
        if isinstance(key, (int, slice)) or hasattr(key, "__index__"):
            ET.Element.__setitem__(self, key, value)
        else:
            self.attrib[attr_key(key)] = value

    def __delitem__(self, key):
        if isinstance(key, (int, slice)) or hasattr(key, "__index__"):
            ET.Element.__delitem__(self, key)
        else:
            del self.attrib[attr_key(key)]

    def __iter__(self):
        # ElementTree's C Element iterates through __getitem__; this is one
        # call instead of one per child.
        if self._done < 1:
            return iter(item_kids(self))
        return iter(ET.Element.__getitem__(self, ALL))

    def find(self, path, namespaces=None):
        if self._done < 2:
            item_tree(self)
        return ET.Element.find(self, path, namespaces)

    def findall(self, path, namespaces=None):
        if self._done < 2:
            item_tree(self)
        return ET.Element.findall(self, path, namespaces)

    def iterfind(self, path, namespaces=None):
        if self._done < 2:
            item_tree(self)
        return ET.Element.iterfind(self, path, namespaces)

    def iter(self, tag=None):
        if self._done < 2:
            item_tree(self)
        return ET.Element.iter(self, tag)

    def __bool__(self):
        return True

    def __reduce_ex__(self, protocol):
        # Pickled as the plain ElementTree element it was before (C
        # deepcopy makes plain Elements), so that any process can load it.
        import copy
        return copy.copy, (ET.Element.__deepcopy__(self, {}),)

    # --- domish.Element, read side.

    def __getattr__(self, key):
        # Only called for what ElementTree and Item do not have: domish's
        # first child element named key (any namespace), else None, and
        # AttributeError for names starting with "_".
        if key == "_done":
            return 0  # an Item made by hand, not by the worker
        if key == "_parent":
            return None
        if key.startswith("_"):
            raise AttributeError(key)
        for c in child_elements(self):
            if qname(c.tag)[1] == key:
                return c
        return None

    def __str__(self):
        for c in domish_children(self):
            if isinstance(c, str):
                return c
        return ""

    def __bytes__(self):
        return str(self).encode("utf-8")

    @property
    def name(self):
        return qname(self.tag)[1]

    @property
    def uri(self):
        return qname(self.tag)[0]

    @property
    def defaultUri(self):
        # The namespace in scope for unprefixed children. hookctl's
        # backend delivers every element with its own namespace declared as
        # the default one (as Prosody sends them), so it is the element's.
        return qname(self.tag)[0]

    @property
    def localPrefixes(self):
        return local_prefixes(self)

    @property
    def attributes(self):
        return domish_attributes(self)

    @property
    def children(self):
        return domish_children(self)

    @property
    def parent(self):
        # The Item this one was reached from; None for the item itself
        # (Libervia's is the <items> element, which hookctl does not pass).
        return self._parent

    def getAttribute(self, attribname, default=None):
        return self.attrib.get(attr_key(attribname, dequalify=False), default)

    def hasAttribute(self, attrib):
        return attr_key(attrib) in self.attrib

    def compareAttribute(self, attrib, value):
        return self.attrib.get(attr_key(attrib)) == value

    def elements(self, uri=None, name=None):
        kids = child_elements(self)
        if name is None:
            return iter(kids)
        return (c for c in kids if qname(c.tag) == (uri, name))

    def firstChildElement(self):
        for c in child_elements(self):
            return c
        return None

    def toXml(self, prefixes=None, closeElement=1, defaultUri="", prefixesInScope=None):
        s = DomishSerializer(prefixes, prefixesInScope)
        s.serialize(self, close=closeElement, current=defaultUri)
        return "".join(s.out)

    # --- domish.Element, write side, in ElementTree terms.

    def addChild(self, node):
        if isinstance(node, str):
            self.addContent(node)
            return node
        if type(node) is Item:
            node._parent = self
        ET.Element.append(self, node)
        return node

    def addContent(self, text):
        if not isinstance(text, str):
            raise TypeError("Expected str not %r (%s)" % (text, type(text).__name__))
        kids = ET.Element.__getitem__(self, ALL)
        if kids:
            kids[-1].tail = (kids[-1].tail or "") + text
            return kids[-1].tail
        self.text = (self.text or "") + text
        return self.text

    def addElement(self, name, defaultUri=None, content=None):
        if isinstance(name, tuple):
            uri, name = name
        else:
            uri = self.defaultUri if defaultUri is None else defaultUri
        child = Item("{%s}%s" % (uri, name) if uri else name)
        child._parent, child._done = self, 2
        ET.Element.append(self, child)
        if content:
            child.addContent(content)
        return child

    def addUniqueId(self):
        global UNIQUE_ID
        self.attrib["id"] = "H_%d" % UNIQUE_ID
        UNIQUE_ID += 1

    def swapAttributeValues(self, left, right):
        a = self.attrib
        a[left], a[right] = a[right], a[left]

    def addRawXml(self, rawxmlstring):
        raise NotLiberviaError(
            "item.addRawXml: hookctl's item is an ElementTree Element, which holds no raw XML: "
            "parse it (xml.etree.ElementTree.fromstring) and item.append() the element")


UNIQUE_ID = 0  # addUniqueId's counter, for the worker's life as domish's is for the process's


def item_from(root):
    """The Item the hook receives, for the element the parser made."""
    it = as_item(root, None)
    return it


class NotLiberviaError(AttributeError):
    """Raised for what a Libervia hook may take from host or client that
    hookctl cannot give: Libervia runs hooks inside its backend, with the
    live backend and XMPP client; hookctl runs them in a worker process."""


HOST_OFFERS = "host.log(*args, level='info') and host.publish(service, node, payload, item_id=None, loop=False)"
CLIENT_OFFERS = "client.profile, client.jid (the profile's bare JID) and client.event"


def not_libervia_host(name):
    return NotLiberviaError(
        "host.%s: hookctl's host is not Libervia's backend: the hook runs in a hookctl "
        "worker process, without the backend's objects (bridge, memory, plugins, ...); "
        "host offers %s" % (name, HOST_OFFERS))


def not_libervia_client(name):
    return NotLiberviaError(
        "client.%s: hookctl's client is not Libervia's live XMPP client: it carries the "
        "profile's data only; client offers %s, and host offers %s" % (name, CLIENT_OFFERS, HOST_OFFERS))


class JID(str):
    """client.jid: the profile's bare JID as text (as hookctl documents it)
    that also answers the read side of Twisted's jid.JID."""

    __slots__ = ()

    @property
    def user(self):
        user, at, _ = self.partition("/")[0].rpartition("@")
        return user if at else None

    @property
    def host(self):
        return self.partition("/")[0].rpartition("@")[2]

    @property
    def resource(self):
        _, slash, res = self.partition("/")
        return res if slash else None

    def userhost(self):
        return self.partition("/")[0]

    def full(self):
        return str(self)

    def userhostJID(self):
        return JID(self.userhost())


class Client:
    """The client a hook receives: the profile, its JID, the event."""

    def __init__(self, profile, jid, event):
        self.profile = profile
        self.jid = jid
        self.event = event

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise not_libervia_client(name)

    def __repr__(self):
        return "<hookctl client %s (%s)>" % (self.profile, self.jid)
