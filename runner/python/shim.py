# hookctl Python worker shim. The Go side (package pyrunner) runs it as
# `python3 - hookctl-worker TYPE MARKER MEMORY`, the program on stdin, and talks to it with
# newline-delimited JSON frames: Go -> worker on fd 3, worker -> Go on fd 4.
# fd 1 and 2 stay free for whatever bypasses sys.stdout/sys.stderr; the hook's
# print() output goes to fd 1 and 2 as it is written (so that output up to a
# crash or a kill is kept), and every answer to a request is preceded by the
# worker's end marker on fd 1, which tells the Go side where a run's output
# ends. See runner.go for the frames.

import faulthandler
import signal
import sys

# First of all, so that a deadline early in the worker's life gets its dump
# too: fatal errors, and SIGUSR1 (sent by the Go side before it kills a run
# or a load past its deadline), dump every thread's stack to fd 2, which is
# the run's output.
faulthandler.enable(file=sys.stderr, all_threads=True)
faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)

import io
import json
import os
import threading
import time
import traceback
import types
import xml.etree.ElementTree as ET

SHIM_FILE = sys._getframe().f_code.co_filename
TRACEBACK_LIMIT = 16384  # chars of a traceback sent; the Go side keeps the last 4096 bytes


def text_stream(fd):
    """A real text file on fd: encoding, buffer, fileno() as a hook expects;
    every write reaches the fd at once, so a crash loses nothing."""
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", write_through=True)


STDOUT = text_stream(1)
STDERR = text_stream(2)


DECODE = json.JSONDecoder().raw_decode  # json.loads without its checks of bytes


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
        # Requests read while waiting for a publish answer: the Go side
        # may send the next runs before this one is done (pipelining).
        self.queued = []

    def send(self, obj):
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def send_raw(self, line):
        self.out.write(line)
        self.out.flush()

    def recv(self):
        if self.queued:
            return self.queued.pop(0)
        return self.read()

    def read(self):
        line = self.inp.readline()
        if not line:
            return None
        return DECODE(line.decode())[0]

    def answer(self):
        """The answer to a publish: requests read before it are kept for
        serve, in order."""
        while True:
            msg = self.read()
            if msg is None or msg.get("op") not in ("run", "load"):
                return msg
            self.queued.append(msg)


class Host:
    """What a hook may ask of the backend: host.log and host.publish."""

    def __init__(self, proto):
        self._proto = proto

    def log(self, *args, level="info"):
        """Log a line into the backend's log and the run's output."""
        msg = " ".join(str(a) for a in args)
        with self._proto.lock:
            STDOUT.write(msg + "\n")
            if self._proto.running:
                self._proto.send({"op": "log", "level": str(level), "msg": msg})

    def publish(self, service, node, payload, item_id=None, loop=False):
        """Publish payload (XML text, UTF-8 bytes such as ET.tostring's, or an
        Element) on service/node through the backend's session and return
        the item id. An item published on the node that triggered the run
        does not run this hook again, unless loop is true."""
        if isinstance(payload, ET.Element):
            payload = ET.tostring(payload, encoding="unicode")
        elif isinstance(payload, (bytes, bytearray, memoryview)):
            payload = bytes(payload).decode("utf-8")
            if payload.startswith("<?xml"):
                # ET.tostring(el, encoding="utf-8") starts with a declaration.
                payload = payload[payload.index("?>") + 2:]
        with self._proto.lock:
            if not self._proto.running:
                raise RuntimeError("host.publish called outside a hook run")
            self._proto.send({
                "op": "publish",
                "service": str(service or ""),
                "node": str(node),
                "payload": str(payload),
                "item_id": str(item_id or ""),
                "loop": bool(loop),
            })
            reply = self._proto.answer()
        if reply is None:
            os._exit(70)  # the backend is gone
        if reply.get("op") == "publish_result":
            return reply.get("item_id", "")
        raise RuntimeError("publish to %s %s: %s" % (service, node, reply.get("error", "unexpected reply")))

    def __repr__(self):
        return "<hookctl host>"

    def __getattr__(self, name):
        # What Libervia's backend has and this host does not (domish.py).
        if name.startswith("__"):
            raise AttributeError(name)
        raise not_libervia_host(name)


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
    return "".join(traceback.format_exception(type(e), e, tb))[-TRACEBACK_LIMIT:]


