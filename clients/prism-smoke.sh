#!/usr/bin/env bash
# prism-smoke.sh: a validating proxy in front of a real local keyvend.
# Starts `keyvend serve` (embedded moto) and `prism proxy` with
# pkg/httpapi/openapi.json and --errors, on free loopback ports, and sends
# the README's calls through Prism: each must reach keyvend (not a Prism
# error: no 401 for the missing credentials of a local call), get the
# status the document promises, and pass Prism's validation of the
# request and of keyvend's answer. A reason the server would refuse must be
# refused by Prism already (the document carries the server's pattern).
# Run by `make openapi-check`; needs npm ci (Prism) and moto_server.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
up() { # up URL LOG: wait until URL answers, at most 60 s
	for _ in $(seq 1 120); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.5
	done
	echo "prism-smoke: $1 did not come up:"; tail -20 "$2"; return 1
}

go build -o "$dir/keyvend" ./cmd/keyvend
kv=$(port)
KEYVEND_LISTEN=127.0.0.1:$kv "$dir/keyvend" serve --env-file "$dir/local.env" >"$dir/serve.log" 2>&1 &
pids+=($!)
up "http://127.0.0.1:$kv/v1/openapi.json" "$dir/serve.log"
pp=$(port)
./node_modules/.bin/prism proxy pkg/httpapi/openapi.json "http://127.0.0.1:$kv" --errors -h 127.0.0.1 -p "$pp" >"$dir/prism.log" 2>&1 &
pids+=($!)
up "http://127.0.0.1:$pp/v1/openapi.json" "$dir/prism.log"

P=http://127.0.0.1:$pp
fail=0
# call WANT METHOD PATH [BODY]: through Prism; the answer must be keyvend's
# with status WANT (or, for WANT=prism-422, Prism's own refusal).
call() {
	local want=$1 method=$2 path=$3 body=${4-}
	local args=(-sS -o "$dir/body" -D "$dir/headers" -w '%{http_code}' -X "$method" "$P$path")
	[ -n "$body" ] && args+=(-H 'Content-Type: application/json' -d "$body")
	local got
	got=$(curl "${args[@]}")
	local prism=no
	grep -q 'stoplight.io/prism' "$dir/body" && prism=yes
	if [ "$want" = prism-422 ]; then
		if [ "$got" != 422 ] || [ $prism = no ]; then
			echo "FAIL $method $path: $got, want Prism's own 422 (the document's pattern): $(cat "$dir/body")"; fail=1
		else
			echo "ok   $method $path: refused by Prism (the document's pattern)"
		fi
		return
	fi
	if [ "$got" != "$want" ] || [ $prism = yes ] || grep -qi '^sl-violations:' "$dir/headers"; then
		echo "FAIL $method $path: $got, want keyvend's $want: $(cat "$dir/body") $(grep -i '^sl-violations:' "$dir/headers" || true)"; fail=1
	else
		echo "ok   $method $path: $got"
	fi
}

u=readme-prism
call 200 GET /v1/openapi.json
call 201 POST /v1/users '{"user":"'$u'","grants":[{"bucket":"site.example.com","access":"read-write","prefix":""}],"reason":"blog deploys","expires_in":"720h"}'
call 200 GET /v1/users/$u
call 200 GET '/v1/users?limit=1'
call 200 POST /v1/users/$u/rotate '{}'
call 200 PUT /v1/users/$u/grants '{"grants":[{"bucket":"site.example.com","access":"read-write"},{"bucket":"assets.example.com","access":"write-only","prefix":"img/"}]}'
call 200 GET /v1/users/$u/history
call 204 DELETE /v1/users/$u
call 404 GET /v1/users/$u
call 200 GET '/v1/requests?status=pending'
call 404 GET /v1/requests/apr-00000000000000000000
call 404 POST /v1/requests/apr-00000000000000000000/approve '{"reason":"ticket OPS-42"}'
call prism-422 POST /v1/users '{"user":"x","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"tab\there"}'
if grep -qi 'violation' "$dir/prism.log"; then
	echo "FAIL Prism reported violations:"; grep -i -B2 'violation' "$dir/prism.log" | cut -c1-300; fail=1
fi
exit $fail
