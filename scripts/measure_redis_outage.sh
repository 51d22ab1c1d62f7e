#!/usr/bin/env bash
# The README's Redis outage figures: the smoke topology on a throwaway redis-server of its own
# (never the machine's), killed mid-run and started again empty. Usage:
#   SMOKE_VENV=/path/to/venv SMOKE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/scratch \
#     scripts/measure_redis_outage.sh [seconds down, default 10]
# The cache shares the throwaway Redis unless MEASURE_CACHE_URL names another (a broker-only outage).
set -euo pipefail
cd "$(dirname "$0")/.."
DOWN=${1:-10}
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
STATE=$(mktemp -d "${TMPDIR:-/tmp}/agentmesh-redis.XXXXXX")

setsid redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >"$STATE/redis.log" 2>&1 &
echo $! >"$STATE/redis.pid"
disown  # the measurement kills it: no job notice
cleanup() { kill -TERM "$(cat "$STATE/redis.pid")" 2>/dev/null || true; rm -rf "$STATE"; }
trap cleanup EXIT
for _ in $(seq 1 40); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.25; done

SMOKE_BROKER_URL=redis://127.0.0.1:$PORT/0 SMOKE_CACHE_URL=${MEASURE_CACHE_URL:-redis://127.0.0.1:$PORT/1} \
SMOKE_AFTER="\$SMOKE_PYTHON scripts/measure_redis_outage.py --pid-file $STATE/redis.pid --port $PORT --down-seconds $DOWN" \
  scripts/smoke_prod.sh