def hook_of(d):
    """The hook function of a module's globals, refused at load unless it
    can be called as hook(host, client, item) and its body would run."""
    import inspect
    hook = d.get("hook")
    if hook is None:
        raise LoadError("no hook(host, client, item) function")
    if not callable(hook):
        raise LoadError("hook is a %s, not a function" % type(hook).__name__)
    if inspect.isasyncgenfunction(hook) or inspect.isgeneratorfunction(hook):
        raise LoadError("hook is a generator function: calling it would not run its body")
    try:
        sig = inspect.signature(hook)
    except (TypeError, ValueError):
        return hook  # a builtin or extension callable: nothing to check
    try:
        sig.bind(None, None, None)
    except TypeError as e:
        raise LoadError("def hook%s cannot be called as hook(host, client, item): %s" % (sig, e)) from None
    return hook


def check_imports(src):
    """Import what python_code imports at its top level, so that a missing
    module is refused at load rather than failing every run. Imports inside
    try, if or functions may be optional and are left to run time."""
    import ast
    import importlib
    for node in ast.parse(src).body:
        if isinstance(node, ast.Import):
            for a in node.names:
                importlib.import_module(a.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mod = importlib.import_module(node.module)
            for a in node.names:
                if a.name != "*" and not hasattr(mod, a.name):
                    try:
                        importlib.import_module(node.module + "." + a.name)
                    except ImportError:
                        raise ImportError("cannot import name %r from %r" % (a.name, node.module)) from None


def has_children():
    """Whether the worker has any child left, reaping those that exited: a
    cheap test, so that the /proc walk below is only paid when needed."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        except OSError:
            return True
        if pid == 0:
            return True


def descendants(me):
    """The pids of me's descendants, from one pass over /proc/*/stat."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1:
            kids.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], list(kids.get(me, ()))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def kill_descendants():
    """Kill and reap every process a run left behind. The worker is a child
    subreaper, so processes that left the group (setsid) and lost their
    parent become its children and are found here too."""
    me = os.getpid()
    for _ in range(16):
        if not has_children():
            return
        for p in descendants(me):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.waitpid(-1, 0)
        except OSError:
            pass


def set_subreaper():
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001 - not Linux, or no libc: best effort
        pass


WATCH_LIMIT = 64  # module files reported for reload, at most

# The answer to a run that went well and imported nothing new, the most
# frequent frame: encoded once.
DONE_OK = json.dumps({"op": "done", "ok": True, "files": None}).encode() + b"\n"


class ItemParser:
    """Parses item XML with one ElementTree parser kept for the worker's
    life, each item a child of a root opened once: making an expat parser
    costs about as much as parsing a small item. Anything that does not
    parse as exactly one element (with at most whitespace around it) goes
    to ET.fromstring, which gives the same tree or the error it always
    gave, and the parser is made again."""

    def __init__(self):
        self.parser = None

    def open(self):
        events = []
        p = ET.XMLParser(target=ET.TreeBuilder())
        p._setevents(events, ("start",))
        p.feed("<hookctl-items>")
        p._setevents(events, ())
        self.parser, self.root = p, events[0][1]

    def parse(self, xml):
        try:
            if self.parser is None:
                self.open()
            root = self.root
            self.parser.feed(xml + "<end/>")
            ok = len(root) == 2 and root[1].tag == "end" and (root.text is None or not root.text.strip())
            el = root[0] if ok else None
            del root[:]
            root.text = None
            if ok and (el.tail is None or not el.tail.strip()):
                el.tail = None
                return el
        except Exception:  # noqa: BLE001 - whatever it is, fromstring says it
            pass
        self.parser = None
        return ET.fromstring(xml)


