"""Workflow engine overhead on real Celery workers vs. bare Celery on the same broker.

Two worker processes (one `celery worker --pool prefork -c 2`, prefetch 1, acks_late tasks)
consume a private queue on the broker of CELERY_BROKER_URL (Redis). Measured in the same run:

  bare hop          a task that enqueues the next one (acks_late), a chain of --hops: per hop
  bare burst        --burst no-op acks_late tasks published at once: tasks/s until all ran
  (a) linear        a workflow of --steps no-op `transform` steps in a line: ms per step
                    (execution started_at -> finished_at, and wall time from execute to the end)
  (b) fan-out/in    start -> --branches no-op branches -> one join: total time of one run
  (c) throughput    --runs linear workflows of --run-steps no-op steps started at once:
                    steps/s over the whole batch (steps of all runs / wall time)

Then the same linear workflow runs eagerly in this process with every SQL statement counted
and timed, to attribute the per-step cost (database vs. broker hop). Targets (issue 7):
per-step latency <= 3x the bare hop, >= 200 no-op steps/s, 200-branch fan-out/fan-in < 3 s.

Runs in a scratch database (created, migrated and dropped by the script) on DATABASE_URL:

    AGENTMESH_VAR_DIR=/tmp/benchvar DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentmesh_bench \
        CELERY_BROKER_URL=redis://127.0.0.1:6379/0 .venv/bin/python benchmarks/workflow_engine.py

The worker processes load this module (`--include benchmarks.workflow_engine`) for the bare
tasks. Figures go to benchmarks/BENCHMARKS.md by hand. No assertions on timings.

--reuse-db-connections: the bench worker runs with DATABASE_CONN_MAX_AGE=600, so it keeps its
database connection between tasks (agentmesh/celery.py lets Django's CONN_MAX_AGE rule decide
instead of Celery's fixup closing it around every task); by default (0) every task opens a new
PostgreSQL connection. --eager-only: just the attribution.
"""

import argparse
import cProfile
import io
import itertools
import os
import pstats
import statistics
import subprocess
import sys
import time
import uuid
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

import redis  # noqa: E402
from celery import shared_task  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from agentmesh.celery import app as celery_app  # noqa: E402
from workflows.engine.nodes import Done, NodeHandler, registry  # noqa: E402

TARGET_RATIO, TARGET_STEPS_PER_S, TARGET_FAN_S = 3.0, 200.0, 3.0


# --- bare Celery tasks (the worker imports this module with --include) ------------------------
def _redis() -> redis.Redis:
    return redis.Redis.from_url(celery_app.conf.broker_url)


@shared_task(name="bench.bare_hop", acks_late=True, ignore_result=True)
def bare_hop(key: str, remaining: int, queue: str) -> None:
    """Enqueue the next hop; the last one stamps the end time."""
    if remaining > 0:
        bare_hop.apply_async((key, remaining - 1, queue), queue=queue)
    else:
        _redis().set(key, repr(time.time()), ex=600)


@shared_task(name="bench.bare_noop", acks_late=True, ignore_result=True)
def bare_noop(key: str) -> None:
    _redis().incr(key)


# --- helpers -----------------------------------------------------------------------------------
def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def scratch_database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit((parts.scheme, parts.netloc, "/" + db["NAME"], parts.query, parts.fragment))


