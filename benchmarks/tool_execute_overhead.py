"""Overhead of POST /api/v1/tools/{id}/execute for an `http` tool vs. calling the API directly.

A real local HTTP API (tests/fake_api.py, `GET /items/<id>`) is called, interleaved in random
order per iteration, in five ways:

  direct, new client      `httpx.get(url)`: a new httpx.Client (connection and SSLContext) per call
  direct, new client,     a new httpx.Client and connection per call with one shared SSLContext:
    shared SSLContext     what the tool does per execution once safe_http caches the SSLContext
  direct, reused          one httpx.Client reused (keep-alive): the floor of the network part
  API in-process          POST /api/v1/tools/{id}/execute through DRF's APIClient with a JWT:
                          URL resolution, middleware, JWT authentication, object permission,
                          argument validation, ToolExecution insert/update, span, the SSRF-guarded
                          request, serializer, request sample
  API over uvicorn        the same POST over HTTP (keep-alive) to `uvicorn agentmesh.asgi:application`
                          in a subprocess on the same database (skip with --no-uvicorn)

Overhead = API - direct, p50 against p50 in ms (and the median of per-iteration differences,
steadier on a shared machine). The target is judged against the baseline that does the same
per-call work as the tool: `httpx.get` while safe_http builds an SSLContext per client, the
shared-SSLContext one when it caches it (the script checks which). Afterwards the in-process
path is run again with timers around the interesting functions (patched in this process only)
and every SQL statement timed, to attribute the overhead; --profile / --profile-out add cProfile.

Runs on the database of DATABASE_URL (default: SQLite in AGENTMESH_VAR_DIR) in a scratch
test database created, migrated and dropped by the script:

    AGENTMESH_VAR_DIR=/tmp/benchvar .venv/bin/python benchmarks/tool_execute_overhead.py --n 300
    AGENTMESH_VAR_DIR=/tmp/benchvar DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentmesh_bench \
        .venv/bin/python benchmarks/tool_execute_overhead.py --n 300

Figures go to benchmarks/BENCHMARKS.md by hand. No assertions on timings.
"""

import argparse
import cProfile
import functools
import io
import itertools
import os
import pstats
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmesh.settings.test")
# The production default (test settings flush the observability buffer after every request).
os.environ.setdefault("OBSERVABILITY_FLUSH_SECONDS", "2")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import get_runner, setup_test_environment  # noqa: E402

TARGET_MS = 10.0


# --- statistics -----------------------------------------------------------------------------
def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "mean": statistics.fmean(values)}