class Worker:
    def __init__(self, marker):
        self.proto = Protocol()
        self.host = Host(self.proto)
        self.marker = marker
        self.hook = None   # python, python_file: the hook function
        self.code = None   # python_code: the compiled code
        self.ns = None     # python_code: its globals, kept between items
        self.loop = None   # the event loop of async hooks, made on first use
        self.root = None   # the directory whose modules are watched
        self.nmods = -1    # len(sys.modules) when the files were last listed
        # Every run starts in this directory with this sys.path.
        self.cwd = os.getcwd()
        self.cwd_fd = os.open(self.cwd, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        os.set_inheritable(self.cwd_fd, False)
        self.path = list(sys.path)
        self.items = ItemParser()

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
            self.root = d
            mod = types.ModuleType("hookctl_hook")
            mod.__file__ = path
            sys.modules["hookctl_hook"] = mod
            exec(code, mod.__dict__)
            self.hook = hook_of(mod.__dict__)
        elif typ == "python":
            import importlib
            mod = importlib.import_module(arg)
            self.hook = hook_of(mod.__dict__)
            top = getattr(sys.modules.get(arg.split(".")[0]), "__file__", None)
            if isinstance(top, str):
                # A package's root is its directory, a module's the one it is in.
                self.root = os.path.dirname(os.path.abspath(top))
        elif typ == "python_code":
            import ast
            self.code = compile(arg, "<python_code>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            check_imports(arg)
            self.ns = {"__name__": "hookctl_code", "__builtins__": __builtins__}
        else:
            raise LoadError("unknown hook type %r" % typ)
        self.path = list(sys.path)

    def files(self):
        """The files of the loaded modules under the hook's root, or None
        when no module was imported since the last call."""
        if self.root is None or len(sys.modules) == self.nmods:
            return None
        self.nmods = len(sys.modules)
        root = self.root + os.sep
        out = set()
        for m in list(sys.modules.values()):
            f = getattr(m, "__file__", None)
            if isinstance(f, str) and f.startswith(root):
                out.add(f)
        return sorted(out)[:WATCH_LIMIT]

    def item_of(self, ev, item_xml):
        """The item a hook receives: an ElementTree Element that also reads
        as Twisted's domish.Element (Item, in domish.py)."""
        if item_xml:
            return item_from(self.items.parse(item_xml))
        kind = ev.get("kind", "")
        ns = "{http://jabber.org/protocol/pubsub#event}"
        if kind in ("publish", "retract"):
            el = ET.Element(ns + ("item" if kind == "publish" else "retract"))
            if ev.get("item_id"):
                el.set("id", ev["item_id"])
            return item_from(el)
        # purge and delete have no item: the element names the node.
        return item_from(ET.Element(ns + (kind or "event"), {"node": ev.get("node", "")}))

    def reset(self):
        """Undo what the previous run changed of the process's shared state."""
        sys.stdout, sys.stderr = STDOUT, STDERR
        os.fchdir(self.cwd_fd)  # no path lookup, unlike chdir
        sys.path[:] = self.path

    def run(self, msg):
        client = msg.get("client") or {}
        ev = msg.get("event") or {}
        item = self.item_of(ev, msg.get("item_xml"))
        client = Client(client.get("profile", ""), JID(client.get("jid", "")), types.SimpleNamespace(**ev))
        if self.code is not None:
            self.ns["host"] = self.host
            self.ns["client"] = client
            self.ns["item"] = item
            result = eval(self.code, self.ns)
        else:
            result = self.hook(self.host, client, item)
        if result is not None and hasattr(result, "__await__"):
            # async def hook, or python_code with a top-level await: run it
            # to completion, in one loop kept for the worker's life.
            if self.loop is None:
                import asyncio
                self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(result)

    def reply(self, obj):
        """Send an answer, after the marker that ends the output before it."""
        STDOUT.flush()
        STDERR.flush()
        os.write(1, self.marker)
        if type(obj) is bytes:
            self.proto.send_raw(obj)
        else:
            self.proto.send(obj)

    def serve(self):
        proto = self.proto
        while True:
            msg = proto.recv()
            if msg is None:
                return
            op = msg.get("op")
            if op == "load":
                try:
                    self.load(msg.get("type"), msg.get("arg", ""))
                except BaseException as e:  # noqa: B036 - a hook may raise SystemExit
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    tb = "" if isinstance(e, (LoadError, SyntaxError)) else tb_text(e)
                    self.reply({"op": "load_error", "error": exc_text(e), "traceback": tb})
                    continue
                self.reply({"op": "loaded", "files": self.files() or []})
            elif op == "run":
                with proto.lock:
                    proto.running = True
                error = None
                try:
                    self.reset()
                    self.run(msg)
                except BaseException as e:
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    error = e
                with proto.lock:
                    proto.running = False
                kill_descendants()
                files = self.files()
                if error is not None:
                    self.reply({"op": "done", "ok": False, "error": exc_text(error),
                                "traceback": tb_text(error), "files": files})
                elif files is None:
                    self.reply(DONE_OK)
                else:
                    self.reply({"op": "done", "ok": True, "files": files})
            else:
                self.reply({"op": "done", "ok": False, "error": "unknown op %r" % op})


def kill_all_descendants():
    """Kill every process below this one and reap them (the keeper's end)."""
    me = os.getpid()
    for _ in range(16):
        pids = descendants(me)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.001)
                break


WORKER_PID = 0  # the keeper's child, once forked


def keeper_finish(code, sig):
    """End the keeper: kill everything below it, then end as the worker
    did (exit code, or the signal that killed it)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
    kill_all_descendants()
    if sig:
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(code)


def keeper_signals():
    """The keeper's signal handlers, set before the fork so that no signal
    finds it without them: SIGTERM (the backend asks, or died: the
    parent-death signal) ends everything; SIGUSR1 (a stack dump request)
    goes on to the worker."""
    def forward(*_):
        if WORKER_PID:
            os.kill(WORKER_PID, signal.SIGUSR1)
    signal.signal(signal.SIGTERM, lambda *_: keeper_finish(0, signal.SIGKILL))
    signal.signal(signal.SIGUSR1, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def keep(worker):
    """The keeper: the process the backend started, parent and subreaper of
    the worker, running no hook code. When the worker ends, when the
    backend asks (SIGTERM) or dies (SIGTERM as parent-death signal), it
    kills every process below it, including those a hook started that left
    the process group, and ends as the worker did."""
    os.close(3)  # only the worker speaks the protocol: its death is EOF
    os.close(4)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            keeper_finish(0, 0)
        if pid == worker:
            code = os.waitstatus_to_exitcode(status)
            keeper_finish(max(code, 0), -code if code < 0 else 0)


def become_worker(keeper):
    """Undo the keeper's signal handlers in the forked worker, and have it
    killed if the keeper goes (PR_SET_PDEATHSIG)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Registered again: faulthandler still counts the registration made
    # before the fork, which the keeper's handler replaced.
    faulthandler.unregister(signal.SIGUSR1)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the keeper's kill still reaches it
        pass
    if os.getppid() != keeper:
        os._exit(1)  # the keeper died before the line above


def main():
    global WORKER_PID
    # argv: - hookctl-worker TYPE MARKER MEMORY
    marker = sys.argv[3].encode() if len(sys.argv) > 3 else b"\0hookctl-end\0"
    memory = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    set_subreaper()
    keeper_signals()
    keeper = os.getpid()
    worker = os.fork()
    if worker:
        WORKER_PID = worker
        keep(worker)
    become_worker(keeper)
    # The worker: a subreaper too, so that what a run leaves is found at
    # its end (kill_descendants).
    set_subreaper()
    if memory > 0:
        import resource
        # Soft and hard: the hook cannot raise it again.
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # The program came from stdin: drop the '' entry it put on sys.path (the
    # working directory must not shadow modules) and give hooks an empty stdin.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    sys.stdin = open(os.devnull)
    sys.stdout, sys.stderr = STDOUT, STDERR
    worker = Worker(marker)
    os.write(1, marker)  # ready: what the Go side times starts now
    worker.serve()

# worker.go appends domish.py and the call to main().
