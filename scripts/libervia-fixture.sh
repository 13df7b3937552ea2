#!/bin/bash
# Regenerates cmd/hookctl/testdata/libervia/libervia.db, the fixture of
# `hookctl import libervia`, by running the real reference: Debian's
# libervia-backend and libervia-cli (0.9.0~hg3993), a private Prosody on
# loopback and a private D-Bus session bus. Persistent hooks are created
# with the reference's own CLI (`pubsub hook create --persistent`), so the
# database holds exactly what Libervia stores.
#
#   apt-get install -y prosody libervia-backend libervia-cli
#   scripts/libervia-fixture.sh [OUT.db]
#
# The hook scripts live under $FIXTURE (a fixed path, so the fixture is
# reproducible): the test maps that prefix to its own directory with
# `import libervia --path-map`. Everything it starts is stopped by PID at
# exit; nothing is left running.
set -euo pipefail

OUT=${1:-$(cd "$(dirname "$0")/.." && pwd)/cmd/hookctl/testdata/libervia/libervia.db}
FIXTURE=/tmp/libervia-fixture
# The backend's #!/usr/bin/env python3 must find Debian's python3.
export PATH=/usr/bin:/bin:/usr/sbin:/sbin

rm -rf "$FIXTURE"
mkdir -p "$FIXTURE"/{home,config,data,cache,prosody/data,run}
export HOME=$FIXTURE/home XDG_CONFIG_HOME=$FIXTURE/config XDG_DATA_HOME=$FIXTURE/data XDG_CACHE_HOME=$FIXTURE/cache

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT

# 1. A private Prosody on a free loopback port (plain c2s: loopback only).
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$FIXTURE/prosody/prosody.cfg.lua" <<EOF
$([ "$(id -u)" = 0 ] && echo 'run_as_root = true')
daemonize = false
pidfile = "$FIXTURE/prosody/prosody.pid"
data_path = "$FIXTURE/prosody/data"
admin_socket = "$FIXTURE/prosody/admin.sock"
interfaces = { "127.0.0.1" }
c2s_ports = { $PORT }
s2s_ports = { }
http_ports = { }
https_ports = { }
component_ports = { }
c2s_direct_tls_ports = { }
modules_enabled = { "disco"; "roster"; "saslauth"; "pep"; "ping"; "posix" }
modules_disabled = { "s2s"; "offline" }
authentication = "internal_hashed"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
log = { { levels = { min = "info" }, to = "file", filename = "$FIXTURE/prosody/prosody.log" } }
VirtualHost "localhost"
Component "pubsub.localhost" "pubsub"
EOF
prosodyctl --config "$FIXTURE/prosody/prosody.cfg.lua" register alice localhost alicepass
prosodyctl --config "$FIXTURE/prosody/prosody.cfg.lua" register bob localhost bobpass
prosody -F --config "$FIXTURE/prosody/prosody.cfg.lua" &
pids+=($!)

# 2. A private session bus without service directories, so that no CLI
# call can start a backend behind our back.
cat >"$FIXTURE/run/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$FIXTURE/run/bus</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
dbus-daemon --config-file="$FIXTURE/run/bus.conf" --nofork --print-pid=3 3>"$FIXTURE/run/bus.pid" &
pids+=($!)
export DBUS_SESSION_BUS_ADDRESS=unix:path=$FIXTURE/run/bus
for _ in $(seq 50); do [ -S "$FIXTURE/run/bus" ] && break; sleep 0.1; done

# 3. The Libervia backend, with its config and data in $FIXTURE.
mkdir -p "$XDG_CONFIG_HOME/libervia"
cat >"$XDG_CONFIG_HOME/libervia/libervia.conf" <<EOF
[DEFAULT]
bridge = dbus
local_dir = $FIXTURE/data/libervia
EOF
mkdir -p "$FIXTURE/data/libervia"
(cd "$FIXTURE/run" && exec libervia-backend fg >"$FIXTURE/run/backend.log" 2>&1) &
pids+=($!)
li() { timeout 60 libervia-cli "$@"; }
for _ in $(seq 300); do li profile list >/dev/null 2>&1 && break; sleep 0.2; done
li profile list >/dev/null

# 4. Two profiles, connected to the private Prosody.
for who in alice bob; do
	li profile create "$who" -j "$who@localhost" -x "${who}pass"
	li param set -p "$who" Connection "Force server" 127.0.0.1
	li param set -p "$who" Connection "Force port" "$PORT"
	li param set -p "$who" Connection check_certificate false
	li profile connect -p "$who" -c
done

# 5. Persistent hooks, made with the reference's CLI. Only python_file is
# implemented by this Libervia; the others are tried too (the backend
# refuses them, and stores nothing).
mkdir -p "$FIXTURE/home/hooks"
cat >"$FIXTURE/home/hooks/neat.py" <<'EOF'
def hook(host, client, item):
    print("neat", item["id"])
EOF
cat >"$FIXTURE/home/hooks/blog.py" <<'EOF'
def hook(host, client, item):
    print("blog", item.getAttribute("id"))
EOF
cd "$FIXTURE/home"
li pubsub hook create -p alice -n urn:xmpp:microblog:0 -t python_file --persistent hooks/neat.py
li pubsub hook create -p alice -n urn:xmpp:microblog:0 -t python_file --persistent hooks/blog.py
li pubsub hook create -p alice -s pubsub.localhost -n news -t python_file --persistent hooks/neat.py
li pubsub hook create -p alice -s pubsub.localhost -n news -t python_file --persistent hooks/neat.py # a duplicate: the reference allows it
li pubsub hook create -p bob -s pubsub.localhost -n 'events/été' -t python_file --persistent "$FIXTURE/home/hooks/blog.py"
li pubsub hook create -p alice -n temp -t python_file hooks/neat.py # temporary: never stored
li pubsub hook create -p alice -n code -t python_code --persistent 'print(item)' || echo "python_code refused by the reference (expected)"
li pubsub hook create -p alice -n mod -t python --persistent json || echo "python refused by the reference (expected)"
li pubsub hook list -p alice -O json
li pubsub hook list -p bob -O json

# 6. Stop the backend cleanly, then copy its database.
li profile disconnect -p alice || true
li profile disconnect -p bob || true
cleanup
trap - EXIT
# What is not about hooks is dropped (the throwaway accounts' OMEMO keys
# and encrypted passwords; nothing hookctl reads), then the file is
# compacted. The PUBSUB_HOOK rows and the tables stay as Libervia wrote them.
cp "$FIXTURE/data/libervia/libervia.db" "$OUT"
python3 - "$OUT" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("DELETE FROM private_ind_bin WHERE namespace != 'PUBSUB_HOOK'")
db.execute("DELETE FROM private_gen_bin")
db.execute("DELETE FROM private_ind")
db.execute("DELETE FROM param_ind WHERE name = 'Password'")
db.commit()
db.execute("VACUUM")
db.close()
PY
ls -l "$OUT"