# --- uvicorn --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_database_url() -> str:
    """DATABASE_URL of the scratch test database, for the uvicorn subprocess."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit((parts.scheme, parts.netloc, "/" + db["NAME"], parts.query, parts.fragment))


def start_uvicorn(token: str, probe_path: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": scratch_database_url(), "SAFE_HTTP_ALLOWLIST": "127.0.0.1"}
    proc = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "uvicorn",
            "agentmesh.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}")
        try:
            r = httpx.get(base + probe_path, headers={"Authorization": f"Bearer {token}"}, timeout=2)
            if r.status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("uvicorn did not answer within 30 s")


# --- attribution: timers around functions, patched in this process only -----------------------
class Timers:
    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list = []
        self.queries: dict[str, list[float]] = defaultdict(list)

    def wrap(self, owner, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        raw = original.__func__ if isinstance(original, staticmethod) else original
        timers = self
        self.total[label] = 0.0  # rows print in the order of registration (outer first)
        self.calls[label] = 0

        @functools.wraps(raw)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return raw(*args, **kwargs)
            finally:
                timers.total[label] += time.perf_counter() - t0
                timers.calls[label] += 1

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def query(self, execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            words = sql.split()
            verb = words[0].upper() if words else "?"
            table = next(
                (
                    w.strip('"`')
                    for prev, w in itertools.pairwise(words)
                    if prev.upper() in ("FROM", "INTO", "UPDATE")
                ),
                "",
            )
            if verb in ("SAVEPOINT", "RELEASE"):
                table = ""
            self.queries[f"{verb} {table}".strip()].append(time.perf_counter() - t0)


def install_timers() -> Timers:
    from rest_framework_simplejwt.authentication import JWTAuthentication

    from agentmesh.core import safe_http
    from observability import buffer, middleware
    from observability import services as obs
    from tools import services
    from tools.api import views
    from tools.api.serializers import ToolExecutionSerializer
    from tools.executors.http import HttpExecutor

    t = Timers()
    # Inclusive wall time per call; nested entries are part of their parents.
    t.wrap(middleware.RequestContextMiddleware, "__call__", "request (RequestContextMiddleware, all inside)")
    t.wrap(middleware.RequestContextMiddleware, "_record", "  request sample/metrics/root span (_record)")
    t.wrap(buffer, "flush_if_due", "    buffer.flush_if_due")
    t.wrap(JWTAuthentication, "authenticate", "  JWT authentication (+ user query)")
    t.wrap(views.ToolViewSet, "get_object", "  ToolViewSet.get_object (tool + permission)")
    t.wrap(views.ExecuteRequestSerializer, "is_valid", "  ExecuteRequestSerializer.is_valid")
    t.wrap(services, "tool_execute", "  services.tool_execute")
    t.wrap(services, "validate_arguments", "    validate_arguments (jsonschema validator built per call)")
    t.wrap(services, "_new_execution", "    _new_execution (INSERT ToolExecution)")
    t.wrap(services, "_run", "    _run")
    t.wrap(services, "span_start", "      span_start")
    t.wrap(HttpExecutor, "execute", "      HttpExecutor.execute")
    t.wrap(safe_http, "safe_request", "        safe_http.safe_request (incl. the upstream call)")
    t.wrap(safe_http, "check_url", "          check_url")
    t.wrap(safe_http, "safe_client", "          safe_client (client construction)")
    t.wrap(httpx, "create_ssl_context", "            httpx.create_ssl_context")
    t.wrap(services, "span_end", "      span_end (INSERT span, metrics)")
    t.wrap(obs.metrics, "record_run", "        metrics.record_run")
    t.wrap(ToolExecutionSerializer, "to_representation", "  ToolExecutionSerializer (response body)")
    return t


def ssl_contexts_per_safe_client() -> int:
    """How many times safe_http.safe_client() calls httpx.create_ssl_context (0 when cached)."""
    from agentmesh.core import safe_http

    calls = []
    original = httpx.create_ssl_context

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    httpx.create_ssl_context = counting
    try:
        safe_http.safe_client().close()
        safe_http.safe_client().close()
    finally:
        httpx.create_ssl_context = original
    return len(calls) // 2


# --- main -----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="measured iterations of each path (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up iterations of each path")
    parser.add_argument("--no-uvicorn", action="store_true", help="skip the real-server path")
    parser.add_argument("--attribution-n", type=int, default=200, help="calls timed per function")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile listing")
    parser.add_argument("--profile-out", help="write the cProfile stats to this file (implies --profile)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    from agentmesh.accounts.models import Role, User
    from tests.fake_api import FakeAPI
    from tools import services

    setup_test_environment()
    # A database of our own: never the test database another run may be using.
    db = settings.DATABASES["default"]
    name = f"bench_tool_exec_{os.getpid()}"
    if db["ENGINE"].endswith("sqlite3"):
        name = str(Path(settings.VAR_DIR) / f"{name}.sqlite3")
    db.setdefault("TEST", {})["NAME"] = name
    runner = get_runner(settings)(verbosity=0, interactive=False)
    old = runner.setup_databases()
    api = FakeAPI().start()
    server = None
    try:
        # The SSRF guard refuses loopback unless allow-listed (agentmesh.settings.test does it).
        if "127.0.0.1" not in settings.SAFE_HTTP_ALLOWLIST:
            settings.SAFE_HTTP_ALLOWLIST = [*settings.SAFE_HTTP_ALLOWLIST, "127.0.0.1"]
        user = User.objects.create(username="bench", email="bench@example.com", role=Role.DEVELOPER)
        tool = services.tool_create(
            owner=user, name="get_item", type="http", config={"url": api.url + "/items/{item_id}"}
        )
        token = str(RefreshToken.for_user(user).access_token)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        path = f"/api/v1/tools/{tool.pk}/execute"
        reused = httpx.Client()

        def direct_new(i: int) -> None:
            r = httpx.get(f"{api.url}/items/{i}")
            assert r.status_code == 200 and r.json()["id"] == str(i)

        shared_ssl = httpx.create_ssl_context()

        def direct_new_shared_ssl(i: int) -> None:
            with httpx.Client(verify=shared_ssl) as c:
                r = c.get(f"{api.url}/items/{i}")
            assert r.status_code == 200 and r.json()["id"] == str(i)

        def direct_reused(i: int) -> None:
            r = reused.get(f"{api.url}/items/{i}")
            assert r.status_code == 200 and r.json()["id"] == str(i)

        def api_inprocess(i: int) -> None:
            r = client.post(path, {"arguments": {"item_id": str(i)}}, format="json")
            assert r.status_code == 200, r.content[:300]
            body = r.json()
            assert body["status"] == "succeeded" and body["result"]["id"] == str(i), body

        paths = {
            "direct, new client (httpx.get)": direct_new,
            "direct, new client, shared SSLContext": direct_new_shared_ssl,
            "direct, reused httpx.Client": direct_reused,
            "API in-process (APIClient + JWT)": api_inprocess,
        }
        if not args.no_uvicorn:
            server, base = start_uvicorn(token, f"/api/v1/tools/{tool.pk}")
            http_client = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )

            def api_uvicorn(i: int) -> None:
                r = http_client.post(path, json={"arguments": {"item_id": str(i)}})
                assert r.status_code == 200, r.content[:300]
                body = r.json()
                assert body["status"] == "succeeded" and body["result"]["id"] == str(i), body

            paths["API over uvicorn (httpx, keep-alive)"] = api_uvicorn

        # The fair baseline does the per-call work the tool does: a new client and connection,
        # and a new SSLContext only if safe_http builds one per client (it did before caching).
        builds_ssl = ssl_contexts_per_safe_client()
        names = list(paths)
        fair = names[0] if builds_ssl else names[1]

        rng = random.Random(args.seed)  # noqa: S311 - shuffling, not secrets
        for i in range(args.warmup):
            for key in names:
                paths[key](i)
        times: dict[str, list[float]] = {key: [] for key in names}
        for i in range(args.n):
            order = names[:]
            rng.shuffle(order)
            for key in order:
                t0 = time.perf_counter()
                paths[key](i)
                times[key].append((time.perf_counter() - t0) * 1000)

        if server is not None:
            server.terminate()
            server.wait(10)
            server = None

        vendor = connection.vendor
        version = ""
        if vendor == "postgresql":
            version = f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 10000}"
        else:
            import sqlite3

            version = f"SQLite {sqlite3.sqlite_version}"
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"database: {version}   python {sys.version.split()[0]}   cpus: {os.cpu_count()}   load: {load}"
        )
        print(f"N = {args.n} per path (warm-up {args.warmup}), interleaved in random order per iteration\n")
        stats = {key: summary(v) for key, v in times.items()}
        print(f"| {'path':40s} | {'p50 ms':>7s} | {'p95 ms':>7s} | {'mean ms':>7s} |")
        print(f"|{'-' * 42}|{'-' * 9}:|{'-' * 9}:|{'-' * 9}:|")
        for key, s in stats.items():
            print(f"| {key:40s} | {s['p50']:7.2f} | {s['p95']:7.2f} | {s['mean']:7.2f} |")
        print()
        baselines, apis = names[:3], names[3:]
        # p50 - p50 is the figure asked for; the median of per-iteration differences (same
        # iteration, so the same machine load) is the steadier one on a shared machine.
        print(f"| {'overhead = API - direct':70s} | {'p50-p50':>7s} | {'paired':>7s} | {'ratio':>5s} |")
        print(f"|{'-' * 72}|{'-' * 9}:|{'-' * 9}:|{'-' * 7}:|")
        for key in apis:
            for base in baselines:
                over = stats[key]["p50"] - stats[base]["p50"]
                paired = statistics.median(a - b for a, b in zip(times[key], times[base], strict=True))
                ratio = stats[key]["p50"] / stats[base]["p50"]
                label = f"{key[4:]} vs {base}"
                print(f"| {label:70s} | {over:7.2f} | {paired:7.2f} | {ratio:5.1f} |")
        over = stats[apis[0]]["p50"] - stats[fair]["p50"]
        verdict = "MET" if over < TARGET_MS else "NOT MET"
        print(
            f"\nsafe_http builds {builds_ssl} SSLContext(s) per client, so the fair baseline is {fair!r}."
            f"\ntarget: p50 overhead (in-process API - {fair}) < {TARGET_MS:g} ms: {verdict} ({over:.2f} ms)"
        )

        # --- attribution ---------------------------------------------------------------------
        m = args.attribution_n
        timers = install_timers()
        try:
            with connection.execute_wrapper(timers.query):
                t0 = time.perf_counter()
                for i in range(m):
                    api_inprocess(i)
                elapsed = (time.perf_counter() - t0) * 1000 / m
        finally:
            timers.restore()
        print(
            f"\nattribution over {m} in-process calls with timers (mean {elapsed:.2f} ms/call, timers included):"
        )
        print(f"| {'function (inclusive, nested = part of parent)':66s} | {'ms/call':>7s} | {'calls':>5s} |")
        print(f"|{'-' * 68}|{'-' * 9}:|{'-' * 7}:|")
        for label in timers.total:
            calls = timers.calls[label] / m
            print(f"| {label:66s} | {timers.total[label] * 1000 / m:7.3f} | {calls:5.2g} |")
        n_queries = sum(len(v) for v in timers.queries.values()) / m
        db_ms = sum(sum(v) for v in timers.queries.values()) * 1000 / m
        print(f"\nSQL per call: {n_queries:.1f} statements, {db_ms:.2f} ms")
        for key, v in sorted(timers.queries.items(), key=lambda kv: -sum(kv[1])):
            print(f"  {len(v) / m:5.2f} x {key:45s} {sum(v) * 1000 / m:6.3f} ms/call")

        if args.profile or args.profile_out:
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(m):
                api_inprocess(i)
            profiler.disable()
            if args.profile_out:
                profiler.dump_stats(args.profile_out)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
            print(f"\ncProfile of {m} in-process calls (cumulative):")
            print(out.getvalue())
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(f"cProfile of {m} in-process calls (own time):")
            print(out.getvalue())
        reused.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        api.stop()
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
