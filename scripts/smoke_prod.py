"""The production smoke's driver (run by scripts/smoke_prod.sh with the fresh venv's Python).

  reset        drop and re-create the database of DATABASE_URL, flush the Redis DBs of
               CELERY_BROKER_URL and CACHE_URL
  free-port    print a free TCP port on 127.0.0.1
  wait-ready   wait until the API at --base-url answers health 200
  check        through HTTP: log in, run a workflow with tool steps in two parallel branches
               joined, talk to the demo agent (in the API and on a worker), check the results
  execute      run the smoke workflow once (for the outage measurement); exit 0 on success

The HTTP part uses httpx from the fresh venv (a runtime requirement). Every wait is bounded.
"""

import argparse
import os
import socket
import sys
import time
import urllib.parse
import uuid

import httpx

FINISHED = {"succeeded", "failed", "cancelled", "timed_out", "rejected"}
HTTP_TIMEOUT = 30


class SmokeFailure(Exception):
    pass


# --- setup ---------------------------------------------------------------------------------------
def reset() -> None:
    import psycopg
    import redis

    url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    name = url.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise SmokeFailure(f"unexpected database name {name!r}")
    admin = urllib.parse.urlunsplit(url._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    for var in ("CELERY_BROKER_URL", "CACHE_URL"):
        value = os.environ.get(var, "")
        if value.startswith("redis://"):
            redis.Redis.from_url(value, socket_timeout=10).flushdb()
    print(f"database {name} re-created, Redis DBs flushed")


def free_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        print(sock.getsockname()[1])


# --- HTTP ----------------------------------------------------------------------------------------
class Api:
    def __init__(self, base_url: str):
        self.http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1",
            timeout=HTTP_TIMEOUT,
            headers={"Accept": "application/json"},
        )

    def call(self, method: str, path: str, body=None, *, expect=(200,)) -> dict:
        response = self.http.request(method, path, json=body)
        if response.status_code not in expect:
            raise SmokeFailure(
                f"{method} {path}: {response.status_code} (expected {expect}): {response.text[:500]}"
            )
        return response.json() if response.content else {}

    def login(self, username: str, password: str) -> dict:
        tokens = self.call("POST", "/auth/login", {"username": username, "password": password})
        self.http.headers["Authorization"] = f"Bearer {tokens['access']}"
        return self.call("GET", "/auth/me")

    def find(self, collection: str, name: str) -> dict:
        results = self.call("GET", f"/{collection}?search={urllib.parse.quote(name)}")["results"]
        for item in results:
            if item["name"] == name:
                return item
        raise SmokeFailure(f"no {collection} named {name!r} (seed_demo should have made it)")


