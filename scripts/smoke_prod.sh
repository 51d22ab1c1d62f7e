#!/usr/bin/env bash
# Production smoke: a fresh virtual environment from requirements.txt ALONE, prod settings,
# uvicorn with 2 workers, 2 Celery workers, beat, on PostgreSQL and Redis; through HTTP it logs
# in, runs a workflow with tool steps in parallel branches, talks to the demo agent, and checks
# the results. Stops everything it started; exits non-zero (printing the logs' tails) on any
# failure or timeout.
#
# The environment may override (defaults in brackets):
#   SMOKE_DATABASE_URL [postgres://postgres@127.0.0.1:5432/agentmesh_smoke]  dropped and re-created
#   SMOKE_BROKER_URL [redis://127.0.0.1:6379/13]  SMOKE_CACHE_URL [redis://127.0.0.1:6379/14]  flushed
#   SMOKE_VENV  an existing venv to use instead of building one (default: a fresh one)
#   SMOKE_TIMEOUT [60]  seconds any one wait may take
#   SMOKE_AFTER  a command run after the checks while everything still runs (measurements);
#                it sees SMOKE_BASE_URL, SMOKE_WORKDIR, SMOKE_PYTHON and the accounts' variables
#   PYTHON  the interpreter that builds the venv [python3]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
STARTED=$(date +%s)
TIMEOUT=${SMOKE_TIMEOUT:-60}

WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/agentmesh-smoke.XXXXXX")
PIDS=()
STATUS=failed

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do  # each was started in a process group of its own
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}

on_exit() {
  local code=$?
  trap - EXIT INT TERM
  stop_all
  if [ "$STATUS" != ok ]; then
    for log in "$WORKDIR"/*.log; do
      [ -e "$log" ] || continue
      echo "----- last lines of $(basename "$log") -----" >&2
      tail -n 25 "$log" >&2
    done
    echo "SMOKE FAILED after $(( $(date +%s) - STARTED ))s (logs kept in $WORKDIR)" >&2
    [ "$code" -ne 0 ] || code=1
  else
    rm -rf "$WORKDIR"
  fi
  exit "$code"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

step() { echo "== [$(( $(date +%s) - STARTED ))s] $*"; }

# --- a fresh venv from requirements.txt alone ---------------------------------------------------
if [ -n "${SMOKE_VENV:-}" ]; then
  VENV=$SMOKE_VENV
  step "using the venv $VENV"
else
  VENV=$WORKDIR/venv
  step "fresh venv from requirements.txt alone"
  "${PYTHON:-python3}" -m venv "$VENV"
  timeout 600 "$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt \
    >"$WORKDIR/pip.log" 2>&1
fi
PY=$VENV/bin/python

# --- production settings ------------------------------------------------------------------------
export DJANGO_SETTINGS_MODULE=agentmesh.settings.prod
SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(64))')
FERNET_KEYS=$("$PY" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
export SECRET_KEY FERNET_KEYS
export DATABASE_URL=${SMOKE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/agentmesh_smoke}
export CELERY_BROKER_URL=${SMOKE_BROKER_URL:-redis://127.0.0.1:6379/13}
export CACHE_URL=${SMOKE_CACHE_URL:-redis://127.0.0.1:6379/14}
export SECURE_SSL_REDIRECT=false SECURE_HSTS_SECONDS=0
export ALLOWED_HOSTS=127.0.0.1,localhost
export AGENTMESH_VAR_DIR=$WORKDIR/var LOG_FORMAT=plain
mkdir -p "$AGENTMESH_VAR_DIR"
PORT=$("$PY" scripts/smoke_prod.py free-port)
export SMOKE_BASE_URL=http://127.0.0.1:$PORT SMOKE_WORKDIR=$WORKDIR SMOKE_PYTHON=$PY
export SMOKE_ADMIN_USERNAME=admin SMOKE_DEVELOPER_USERNAME=developer
SMOKE_ADMIN_PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(18))')
SMOKE_DEVELOPER_PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(18))')
export SMOKE_ADMIN_PASSWORD SMOKE_DEVELOPER_PASSWORD

step "reset ${DATABASE_URL##*/}, flush the broker and cache DBs; migrate; accounts"
"$PY" scripts/smoke_prod.py reset
timeout 300 "$PY" manage.py migrate --noinput >"$WORKDIR/migrate.log" 2>&1
timeout 60 "$PY" manage.py create_user "$SMOKE_ADMIN_USERNAME" --email admin@smoke.invalid --role admin \
  --password-stdin <<<"$SMOKE_ADMIN_PASSWORD"
timeout 60 "$PY" manage.py create_user "$SMOKE_DEVELOPER_USERNAME" --email developer@smoke.invalid \
  --role developer --password-stdin <<<"$SMOKE_DEVELOPER_PASSWORD"
timeout 120 "$PY" manage.py seed_demo   # demo tools and agent for the developer (accounts exist)

# --- the topology ---------------------------------------------------------------------------------
start() {  # start NAME CMD...: in the background, in a process group of its own, log to NAME.log
  local name=$1; shift
  setsid "$@" >"$WORKDIR/$name.log" 2>&1 </dev/null &
  PIDS+=("$!")
}
wait_log() {  # wait_log NAME PATTERN: until the log shows PATTERN (the process must stay up)
  local name=$1 pattern=$2 pid=$3 deadline=$(( $(date +%s) + TIMEOUT ))
  until grep -q "$pattern" "$WORKDIR/$name.log"; do
    kill -0 "$pid" 2>/dev/null || { echo "$name exited before it was ready" >&2; return 1; }
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$name not ready after ${TIMEOUT}s" >&2; return 1; }
    sleep 0.25
  done
}

step "start uvicorn (2 workers), 2 Celery workers, beat on port $PORT"
start api "$VENV/bin/uvicorn" agentmesh.asgi:application --host 127.0.0.1 --port "$PORT" \
  --workers 2 --no-proxy-headers
start worker1 "$VENV/bin/celery" -A agentmesh worker -n smoke1@%h --concurrency 2 -l INFO
start worker2 "$VENV/bin/celery" -A agentmesh worker -n smoke2@%h --concurrency 2 -l INFO
start beat "$VENV/bin/celery" -A agentmesh beat -l INFO -s "$WORKDIR/celerybeat-schedule"
NAMES=(api worker1 worker2 beat)

wait_log worker1 "ready\." "${PIDS[1]}"
wait_log worker2 "ready\." "${PIDS[2]}"
wait_log beat "beat: Starting" "${PIDS[3]}"
"$PY" scripts/smoke_prod.py wait-ready --base-url "$SMOKE_BASE_URL" --timeout "$TIMEOUT"

step "checks through HTTP"
"$PY" scripts/smoke_prod.py check --base-url "$SMOKE_BASE_URL" --timeout "$TIMEOUT"

if [ -n "${SMOKE_AFTER:-}" ]; then
  step "SMOKE_AFTER: $SMOKE_AFTER"
  bash -c "$SMOKE_AFTER"
fi

for i in "${!PIDS[@]}"; do
  kill -0 "${PIDS[$i]}" 2>/dev/null || { echo "${NAMES[$i]} is no longer running" >&2; exit 1; }
done
if [ -z "${SMOKE_AFTER:-}" ] && grep -l "Traceback" "$WORKDIR"/{api,worker1,worker2,beat}.log; then
  echo "a process logged a traceback" >&2
  exit 1
fi
STATUS=ok
step "production smoke passed"
