# hookctl Python worker shim. The Go side (package pyrunner) runs it as
# `python3 - hookctl-worker TYPE`, the program on stdin, and talks to it with
# newline-delimited JSON frames: Go -> worker on fd 3, worker -> Go on fd 4.
# fd 1 and 2 stay free for whatever bypasses sys.stdout/sys.stderr; the hook's
# print() output is captured here and sent back in the "done" frame, so it
# never touches the framing. See protocol.go for the frames.

import io
import json
import os
import sys
import threading
import traceback
import types
import xml.etree.ElementTree as ET

SHIM_FILE = sys._getframe().f_code.co_filename
CAPTURE_LIMIT = 16384  # chars kept per run; the Go side keeps the last 4096 bytes


class Capture(io.TextIOBase):
    """A bounded text sink that stands in for sys.stdout and sys.stderr."""

    def __init__(self):
        self.parts = []
        self.size = 0

    def writable(self):
        return True

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not " + type(s).__name__)
        if s:
            self.parts.append(s)
            self.size += len(s)
            if self.size > 2 * CAPTURE_LIMIT:
                text = "".join(self.parts)[-CAPTURE_LIMIT:]
                self.parts = [text]
                self.size = len(text)
        return len(s)

    def take(self):
        text = "".join(self.parts)
        self.parts = []
        self.size = 0
        return text[-CAPTURE_LIMIT:]


class Protocol:
    def __init__(self):
        self.inp = open(3, "rb", buffering=65536)
        self.out = open(4, "wb", buffering=65536)
        # Programs the hook starts must not hold our pipes: a dead worker
        # would then never read as EOF on the Go side.
        os.set_inheritable(3, False)
        os.set_inheritable(4, False)
        self.lock = threading.Lock()
        self.running = False

    def send(self, obj):
        self.out.write(json.dumps(obj).encode() + b"\n")
        self.out.flush()

    def recv(self):
        line = self.inp.readline()
        if not line:
            return None
        return json.loads(line)


class Host:
    """What a hook may ask of the backend: host.log and host.publish."""

    def __init__(self, proto, capture):
        self._proto = proto
        self._capture = capture

    def log(self, *args, level="info"):
        """Log a line into the backend's log and the run's output."""
        msg = " ".join(str(a) for a in args)
        with self._proto.lock:
            if not self._proto.running:
                sys.__stderr__.write(msg + "\n")
                return
            self._capture.write(msg + "\n")
            self._proto.send({"op": "log", "level": str(level), "msg": msg})

    def publish(self, service, node, payload, item_id=None):
        """Publish payload (XML text or an Element) on service/node through
        the backend's session and return the item id."""
        if isinstance(payload, ET.Element):
            payload = ET.tostring(payload, encoding="unicode")
        with self._proto.lock:
            if not self._proto.running:
                raise RuntimeError("host.publish called outside a hook run")
            self._proto.send({
                "op": "publish",
                "service": str(service or ""),
                "node": str(node),
                "payload": str(payload),
                "item_id": str(item_id or ""),
            })
            reply = self._proto.recv()
        if reply is None:
            os._exit(70)  # the backend is gone
        if reply.get("op") == "publish_result":
            return reply.get("item_id", "")
        raise RuntimeError("publish to %s %s: %s" % (service, node, reply.get("error", "unexpected reply")))

    def __repr__(self):
        return "<hookctl host>"


class LoadError(Exception):
    pass


def exc_text(e):
    if isinstance(e, LoadError):
        return str(e)
    return "%s: %s" % (type(e).__name__, e) if str(e) else type(e).__name__


def tb_text(e, skip_shim=True):
    tb = e.__traceback__
    # Drop the shim's own frames so the traceback starts in the hook.
    while skip_shim and tb is not None and tb.tb_frame.f_code.co_filename == SHIM_FILE:
        tb = tb.tb_next
    if isinstance(e, SyntaxError):
        tb = None
    return "".join(traceback.format_exception(type(e), e, tb))[-CAPTURE_LIMIT:]


