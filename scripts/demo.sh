#!/usr/bin/env bash
# The main job, on a fresh machine: a private Prosody, `hookctl serve
# --watch examples/`, an item published, the hooks' effects and runs shown,
# then everything cleaned up. Run it with `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prosody >/dev/null 2>&1; then
  echo "==> installing Prosody (apt-get install -y prosody)"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq prosody
fi

work=$(mktemp -d /tmp/hookctl-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export HOOKCTL_SOCKET="$work/hookctl.sock"
export HOOK_TOKEN=demo-token   # used by the example http hook's header
hookctl=bin/hookctl

echo "==> building"
go build -o "$work/devserver" ./internal/cmd/devserver
[ -x "$hookctl" ] || go build -o "$hookctl" ./cmd/hookctl

# Tested servers: Prosody 0.12.3 (this demo) and ejabberd 23.01; see
# docs/SERVERS.md.
echo "==> starting a private Prosody on loopback ($(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo 'version unknown'); tested: Prosody 0.12, ejabberd 23.01, see docs/SERVERS.md)"
"$work/devserver" -dir "$work" &
pids+=($!)
for _ in $(seq 100); do [ -f "$work/ready" ] && break; sleep 0.1; done
[ -f "$work/ready" ] || { echo "Prosody did not start"; exit 1; }

echo "==> $hookctl serve --config $work/backend.yaml --watch examples/"
"$hookctl" serve --config "$work/backend.yaml" --watch examples/ --log-level warn &
pids+=($!)
for _ in $(seq 100); do "$hookctl" status >/dev/null 2>&1 && break; sleep 0.1; done

echo "==> creating the node the example hooks watch"
"$hookctl" pubsub node create -s pubsub.localhost -n blog

# until DESC CMD…: wait up to 10 s for CMD to succeed; fail the demo if not.
until_ok() {
  local desc=$1; shift
  for _ in $(seq 100); do "$@" && return 0; sleep 0.1; done
  echo "demo FAILED: $desc" >&2
  "$hookctl" status >&2 || true
  exit 1
}
hooks_applied() { [ "$("$hookctl" hook list -O json 2>/dev/null | grep -c '"node"')" -ge 4 ]; }
subscribed() { "$hookctl" status -o json | grep -q '"subscriptions": [1-9]'; }
hooks_ran() { [ "$("$hookctl" runs -o json | grep -c '"outcome": "ok"')" -ge 4 ]; }

echo "==> the hooks applied from examples/hooks.yaml"
until_ok "the 4 example hooks were not applied" hooks_applied
"$hookctl" hook list
"$hookctl" diff -f examples/ || true

# The subscriptions are made asynchronously: wait until they are in place.
until_ok "the backend did not subscribe to the node" subscribed

echo "==> publishing an item"
cat <<'XML' | "$hookctl" pubsub publish -s pubsub.localhost -n blog -i post-hello
<entry xmlns='http://www.w3.org/2005/Atom'><title>Hello from hookctl</title></entry>
XML

echo "==> waiting for the hooks to run"
until_ok "the 4 example hooks did not all run ok" hooks_ran
echo "==> hookctl runs"
"$hookctl" runs
echo "==> hookctl status"
"$hookctl" status
echo "==> done; cleaning up"