def wait_until(what: str, timeout: float, probe, interval: float = 0.25):
    """Call `probe` until it returns a true value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (httpx.HTTPError, OSError, SmokeFailure) as exc:  # not up yet / transient
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise SmokeFailure(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r:.500})")


def wait_ready(base_url: str, timeout: float) -> None:
    api = Api(base_url)

    def healthy():
        body = api.call("GET", "/system/health", expect=(200, 503))
        if body.get("status") != "ok":
            raise SmokeFailure(f"health: {body}")
        return body

    body = wait_until("the API to answer health 200", timeout, healthy)
    print("API ready:", {name: c["status"] for name, c in body["components"].items()})


def smoke_definition(calculator_id: str) -> dict:
    """Two calculator steps in parallel branches, joined by a transform."""
    return {
        "inputs": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}},
        "nodes": [
            {"id": "start", "type": "transform", "config": {"template": "{{ inputs.x }}"}},
            {
                "id": "left",
                "type": "tool",
                "config": {"tool_id": calculator_id, "arguments": {"expression": "6*7"}},
            },
            {
                "id": "right",
                "type": "tool",
                "config": {
                    "tool_id": calculator_id,
                    "arguments": {"expression": "{{ steps.start.output }} * 2"},
                },
            },
            {
                "id": "join",
                "type": "transform",
                "config": {"template": "{{ steps.left.output.result + steps.right.output.result }}"},
            },
        ],
        "edges": [
            {"source": "start", "target": "left"},
            {"source": "start", "target": "right"},
            {"source": "left", "target": "join"},
            {"source": "right", "target": "join"},
        ],
        "outputs": {
            "left": "{{ steps.left.output.result }}",
            "right": "{{ steps.right.output.result }}",
            "sum": "{{ steps.join.output }}",
        },
    }


def ensure_workflow(api: Api) -> dict:
    calculator = api.find("tools", "calculator")
    name = "smoke-fan-out"
    existing = [w for w in api.call("GET", f"/workflows?search={name}")["results"] if w["name"] == name]
    if existing:
        return existing[0]
    body = {"name": name, "definition": smoke_definition(calculator["id"])}
    return api.call("POST", "/workflows", body, expect=(201,))


def run_workflow(api: Api, workflow: dict, x: int, timeout: float) -> dict:
    started = api.call(
        "POST",
        f"/workflows/{workflow['id']}/execute",
        {"inputs": {"x": x}},
        expect=(202,),
    )

    def finished():
        execution = api.call("GET", f"/workflows/executions/{started['id']}")
        return execution if execution["status"] in FINISHED else None

    execution = wait_until(f"execution {started['id']} to finish", timeout, finished)
    expected = {"left": 42, "right": 2 * x, "sum": 42 + 2 * x}
    if execution["status"] != "succeeded" or execution["outputs"] != expected:
        raise SmokeFailure(
            f"execution {execution['id']}: {execution['status']}, outputs {execution['outputs']} "
            f"(expected succeeded, {expected}); error: {execution.get('error')}"
        )
    steps = {s["node_id"]: s["status"] for s in execution["steps"]}
    if steps != dict.fromkeys(("start", "left", "right", "join"), "succeeded"):
        raise SmokeFailure(f"execution {execution['id']}: steps {steps}")
    return execution


def check(base_url: str, timeout: float) -> None:
    api = Api(base_url)
    admin = api.login(os.environ["SMOKE_ADMIN_USERNAME"], os.environ["SMOKE_ADMIN_PASSWORD"])
    if admin["role"] != "admin":
        raise SmokeFailure(f"the admin account has role {admin['role']!r}")
    print("admin login ok")

    me = api.login(os.environ["SMOKE_DEVELOPER_USERNAME"], os.environ["SMOKE_DEVELOPER_PASSWORD"])
    if me["role"] != "developer":
        raise SmokeFailure(f"the developer account has role {me['role']!r}")
    print("developer login ok")

    workflow = ensure_workflow(api)
    execution = run_workflow(api, workflow, 5, timeout)
    print(f"workflow (2 tool steps in parallel, joined) succeeded: {execution['outputs']}")

    agent = api.find("agents", "echo-assistant")
    ask = {"input": 'call calculator {"expression": "6*7"}'}
    run = api.call("POST", f"/agents/{agent['id']}/interact", ask)
    if run["status"] != "succeeded" or "42" not in (run.get("output") or ""):
        raise SmokeFailure(f"agent interact: {run['status']}, output {run.get('output')!r}")
    print(f"agent (in the API) answered: {run['output']}")

    queued = api.call("POST", f"/agents/{agent['id']}/interact", {**ask, "background": True}, expect=(202,))

    def done():
        current = api.call("GET", f"/agents/runs/{queued['id']}")
        return current if current["status"] in FINISHED else None

    run = wait_until(f"background agent run {queued['id']} to finish", timeout, done)
    if run["status"] != "succeeded" or "42" not in (run.get("output") or ""):
        raise SmokeFailure(f"background agent run: {run['status']}, output {run.get('output')!r}")
    print(f"agent (on a worker) answered: {run['output']}")

    api.login(os.environ["SMOKE_ADMIN_USERNAME"], os.environ["SMOKE_ADMIN_PASSWORD"])
    check_system(api, timeout)


def check_system(api: Api, timeout: float) -> None:
    """The operator's API against the real cluster: both workers and beat seen, a pool restart
    answered by both, a backup written by a worker, maintenance mode reaching every API process."""

    def cluster_seen():
        body = api.call("GET", "/system/status")
        workers = body["components"]["workers"]
        pinged = [w for w in workers.get("workers", []) if w["source"] == "ping"]
        beat = body["components"]["beat"]
        return body if len(pinged) >= 2 and beat["status"] == "up" else None

    status = wait_until("status to show 2 live workers and beat", timeout, cluster_seen, interval=1)
    names = sorted(w["name"] for w in status["components"]["workers"]["workers"])
    print(
        f"status {status['status']}: workers {names}, beat ticks {status['components']['beat'].get('ticks')}"
    )

    restart = api.call("POST", "/system/restart/workers", {}, expect=(202,))
    answered = sorted(reply.get("worker", "?") for reply in restart["replies"] if "error" not in reply)
    if len(answered) < 2:
        raise SmokeFailure(f"pool restart: replies {restart['replies']}")
    print(f"pool restart answered by {answered}")

    backup = api.call("POST", "/system/backup", {"format": "portable"}, expect=(202,))

    def backup_done():
        current = api.call("GET", f"/system/backups/{backup['id']}")
        return current if current["status"] in ("succeeded", "failed") else None

    backup = wait_until(f"backup {backup['id']}", timeout, backup_done)
    if backup["status"] != "succeeded" or not backup["size_bytes"] or len(backup["sha256"]) != 64:
        raise SmokeFailure(f"backup: {backup}")
    print(f"backup written by a worker: {backup['size_bytes']} bytes, sha256 {backup['sha256'][:12]}…")

    api.call("PUT", "/system/config", {"values": {"MAINTENANCE_MODE": True}})
    try:

        def every_process_refuses_writes():
            # uvicorn runs 2 processes: 6 writes in a row all refused means both have seen it
            codes = {
                api.http.post("/observability/alerts", json={"title": "maintenance?"}).status_code
                for _ in range(6)
            }
            return codes == {503}

        wait_until("maintenance mode in every API process", timeout, every_process_refuses_writes)
        api.call("GET", "/system/info")  # reads keep working
    finally:
        api.call("PUT", "/system/config", {"values": {"MAINTENANCE_MODE": None}})
    print("maintenance mode: writes 503 in every API process, reads 200; switched off again")


def execute_once(base_url: str, timeout: float) -> None:
    api = Api(base_url)
    api.login(os.environ["SMOKE_DEVELOPER_USERNAME"], os.environ["SMOKE_DEVELOPER_PASSWORD"])
    run_workflow(api, ensure_workflow(api), int(uuid.uuid4().int % 1000), timeout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["reset", "free-port", "wait-ready", "check", "execute"])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--timeout", type=float, default=60, help="seconds any one wait may take")
    args = parser.parse_args()
    try:
        if args.command == "reset":
            reset()
        elif args.command == "free-port":
            free_port()
        elif args.command == "wait-ready":
            wait_ready(args.base_url, args.timeout)
        elif args.command == "check":
            check(args.base_url, args.timeout)
        else:
            execute_once(args.base_url, args.timeout)
    except SmokeFailure as exc:
        print(f"SMOKE FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
