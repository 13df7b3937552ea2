#!/bin/sh
# Runs every fuzz target for a short, bounded time (go test -fuzz takes one
# target at a time). FUZZTIME overrides the time per target (default 10s).
set -eu
t=${FUZZTIME:-10s}
go test ./spec -run '^$' -fuzz '^FuzzParse$' -fuzztime "$t"
go test ./xmppsession -run '^$' -fuzz '^FuzzDecodeEvent$' -fuzztime "$t"
go test ./xmppsession -run '^$' -fuzz '^FuzzPublishPayload$' -fuzztime "$t"
go test ./api -run '^$' -fuzz '^FuzzDecodeRequest$' -fuzztime "$t"
go test ./spec -run '^$' -fuzz '^FuzzDecodeSplit$' -fuzztime "$t"
