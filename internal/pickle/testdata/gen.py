# Regenerates the pickles of pickle_test.go with the real Python pickle
# module: python3 gen.py (from this directory). The JID is pickled the way
# Libervia stores it (twisted's JID, protocol 0, as LegacyPickle does).
import os, pickle, sys

class JID:  # the same module path and state as twisted's JID
    def __init__(self, user, host, resource):
        self.user, self.host, self.resource = user, host, resource
JID.__module__ = "twisted.words.protocols.jabber.jid"
sys.modules["twisted.words.protocols.jabber.jid"] = sys.modules[__name__]

class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))

plain = {"s": "héllo\n\\u", "i": -5, "big": 2**40, "f": 1.5,
         "t": True, "n": None, "l": [1, [2, (3, "x")]], "e": (), "one": (1,)}
binary = {"b": b"\x00\xff", "set": {1}, "fs": frozenset()}  # protocol 4+: no REDUCE
hooks = [{"service": JID("alice", "localhost", None), "type": "python_file", "arg": "/h/a.py"},
         {"service": JID(None, "pubsub.localhost", None), "type": "python_code", "arg": "print(item)"}]
for proto in range(6):
    open(f"plain-p{proto}.pkl", "wb").write(pickle.dumps(plain, proto))
for proto in (4, 5):
    open(f"binary-p{proto}.pkl", "wb").write(pickle.dumps(binary, proto))
open("hooks-p0.pkl", "wb").write(pickle.dumps(hooks, 0))
open("hooks-p2.pkl", "wb").write(pickle.dumps(hooks, 2))
for proto in (0, 2, 4):
    open(f"evil-p{proto}.pkl", "wb").write(pickle.dumps(Evil(), proto))