def start_worker(queue: str, concurrency: int, reuse_db: bool = False) -> tuple[subprocess.Popen, Path]:
    log_path = Path(settings.VAR_DIR) / f"{queue}.log"
    env = {
        **os.environ,
        "DATABASE_URL": scratch_database_url(),
        "CELERY_BROKER_URL": celery_app.conf.broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
    }
    if reuse_db:
        env["DATABASE_CONN_MAX_AGE"] = "600"
    cmd = [
        sys.executable, "-m", "celery", "-A", "agentmesh", "worker", "-Q", queue,
        "-c", str(concurrency), "--pool", "prefork", "--include", "benchmarks.workflow_engine",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
        "-n", f"{queue}@%h", "-l", "WARNING",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    return process, log_path


def wait(predicate, timeout: float, what: str, interval: float = 0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise RuntimeError(f"{what}: not done within {timeout}s")


# --- bare Celery -------------------------------------------------------------------------------
def bare_chain(queue: str, hops: int) -> float:
    """ms per hop of a chain of `hops` tasks each enqueueing the next."""
    client = _redis()
    key = f"bench:hop:{uuid.uuid4().hex}"
    t0 = time.time()
    bare_hop.apply_async((key, hops - 1, queue), queue=queue)
    end = wait(lambda: client.get(key), 120, "bare chain")
    return (float(end) - t0) * 1000 / hops


def bare_burst(queue: str, n: int) -> float:
    """tasks/s: publish n no-op tasks at once, until the last one ran."""
    client = _redis()
    key = f"bench:burst:{uuid.uuid4().hex}"
    t0 = time.perf_counter()
    for _ in range(n):
        bare_noop.apply_async((key,), queue=queue)
    wait(lambda: int(client.get(key) or 0) >= n, 300, "bare burst", interval=0.005)
    client.delete(key)
    return n / (time.perf_counter() - t0)


# --- the engine --------------------------------------------------------------------------------
class WorkerNoop(NodeHandler):
    """A no-op step sent to a worker, as agent, tool and LLM steps are (it is not pure)."""

    type = "bench_noop"

    def step_refs(self, config) -> frozenset[str]:
        return frozenset()

    def run(self, ctx) -> Done:
        return Done(1)


registry.register(WorkerNoop())
#: the no-op step kinds: `transform` is pure (evaluated where the run advances, no task);
#: `worker` is a step each worker task runs (claim, handler, finish)
NODE_TYPES = {"pure": "transform", "worker": WorkerNoop.type}


def noop(node_id: str, kind: str) -> dict:
    config = {"template": 1} if kind == "pure" else {}
    return {"id": node_id, "type": NODE_TYPES[kind], "config": config}


def linear_definition(n: int, kind: str) -> dict:
    nodes = [noop(f"s{i}", kind) for i in range(n)]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"nodes": nodes, "edges": edges}


def fan_definition(n: int, kind: str) -> dict:
    branches = [noop(f"b{i}", kind) for i in range(n)]
    return {
        "nodes": [noop("start", kind), *branches, noop("join", kind)],
        "edges": [{"source": "start", "target": b["id"]} for b in branches]
        + [{"source": b["id"], "target": "join"} for b in branches],
    }


#: how often the script asks the database whether a run ended: each ask is an ORM query of
#: this process and of PostgreSQL, on the CPUs the workers use (every 2 ms cost ~1,500 queries
#: per 3 s run); the per-step figures come from the rows' timestamps, not from this
POLL_SECONDS = 0.01


def run_to_end(workflow, user, timeout: float = 300):
    """(wall seconds from execute to the end, the execution)."""
    from workflows import services
    from workflows.models import WorkflowExecution

    t0 = time.perf_counter()
    execution, _ = services.workflow_execute(workflow=workflow, user=user)
    done = wait(
        lambda: WorkflowExecution.objects.filter(
            pk=execution.pk, status__in=["succeeded", "failed", "cancelled", "timed_out"]
        ).first(),
        timeout,
        "workflow run",
        interval=POLL_SECONDS,
    )
    wall = time.perf_counter() - t0
    if done.status != "succeeded":
        raise RuntimeError(f"the run ended {done.status}: {done.error}")
    return wall, done


def step_phases(execution) -> dict:
    """Medians over the steps of a run, from the rows: queued (row created -> claimed by a
    worker: commit, on_commit send, broker, task start, claim) and running (claimed -> finished:
    handler, span, the finishing transaction that advances the graph)."""
    rows = list(execution.steps.values_list("created_at", "started_at", "finished_at"))
    queued = [(s - c).total_seconds() * 1000 for c, s, _ in rows]
    running = [(f - s).total_seconds() * 1000 for _, s, f in rows]
    return {"queued": statistics.median(queued), "running": statistics.median(running)}


def throughput(workflow, user, runs: int, steps_per_run: int) -> tuple[float, float]:
    """(steps/s, seconds) for `runs` linear runs started together."""
    from workflows import services
    from workflows.models import StepExecution, WorkflowExecution

    t0 = time.perf_counter()
    ids = [services.workflow_execute(workflow=workflow, user=user)[0].pk for _ in range(runs)]
    wait(
        lambda: WorkflowExecution.objects.filter(pk__in=ids, status="succeeded").count() == runs,
        600,
        "throughput batch",
        interval=0.02,
    )
    seconds = time.perf_counter() - t0
    steps = StepExecution.objects.filter(execution_id__in=ids).count()
    assert steps == runs * steps_per_run, steps
    return steps / seconds, seconds


def attribute(workflow, user, steps: int, profile: bool = False) -> dict:
    """Run the linear workflow eagerly in this process, counting and timing SQL per step."""
    queries: dict[str, list[float]] = defaultdict(list)

    def timed(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            words = sql.split()
            verb = words[0].upper() if words else "?"
            table = next(
                (
                    w.strip('"')
                    for prev, w in itertools.pairwise(words)
                    if prev.upper() in ("FROM", "INTO", "UPDATE")
                ),
                "",
            )
            queries[f"{verb} {table if verb not in ('SAVEPOINT', 'RELEASE') else ''}".strip()].append(
                time.perf_counter() - t0
            )

    from workflows import services

    celery_app.conf.task_always_eager = True
    try:
        profiler = cProfile.Profile() if profile else None
        with connection.execute_wrapper(timed):
            t0 = time.perf_counter()
            if profiler:
                profiler.enable()
            execution, _ = services.workflow_execute(workflow=workflow, user=user)
            if profiler:
                profiler.disable()
            elapsed = time.perf_counter() - t0
    finally:
        celery_app.conf.task_always_eager = False
    execution.refresh_from_db()
    assert execution.status == "succeeded", execution.error
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        stats.print_callees("step_run|_step_finish|_advance")
        print(out.getvalue())
    return {"ms_per_step": elapsed * 1000 / steps, "queries": queries}


def print_attribution(attribution: dict, n: int) -> None:
    queries = attribution["queries"]
    total = sum(len(v) for v in queries.values()) / n
    ms = sum(sum(v) for v in queries.values()) * 1000 / n
    print(f"\neager in-process, linear {n} steps: {attribution['ms_per_step']:.2f} ms/step")
    print(f"SQL per step (eager, in-process): {total:.1f} statements, {ms:.2f} ms")
    for key, v in sorted(queries.items(), key=lambda kv: -sum(kv[1]))[:15]:
        print(f"  {len(v) / n:5.2f} x {key:45s} {sum(v) * 1000 / n:6.3f} ms/step")


def measure(queue: str, user, kind: str, args) -> None:
    """(a), (b) and (c) with no-op steps of `kind`, interleaved with the bare Celery figures."""
    from workflows import services

    linear = services.workflow_create(
        owner=user, name=f"linear-{kind}", definition=linear_definition(args.steps, kind)
    )
    fan = services.workflow_create(
        owner=user, name=f"fan-{kind}", definition=fan_definition(args.branches, kind)
    )
    small = services.workflow_create(
        owner=user, name=f"small-{kind}", definition=linear_definition(args.run_steps, kind)
    )
    # warm-up (and the worker is up): imports, connections, first queries of every pool process
    bare_chain(queue, 50)
    bare_burst(queue, 100)
    run_to_end(small, user)

    hops, per_step, per_step_wall, fans, fan_db, phases = [], [], [], [], [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        hops.append(bare_chain(queue, args.hops))
        wall, done = run_to_end(linear, user)
        per_step.append(done.duration_ms / args.steps)
        per_step_wall.append(wall * 1000 / args.steps)
        phases.append(step_phases(done))
        wall, done = run_to_end(fan, user)
        fans.append(wall)
        fan_db.append(done.duration_ms / 1000)
    burst = bare_burst(queue, args.burst)
    steps_per_s, batch_s = throughput(small, user, args.runs, args.run_steps)
    burst_after = bare_burst(queue, args.burst)
    attribution = attribute(linear, user, args.steps, profile=args.profile)

    print(f"\n== {kind} no-op steps (`{NODE_TYPES[kind]}`)\n")
    hop = statistics.median(hops)
    step = statistics.median(per_step)
    print(f"| {'measurement':62s} | {'value':>12s} |")
    print(f"|{'-' * 64}|{'-' * 13}:|")
    rows = [
        (f"bare Celery hop, chain of {args.hops} (ms/hop)", f"{hop:.2f}"),
        (f"bare Celery burst of {args.burst} no-op tasks (tasks/s)", f"{burst:.0f} / {burst_after:.0f}"),
        (f"(a) linear {args.steps} no-op steps, DB started->finished (ms/step)", f"{step:.2f}"),
        (f"(a) linear {args.steps} no-op steps, wall execute->seen (ms/step)", f"{statistics.median(per_step_wall):.2f}"),
        ("(a) per-step latency / bare hop", f"{step / hop:.1f}x"),
        ("(a)   of which queued: row created -> claimed (ms, median)", f"{statistics.median(p['queued'] for p in phases):.2f}"),
        ("(a)   of which running: claimed -> finished (ms, median)", f"{statistics.median(p['running'] for p in phases):.2f}"),
        (f"(b) fan-out/fan-in {args.branches} branches, wall (s)", f"{statistics.median(fans):.2f}"),
        (f"(b) fan-out/fan-in {args.branches} branches, DB started->finished (s)", f"{statistics.median(fan_db):.2f}"),
        (f"(c) {args.runs} runs x {args.run_steps} steps at once (steps/s)", f"{steps_per_s:.0f}"),
        ("(c) batch wall time (s)", f"{batch_s:.2f}"),
        ("eager in-process, same linear workflow (ms/step, no broker)", f"{attribution['ms_per_step']:.2f}"),
    ]  # fmt: skip
    for label, value in rows:
        print(f"| {label:62s} | {value:>12s} |")
    print(f"\nall (a) ms/step: {', '.join(f'{v:.2f}' for v in per_step)};  bare ms/hop: "
          f"{', '.join(f'{v:.2f}' for v in hops)};  (b) s: {', '.join(f'{v:.2f}' for v in fans)}")  # fmt: skip
    verdict = lambda ok: "MET" if ok else "NOT MET"  # noqa: E731
    print(
        f"\ntargets: per-step <= {TARGET_RATIO:g}x bare hop: {verdict(step <= TARGET_RATIO * hop)} "
        f"({step / hop:.1f}x);  >= {TARGET_STEPS_PER_S:g} steps/s: "
        f"{verdict(steps_per_s >= TARGET_STEPS_PER_S)} ({steps_per_s:.0f});  fan-out/in < "
        f"{TARGET_FAN_S:g} s: {verdict(statistics.median(fans) < TARGET_FAN_S)} "
        f"({statistics.median(fans):.2f} s)"
    )
    print_attribution(attribution, args.steps)


# --- main --------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="steps of the linear workflow (a)")
    parser.add_argument("--branches", type=int, default=200, help="branches of the fan-out (b)")
    parser.add_argument("--runs", type=int, default=20, help="concurrent runs for throughput (c)")
    parser.add_argument("--run-steps", type=int, default=50, help="steps per throughput run (c)")
    parser.add_argument("--hops", type=int, default=500, help="bare chain length")
    parser.add_argument("--burst", type=int, default=2000, help="bare burst size")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of (a), (b) and the bare chain")
    parser.add_argument("--profile", action="store_true", help="cProfile the eager run")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    parser.add_argument(
        "--node",
        choices=["both", *NODE_TYPES],
        default="both",
        help="the no-op steps: pure (transform, evaluated in place) or worker (a task each)",
    )
    parser.add_argument(
        "--eager-only", action="store_true", help="only the eager SQL attribution (no worker, quick)"
    )
    parser.add_argument(
        "--reuse-db-connections",
        action="store_true",
        help="the worker keeps its database connection between tasks (DATABASE_CONN_MAX_AGE=600 for the worker)",
    )
    args = parser.parse_args()

    from django.test.utils import get_runner, setup_test_environment

    from agentmesh.accounts.models import Role, User
    from workflows import services

    if not celery_app.conf.broker_url.startswith("redis"):
        sys.exit("Set CELERY_BROKER_URL to a Redis broker (redis://127.0.0.1:6379/0).")
    setup_test_environment()
    db = settings.DATABASES["default"]
    name = f"bench_workflow_{os.getpid()}"
    if db["ENGINE"].endswith("sqlite3"):
        name = str(Path(settings.VAR_DIR) / f"{name}.sqlite3")
    db.setdefault("TEST", {})["NAME"] = name
    runner = get_runner(settings)(verbosity=0, interactive=False)
    old = runner.setup_databases()
    queue = f"bench-wf-{uuid.uuid4().hex[:8]}"
    worker, log_path = (
        (None, None) if args.eager_only else start_worker(queue, args.concurrency, args.reuse_db_connections)
    )
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    settings.WORKFLOWS_MAX_RUNNING_PER_WORKFLOW = max(settings.WORKFLOWS_MAX_RUNNING_PER_WORKFLOW, args.runs)
    try:
        user = User.objects.create(username="bench", email="bench@example.com", role=Role.DEVELOPER)
        kinds = list(NODE_TYPES) if args.node == "both" else [args.node]
        if args.eager_only:
            for kind in kinds:
                linear = services.workflow_create(
                    owner=user, name=f"linear-{kind}", definition=linear_definition(args.steps, kind)
                )
                print(f"\n== {kind} no-op steps ({NODE_TYPES[kind]})")
                print_attribution(attribute(linear, user, args.steps, profile=args.profile), args.steps)
            return
        if worker.poll() is not None:
            raise RuntimeError(log_path.read_text()[-3000:])
        version = (
            f"PostgreSQL {connection.pg_version // 10000}" if connection.vendor == "postgresql" else "SQLite"
        )
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"database: {version}   broker: Redis   python {sys.version.split()[0]}   "
            f"cpus: {os.cpu_count()}   load: {load}"
        )
        print(
            f"workers: 1 celery worker, prefork -c {args.concurrency}, prefetch 1, acks_late; "
            f"db connection per task: {'kept' if args.reuse_db_connections else 'new'}; "
            f"repeat {args.repeat} (median shown)"
        )
        for kind in kinds:
            measure(queue, user, kind, args)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        from observability import buffer

        buffer.BUFFER.drain()  # spans still buffered belong to the scratch database
        connection.close()
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
