#!/bin/sh
# Example exec hook: the event arrives as JSON on stdin (HOOK_* variables
# are set too); print the item's id. The exit code is the run's result.
set -eu
python3 -c 'import json, sys; print("item", json.load(sys.stdin).get("item_id", ""))'
