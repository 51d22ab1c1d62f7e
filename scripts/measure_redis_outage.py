"""Measure a Redis outage on the smoke topology (run by scripts/measure_redis_outage.sh as the
smoke's SMOKE_AFTER step). Kills the throwaway redis-server, tries the API while it is down,
starts it again (empty) and times until a workflow execute succeeds again end to end."""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smoke_prod import Api, SmokeFailure, ensure_workflow, run_workflow, wait_until  # noqa: E402

FINISHED = {"succeeded", "failed", "cancelled", "timed_out", "rejected"}


def start_redis(port: int, log: Path) -> int:
    process = subprocess.Popen(  # noqa: S603
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process.pid


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid-file", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--down-seconds", type=float, default=10)
    args = parser.parse_args()
    api = Api(os.environ["SMOKE_BASE_URL"])
    api.login(os.environ["SMOKE_DEVELOPER_USERNAME"], os.environ["SMOKE_DEVELOPER_PASSWORD"])
    workflow = ensure_workflow(api)

    os.kill(int(args.pid_file.read_text()), signal.SIGKILL)
    down = time.monotonic()
    print(f"redis killed (down for {args.down_seconds:.0f}s)")
    during = None
    for path, body in (
        ("/system/health", None),
        ("/workflows", None),
        (f"/workflows/{workflow['id']}/execute", {"inputs": {"x": 1}}),
    ):
        started = time.monotonic()
        try:
            response = api.http.request("POST" if body else "GET", path, json=body)
            answer = f"{response.status_code} {response.text[:160]}"
            if body and response.status_code == 202:
                during = response.json()["id"]
        except httpx.HTTPError as exc:
            answer = f"{type(exc).__name__}"
        print(
            f"  while down: {'POST' if body else 'GET'} {path} -> {answer} ({time.monotonic() - started:.1f}s)"
        )
    time.sleep(max(0.0, args.down_seconds - (time.monotonic() - down)))

    args.pid_file.write_text(str(start_redis(args.port, args.pid_file.with_suffix(".log"))))
    up = time.monotonic()
    print("redis started again (empty)")
    attempt = 0
    while True:
        attempt += 1
        try:
            run_workflow(api, workflow, attempt, timeout=180)
            break
        except (SmokeFailure, httpx.HTTPError) as exc:
            if time.monotonic() - up > 240:
                raise SmokeFailure(f"no successful execute 240s after redis returned: {exc}") from exc
            print(f"  attempt {attempt} at +{time.monotonic() - up:.1f}s: {exc!s:.200}")
            time.sleep(1)
    print(f"RESULT: a new execute succeeded end to end {time.monotonic() - up:.1f}s after redis returned")
    if during:

        def finished():
            execution = api.call("GET", f"/workflows/executions/{during}")
            return execution if execution["status"] in FINISHED else None

        execution = wait_until("the run accepted during the outage", 240, finished, interval=0.5)
        print(
            f"RESULT: the run accepted during the outage ended {execution['status']} "
            f"{time.monotonic() - up:.1f}s after redis returned"
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SmokeFailure as exc:
        print(f"MEASUREMENT FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
