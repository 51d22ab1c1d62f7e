"""Overhead of a synchronous POST /api/v1/agents/{id}/interact vs. calling the model directly.

A fake OpenAI server (tests/fake_llm.py, a real HTTP server on 127.0.0.1, zero delay, default
reply "ok") answers every call. An agent without tools, deployed on a model config pointing at
it, is run for one turn (system prompt + user message -> "ok"), interleaved in random order per
iteration with the same chat completion sent straight through the `openai` SDK:

  SDK, new client            `openai.OpenAI(base_url=..., api_key="x")` per call, closed after it:
                             a new SDK client, httpx2 client, connection and SSLContext per call
  SDK, new client,           a new SDK client, httpx2 client and connection per call with one shared
    shared SSLContext        SSLContext: the per-call work the mesh does once safe_httpx2_client
                             caches the SSLContext (agents.llm.adapters.openai_compat builds an SDK
                             client per call)
  SDK, reused client         one `openai.OpenAI` reused (keep-alive): the floor of the network part
  API in-process             POST /api/v1/agents/{id}/interact {"input": ...} (a new conversation each
                             time) through DRF's APIClient with a JWT: middleware, JWT authentication,
                             get_object + `use` permission, run_start (Conversation + AgentRun), run
                             execution (claim, conversation lock, agent span, history, limits, Message
                             rows, the model call through agents.llm.client.chat with its span, step
                             row, run UPDATE), the response serializer, the request sample and root span

Overhead = API - SDK, p50 against p50 in ms, and the median of per-iteration differences (same
iteration, so the same machine load; steadier on a shared machine). The target (< 15 ms) is
judged against the baseline that does the mesh's per-call work: the shared-SSLContext one when
safe_httpx2_client caches the SSLContext (the script checks), the plain new client otherwise.
A second pass puts timers around the interesting functions (patched in this process only) and
times every SQL statement, to attribute the overhead; --profile / --profile-out add cProfile.

The fake's handler gets TCP_NODELAY (--keep-nagle to leave it): BaseHTTPRequestHandler writes
the headers and the body of a response in two segments, and on a keep-alive connection Nagle's
algorithm plus the client's delayed ACK then hold responses ~40 ms: the reused client's p50 is
44 ms when it calls back to back, and its p95/mean carry the stalls when interleaved. New
connections (the other paths) are not affected.

Runs on the database of DATABASE_URL (default: SQLite in AGENTMESH_VAR_DIR) in a scratch test
database created, migrated and dropped by the script, with agentmesh.settings.test (LocMemCache
unless CACHE_URL is set) except the observability buffer, flushed at most every 2 s as in
production (--flush-seconds 0: after every request, as the tests do):

    AGENTMESH_VAR_DIR=/tmp/agentbench .venv/bin/python benchmarks/agent_interact_overhead.py --n 300
    AGENTMESH_VAR_DIR=/tmp/agentbench \
        DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentmesh_agentbench \
        .venv/bin/python benchmarks/agent_interact_overhead.py --n 300

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
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmesh.settings.test")
# The production default (test settings flush the observability buffer after every request).
os.environ.setdefault("OBSERVABILITY_FLUSH_SECONDS", "2")

import django  # noqa: E402

django.setup()

import httpx2  # noqa: E402
import openai  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import get_runner, setup_test_environment  # noqa: E402

TARGET_MS = 15.0
SYSTEM_PROMPT = "You are terse."


# --- statistics -----------------------------------------------------------------------------
def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "mean": statistics.fmean(values)}


# --- attribution: timers around functions, patched in this process only -----------------------
class Timers:
    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list = []
        self.queries: dict[str, list[float]] = defaultdict(list)
        self.sequence: list[str] | None = None  # statements of one call, when recording

    def wrap(self, owner, attr: str, label: str) -> None:
        own = attr in vars(owner)  # restore() deletes an attribute that was inherited
        original = vars(owner)[attr] if own else getattr(owner, attr)
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

        setattr(owner, attr, staticmethod(timed) if isinstance(original, staticmethod) else timed)
        self._undo.append((owner, attr, original, own))

    def restore(self) -> None:
        for owner, attr, original, own in reversed(self._undo):
            if own:
                setattr(owner, attr, original)
            else:
                delattr(owner, attr)
        self._undo.clear()

    def query(self, execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = time.perf_counter() - t0
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
            if verb in ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT", "ROLLBACK"):
                table = ""
            if verb == "SELECT" and "(SELECT" in sql and "guardian" in sql:
                table += " (+ guardian subqueries)"
            key = f"{verb} {table}".strip()
            self.queries[key].append(elapsed)
            if self.sequence is not None:
                self.sequence.append(f"{key}  {elapsed * 1000:.2f} ms")


def install_timers() -> Timers:
    from rest_framework_simplejwt.authentication import JWTAuthentication

    import agents.llm.client as llm_client
    from agentmesh.core import safe_http
    from agents import runs
    from agents.api import interact, views
    from agents.llm.adapters import openai_compat
    from agents.models import AgentRun, AgentRunStep
    from agents.runtime import loop
    from observability import buffer, middleware
    from observability import services as obs

    t = Timers()
    # Inclusive wall time per call; nested entries are part of their parents.
    t.wrap(middleware.RequestContextMiddleware, "__call__", "request (RequestContextMiddleware, all inside)")
    t.wrap(JWTAuthentication, "authenticate", "  JWT authentication (+ user SELECT)")
    t.wrap(views.AgentViewSet, "get_object", "  AgentViewSet.get_object (agent SELECT, perms)")
    t.wrap(interact.InteractRequestSerializer, "is_valid", "  InteractRequestSerializer.is_valid")
    t.wrap(interact, "run_start", "  runs.run_start (Conversation + AgentRun INSERT)")
    t.wrap(interact, "run_execute", "  runs.run_execute")
    t.wrap(AgentRun, "refresh_from_db", "    AgentRun.refresh_from_db (only when the claim fails)")
    t.wrap(runs, "_acquire_conversation", "    _acquire_conversation (existing conversations only)")
    t.wrap(loop.RunLoop, "__init__", "    RunLoop.__init__ (version snapshot, cached)")
    t.wrap(loop.RunLoop, "execute", "    RunLoop.execute")
    t.wrap(loop, "span_start", "      span_start (agent span, no write in a request)")
    t.wrap(loop.RunLoop, "_run", "      RunLoop._run")
    t.wrap(loop, "_spent_today", "        _spent_today (only with a daily cost limit)")
    t.wrap(loop, "_history", "        _history (existing conversations only)")
    t.wrap(loop, "_system_prompt", "        _system_prompt (sandbox render)")
    t.wrap(loop._Conversation, "append", "        _Conversation.append (Message INSERT)")
    t.wrap(loop.RunLoop, "_loop", "        RunLoop._loop")
    t.wrap(loop.RunLoop, "_cancelled", "          _cancelled (EXISTS, from the second turn)")
    t.wrap(loop.RunLoop, "_call_model", "          RunLoop._call_model")
    t.wrap(llm_client, "chat", "            llm.client.chat")
    t.wrap(llm_client._Call, "open_span", "              _Call.open_span (no write)")
    t.wrap(llm_client._Breaker, "enter", "              _Breaker.enter (cache get)")
    t.wrap(llm_client._Call, "_retrying", "              _Call._retrying (tenacity.Retrying)")
    t.wrap(
        openai_compat.OpenAICompatAdapter, "chat", "              OpenAICompatAdapter.chat (incl. the call)"
    )
    t.wrap(openai_compat, "safe_httpx2_client", "                safe_httpx2_client")
    t.wrap(httpx2, "create_ssl_context", "                  httpx2.create_ssl_context")
    t.wrap(openai.OpenAI, "__init__", "                openai.OpenAI() construction")
    t.wrap(safe_http, "_check_static", "                SSRF _check_static")
    t.wrap(safe_http, "_resolve", "                SSRF _resolve (getaddrinfo)")
    t.wrap(
        openai.resources.chat.completions.Completions,
        "create",
        "                completions.create (the HTTP call)",
    )
    t.wrap(openai.OpenAI, "close", "                client.close()")
    t.wrap(llm_client._Breaker, "record", "              _Breaker.record (cache get)")
    t.wrap(llm_client._Call, "close_span", "              _Call.close_span (chat span, batched)")
    t.wrap(AgentRunStep, "save", "            AgentRunStep.save (step INSERT)")
    t.wrap(loop.RunLoop, "_finish", "        RunLoop._finish")
    t.wrap(
        AgentRun, "save", "      AgentRun.save (run UPDATE of the result fields; + the INSERT in run_start)"
    )
    t.wrap(loop, "span_end", "      span_end (agent span, batched)")
    t.wrap(obs.metrics, "record_run", "      metrics.record_run (both spans)")
    t.wrap(runs, "_release_conversation", "    _release_conversation (UPDATE)")
    t.wrap(
        interact.InteractResultSerializer,
        "to_representation",
        "  InteractResultSerializer (+ messages SELECT)",
    )
    t.wrap(middleware.RequestContextMiddleware, "_record", "  request sample/metrics/root span (_record)")
    t.wrap(
        middleware.RequestContextMiddleware,
        "_write_spans",
        "    _write_spans (root + batched spans, one INSERT)",
    )
    t.wrap(buffer, "flush_if_due", "    buffer.flush_if_due (sample INSERT + metrics upsert)")
    return t


def ssl_contexts_per_safe_client() -> int:
    """How many times safe_httpx2_client() calls httpx2.create_ssl_context (0 when cached)."""
    from agentmesh.core import safe_http

    calls = []
    original = httpx2.create_ssl_context

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    httpx2.create_ssl_context = counting
    try:
        safe_http.safe_httpx2_client().close()
        safe_http.safe_httpx2_client().close()
    finally:
        httpx2.create_ssl_context = original
    return len(calls) // 2


# --- main -----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="measured iterations of each path (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up iterations of each path")
    parser.add_argument("--attribution-n", type=int, default=200, help="calls timed per function")
    parser.add_argument("--keep-nagle", action="store_true", help="leave Nagle on in the fake's handler")
    parser.add_argument("--sql", action="store_true", help="list the SQL statements of one call in order")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile listing")
    parser.add_argument("--profile-out", help="write the cProfile stats to this file (implies --profile)")
    parser.add_argument(
        "--flush-seconds",
        type=float,
        help="OBSERVABILITY_FLUSH_SECONDS for the run (default 2, the production default)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    from agentmesh.accounts.models import Role, User
    from agents.models import AgentRun
    from agents.services import agent_create, agent_deploy
    from masterdata.services import model_config_create
    from tests.fake_llm import FakeOpenAI

    if args.flush_seconds is not None:
        settings.OBSERVABILITY_FLUSH_SECONDS = args.flush_seconds
    setup_test_environment()
    # A database of our own: never the test database another run may be using.
    db = settings.DATABASES["default"]
    name = f"bench_agent_interact_{os.getpid()}"
    if db["ENGINE"].endswith("sqlite3"):
        name = str(Path(settings.VAR_DIR) / f"{name}.sqlite3")
    db.setdefault("TEST", {})["NAME"] = name
    runner = get_runner(settings)(verbosity=0, interactive=False)
    old = runner.setup_databases()
    fake = FakeOpenAI().start()
    if not args.keep_nagle:
        fake._server.RequestHandlerClass.disable_nagle_algorithm = True  # TCP_NODELAY per connection
    try:
        # The SSRF guard refuses loopback unless allow-listed (agentmesh.settings.test does it).
        if "127.0.0.1" not in settings.SAFE_HTTP_ALLOWLIST:
            settings.SAFE_HTTP_ALLOWLIST = [*settings.SAFE_HTTP_ALLOWLIST, "127.0.0.1"]
        user = User.objects.create(username="bench", email="bench@example.com", role=Role.DEVELOPER)
        model = model_config_create(
            owner=user,
            actor=user,
            name="fake",
            provider="openai_compatible",
            model_name="fake-1",
            base_url=fake.url,
        )
        agent = agent_create(owner=user, name="bench-agent", model=model, system_prompt=SYSTEM_PROMPT)
        version, checks = agent_deploy(agent=agent, actor=user)
        assert version is not None, [c.as_dict() for c in checks]
        token = str(RefreshToken.for_user(user).access_token)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        path = f"/api/v1/agents/{agent.pk}/interact"

        def messages(i: int) -> list[dict]:
            return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": f"hi {i}"}]

        def sdk_new(i: int) -> None:
            c = openai.OpenAI(base_url=fake.url, api_key="x", max_retries=0)
            try:
                r = c.chat.completions.create(model="fake-1", messages=messages(i))
            finally:
                c.close()
            assert r.choices[0].message.content == "ok"

        shared_ssl = httpx2.create_ssl_context()

        def sdk_new_shared_ssl(i: int) -> None:
            c = openai.OpenAI(
                base_url=fake.url, api_key="x", max_retries=0, http_client=httpx2.Client(verify=shared_ssl)
            )
            try:
                r = c.chat.completions.create(model="fake-1", messages=messages(i))
            finally:
                c.close()
            assert r.choices[0].message.content == "ok"

        reused = openai.OpenAI(base_url=fake.url, api_key="x", max_retries=0)

        def sdk_reused(i: int) -> None:
            r = reused.chat.completions.create(model="fake-1", messages=messages(i))
            assert r.choices[0].message.content == "ok"

        def api_inprocess(i: int) -> None:
            r = client.post(path, {"input": f"hi {i}"}, format="json")
            assert r.status_code == 200, r.content[:300]
            body = r.json()
            assert body["status"] == "succeeded" and body["output"] == "ok", body
            assert [m["role"] for m in body["messages"]] == ["user", "assistant"], body

        paths = {
            "SDK, new client per call": sdk_new,
            "SDK, new client per call, shared SSLContext": sdk_new_shared_ssl,
            "SDK, reused client": sdk_reused,
            "API in-process (APIClient + JWT)": api_inprocess,
        }
        # The fair baseline does the per-call work the mesh does: a new SDK client and connection,
        # and a new SSLContext only if safe_httpx2_client builds one per client.
        builds_ssl = ssl_contexts_per_safe_client()
        names = list(paths)
        fair = names[0] if builds_ssl else names[1]

        rng = random.Random(args.seed)  # noqa: S311 - shuffling, not secrets
        for i in range(args.warmup):
            for key in names:
                paths[key](i)
        times: dict[str, list[float]] = {key: [] for key in names}
        load_before = os.getloadavg()
        for i in range(args.n):
            order = names[:]
            rng.shuffle(order)
            for key in order:
                t0 = time.perf_counter()
                paths[key](i)
                times[key].append((time.perf_counter() - t0) * 1000)

        vendor = connection.vendor
        if vendor == "postgresql":
            version_text = f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 10000}"
        else:
            import sqlite3

            version_text = f"SQLite {sqlite3.sqlite_version}"
        load = " / ".join(f"{x:.2f}" for x in load_before)
        load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"database: {version_text}   python {sys.version.split()[0]}   openai {openai.__version__}   "
            f"cpus: {os.cpu_count()}   load before/after: {load}  |  {load_after}"
        )
        print(
            f"N = {args.n} per path (warm-up {args.warmup}), interleaved in random order per iteration; "
            f"fake handler TCP_NODELAY: {not args.keep_nagle}; "
            f"OBSERVABILITY_FLUSH_SECONDS={settings.OBSERVABILITY_FLUSH_SECONDS:g}\n"
        )
        stats = {key: summary(v) for key, v in times.items()}
        print(f"| {'path':45s} | {'p50 ms':>7s} | {'p95 ms':>7s} | {'mean ms':>7s} |")
        print(f"|{'-' * 47}|{'-' * 9}:|{'-' * 9}:|{'-' * 9}:|")
        for key, s in stats.items():
            print(f"| {key:45s} | {s['p50']:7.2f} | {s['p95']:7.2f} | {s['mean']:7.2f} |")
        print()
        baselines, api = names[:3], names[3]
        # p50 - p50 is the figure asked for; the median of per-iteration differences (same
        # iteration, so the same machine load) is the steadier one on a shared machine.
        print(f"| {'overhead = API - SDK':60s} | {'p50-p50':>7s} | {'paired':>7s} | {'ratio':>5s} |")
        print(f"|{'-' * 62}|{'-' * 9}:|{'-' * 9}:|{'-' * 7}:|")
        for base in baselines:
            over = stats[api]["p50"] - stats[base]["p50"]
            paired = statistics.median(a - b for a, b in zip(times[api], times[base], strict=True))
            ratio = stats[api]["p50"] / stats[base]["p50"]
            label = f"API vs {base}"
            print(f"| {label:60s} | {over:7.2f} | {paired:7.2f} | {ratio:5.1f} |")
        over = stats[api]["p50"] - stats[fair]["p50"]
        verdict = "MET" if over < TARGET_MS else "NOT MET"
        print(
            f"\nsafe_httpx2_client builds {builds_ssl} SSLContext(s) per client, so the fair baseline is "
            f"{fair!r}.\ntarget: p50 overhead (in-process API - {fair}) < {TARGET_MS:g} ms: {verdict} "
            f"({over:.2f} ms)"
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
                if args.sql:
                    timers.sequence = []
                    api_inprocess(m)
                    sequence, timers.sequence = timers.sequence, None
        finally:
            timers.restore()
        made = m + (1 if args.sql else 0)  # the --sql call is in the totals too
        print(
            f"\nattribution over {m} in-process calls with timers (mean {elapsed:.2f} ms/call, timers included):"
        )
        print(f"| {'function (inclusive, nested = part of parent)':72s} | {'ms/call':>7s} | {'calls':>5s} |")
        print(f"|{'-' * 74}|{'-' * 9}:|{'-' * 7}:|")
        for label in timers.total:
            calls = timers.calls[label] / made
            print(f"| {label:72s} | {timers.total[label] * 1000 / made:7.3f} | {calls:5.2g} |")
        n_queries = sum(len(v) for v in timers.queries.values()) / made
        db_ms = sum(sum(v) for v in timers.queries.values()) * 1000 / made
        print(f"\nSQL per call: {n_queries:.1f} statements, {db_ms:.2f} ms")
        for key, v in sorted(timers.queries.items(), key=lambda kv: -sum(kv[1])):
            print(f"  {len(v) / made:5.2f} x {key:55s} {sum(v) * 1000 / made:6.3f} ms/call")
        if args.sql:
            print("\nSQL statements of one call, in order:")
            for line in sequence:
                print(f"  {line}")
        runs_today = AgentRun.objects.filter(agent=agent).count()
        print(f"\n(runs of the agent at the end: {runs_today}; _spent_today sums them all on every run)")

        if args.profile or args.profile_out:
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(m):
                api_inprocess(i)
            profiler.disable()
            if args.profile_out:
                profiler.dump_stats(args.profile_out)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(50)
            print(f"\ncProfile of {m} in-process calls (cumulative):")
            print(out.getvalue())
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(f"cProfile of {m} in-process calls (own time):")
            print(out.getvalue())
        reused.close()
    finally:
        fake.stop()
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