class Worker:
    def __init__(self):
        self.proto = Protocol()
        self.capture = Capture()
        self.host = Host(self.proto, self.capture)
        self.hook = None   # python, python_file: the hook function
        self.code = None   # python_code: the compiled code
        self.ns = None     # python_code: its globals, kept between items

    def load(self, typ, arg):
        self.hook = self.code = self.ns = None
        if typ == "python_file":
            path = os.path.abspath(arg)
            with open(path, "rb") as f:
                src = f.read()
            code = compile(src, path, "exec")
            d = os.path.dirname(path)
            if d not in sys.path:
                sys.path.insert(0, d)
            mod = types.ModuleType("hookctl_hook")
            mod.__file__ = path
            sys.modules["hookctl_hook"] = mod
            exec(code, mod.__dict__)
            self.hook = self._hook_of(mod.__dict__)
        elif typ == "python":
            import importlib
            mod = importlib.import_module(arg)
            self.hook = self._hook_of(mod.__dict__)
        elif typ == "python_code":
            self.code = compile(arg, "<python_code>", "exec")
            self.ns = {"__name__": "hookctl_code", "__builtins__": __builtins__}
        else:
            raise LoadError("unknown hook type %r" % typ)

    @staticmethod
    def _hook_of(d):
        hook = d.get("hook")
        if hook is None:
            raise LoadError("no hook(host, client, item) function")
        if not callable(hook):
            raise LoadError("hook is a %s, not a function" % type(hook).__name__)
        return hook

    @staticmethod
    def item_of(ev, item_xml):
        if item_xml:
            return ET.fromstring(item_xml)
        kind = ev.get("kind", "")
        if kind in ("publish", "retract"):
            el = ET.Element("item" if kind == "publish" else "retract")
            if ev.get("item_id"):
                el.set("id", ev["item_id"])
            return el
        # purge and delete have no item: the element names the node.
        return ET.Element(kind or "event", {"node": ev.get("node", "")})

    def run(self, msg):
        client = msg.get("client") or {}
        ev = msg.get("event") or {}
        item = self.item_of(ev, msg.get("item_xml"))
        client = types.SimpleNamespace(
            profile=client.get("profile", ""),
            jid=client.get("jid", ""),
            event=types.SimpleNamespace(**ev),
        )
        if self.code is not None:
            self.ns["host"] = self.host
            self.ns["client"] = client
            self.ns["item"] = item
            exec(self.code, self.ns)
        else:
            self.hook(self.host, client, item)

    def serve(self):
        proto, cap = self.proto, self.capture
        while True:
            msg = proto.recv()
            if msg is None:
                return
            op = msg.get("op")
            if op == "load":
                cap.take()
                try:
                    self.load(msg.get("type"), msg.get("arg", ""))
                except BaseException as e:  # noqa: B036 - a hook may raise SystemExit
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    tb = "" if isinstance(e, (LoadError, SyntaxError)) else tb_text(e)
                    proto.send({"op": "load_error", "error": exc_text(e), "traceback": tb, "output": cap.take()})
                    continue
                proto.send({"op": "loaded", "output": cap.take()})
            elif op == "run":
                # A hook may have replaced them; each run starts captured.
                sys.stdout = sys.stderr = cap
                with proto.lock:
                    proto.running = True
                try:
                    self.run(msg)
                except BaseException as e:
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    with proto.lock:
                        proto.running = False
                    sys.stdout.flush()
                    proto.send({"op": "done", "ok": False, "error": exc_text(e),
                                "traceback": tb_text(e), "output": cap.take()})
                    continue
                with proto.lock:
                    proto.running = False
                sys.stdout.flush()
                proto.send({"op": "done", "ok": True, "output": cap.take()})
            else:
                proto.send({"op": "done", "ok": False, "error": "unknown op %r" % op, "output": ""})


def main():
    # The program came from stdin: drop the '' entry it put on sys.path (the
    # working directory must not shadow modules) and give hooks an empty stdin.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    sys.stdin = open(os.devnull)
    worker = Worker()
    sys.stdout = sys.stderr = worker.capture
    worker.serve()


main()
