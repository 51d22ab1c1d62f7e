"""PostgreSQL connections of the production server under concurrent reads.

Starts the API as production runs it (uvicorn --workers 2, agentmesh.settings.prod with a
generated SECRET_KEY/FERNET_KEYS, plain HTTP) on a fresh benchmark database, seeds workflows
and agents, and runs N concurrent keep-alive clients for S seconds (list workflows, workflow
detail, list agents, list executions) while sampling
`SELECT count(*) FROM pg_stat_activity WHERE datname = <db>` every 0.5 s. Reports req/s,
latency, status counts and the most connections seen against the configured pool total
(API processes x DATABASE_POOL_MAX_SIZE).

Each mode runs in the same invocation: `pool` (the default settings) and `no-pool`
(DATABASE_POOL_MAX_SIZE=0, DATABASE_CONN_MAX_AGE=0: a new connection per request, the
baseline). It never runs CONN_MAX_AGE=60 without a pool: that exhausts the server's
max_connections, for everyone on the machine.

    .venv/bin/python benchmarks/db_pool_load.py [--seconds 60] [--clients 16] \
        [--db agentmesh_h7] [--pg postgres://postgres@127.0.0.1:5432]
"""

import argparse
import collections
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-Passw0rd!"
SEED = """
import django
django.setup()
from agentmesh.accounts.models import Role, User
from workflows import services
user = User(username="bench", email="bench@example.com", role=Role.DEVELOPER)
user.set_password({password!r})
user.save()
definition = {{"nodes": [{{"id": "a", "type": "transform", "config": {{"template": "{{{{ inputs.n }}}}"}}}}],
              "edges": [], "outputs": {{"n": "{{{{ steps.a.output }}}}"}}}}
for n in range(40):
    services.workflow_create(owner=user, name=f"bench-{{n}}", definition=definition)

"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(pg: str, db: str, var_dir: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentmesh.settings.prod",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "FERNET_KEYS": Fernet.generate_key().decode(),
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"{pg}/{db}",
        "CACHE_URL": "locmem://",
        "AGENTMESH_VAR_DIR": var_dir,
        "USER_THROTTLE_RATE": "10000000/minute",  # measure the database, not the throttle
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "plain",
    }


def prepare_database(pg: str, db: str, env: dict) -> None:
    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)  # noqa: S603
    subprocess.run([python, "-c", SEED.format(password=PASSWORD)], cwd=ROOT, env=env, check=True)  # noqa: S603


def start_server(env: dict, workers: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "agentmesh.asgi:application", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--no-proxy-headers", "--no-access-log",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"{base}/api/v1/system/health", timeout=10)
            return process, base
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text()[-3000:]) from None
            time.sleep(0.3)


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_load(base: str, clients: int, seconds: float, pg: str, db: str) -> dict:
    token = httpx.post(
        f"{base}/api/v1/auth/login", json={"username": "bench", "password": PASSWORD}, timeout=30
    ).json()["access"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        ids = [w["id"] for w in client.get("/api/v1/workflows?page_size=100").json()["results"]]
    statuses: collections.Counter = collections.Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    counts: list[int] = []

    def sample() -> None:
        with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [db]
                ).fetchone()
                counts.append(row[0])
                time.sleep(0.5)

    def client_loop(seed: int) -> None:
        rnd = random.Random(seed)  # noqa: S311 (a request mix, not a secret)
        mine, times = collections.Counter(), []
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while not stop.is_set():
                pick = rnd.random()
                if pick < 0.55:
                    url = "/api/v1/workflows"
                elif pick < 0.80:
                    url = f"/api/v1/workflows/{rnd.choice(ids)}"
                elif pick < 0.92:
                    url = "/api/v1/agents"
                else:
                    url = "/api/v1/workflows/executions"
                t0 = time.perf_counter()
                try:
                    status = client.get(url).status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                times.append(time.perf_counter() - t0)
                mine[status] += 1
        with lock:
            statuses.update(mine)
            latencies.extend(times)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    sampler.join()
    latencies.sort()
    total = sum(statuses.values())
    return {
        "requests": total,
        "req_per_s": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "errors_5xx": sum(v for k, v in statuses.items() if not isinstance(k, int) or k >= 500),
        "max_connections": max(counts),
        "mean_connections": round(statistics.mean(counts), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", default="agentmesh_h7")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--modes", default="pool,no-pool")
    args = parser.parse_args()
    var_dir = tempfile.mkdtemp(prefix="dbpool-bench-")
    env = base_env(args.pg, args.db, var_dir)
    prepare_database(args.pg, args.db, env)
    pool_max = int(os.environ.get("DATABASE_POOL_MAX_SIZE", "10"))
    modes = {
        "pool": {"DATABASE_POOL_MAX_SIZE": str(pool_max)},
        "no-pool": {"DATABASE_POOL_MAX_SIZE": "0", "DATABASE_CONN_MAX_AGE": "0"},
    }
    results: dict[str, list[dict]] = collections.defaultdict(list)
    ok = True
    for mode in args.modes.split(","):  # e.g. pool,no-pool,pool,no-pool to interleave
        log_path = Path(var_dir) / f"api-{mode}.log"
        process, base = start_server({**env, **modes[mode]}, args.workers, log_path)
        try:
            result = run_load(base, args.clients, args.seconds, args.pg, args.db)
        finally:
            stop_server(process)
        if mode == "pool":
            result["pool_total"] = args.workers * pool_max
            ok &= result["max_connections"] <= result["pool_total"]
        ok &= result["errors_5xx"] == 0
        results[mode].append(result)
        print(mode, json.dumps(result), flush=True)
    if "pool" in results and "no-pool" in results:
        rate = {mode: statistics.mean(r["req_per_s"] for r in runs) for mode, runs in results.items()}
        print(f"pool / no-pool throughput: {rate['pool'] / rate['no-pool']:.2f}x")
    print("PASS" if ok else "FAIL: 5xx answers or more connections than the pool allows")
    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
