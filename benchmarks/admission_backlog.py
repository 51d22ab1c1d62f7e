"""Admission under a backlog: --runs runs of a one-step workflow (a worker step sleeping
--step-ms) started at once, against a per-workflow limit of --limit, on real Celery workers.

Two phases in the same run, each with fresh workers (--workers processes, prefork -c
--concurrency, prefetch 1, acks_late) on a private queue of the Redis broker:

  unlimited   WORKFLOWS_MAX_RUNNING_PER_WORKFLOW = --runs: every run is admitted at its start;
              the time of the same steps without admission work (the measured ideal)
  limited     WORKFLOWS_MAX_RUNNING_PER_WORKFLOW = --limit: --runs - --limit runs queue and are
              admitted as runs finish (admit_queued_task in the workers)

All runs are started before the workers (the backlog is there at once). Reported: total time
of each phase (first step claimed -> last run ended, from the rows), the theoretical ideal
(runs x step time / worker slots), limited / unlimited (target <= 1.3), and the time spent in
`scheduler.admit_queued` (by admit_queued_task in the workers, and by the reaper, which this
process runs every 5 s as beat would) as a share of worker time (total x slots; target < 5 %),
timed where it runs and summed in Redis.

    AGENTMESH_VAR_DIR=/tmp/benchvar DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentmesh_bench \
        CELERY_BROKER_URL=redis://127.0.0.1:6379/0 .venv/bin/python benchmarks/admission_backlog.py

The database named in DATABASE_URL is created, migrated and dropped by the script. The
workers load this module (`--include benchmarks.admission_backlog`) for the sleeping node
type and the timers. Figures go to benchmarks/BENCHMARKS.md by hand. No assertions on timings.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmesh.settings.test")
os.environ.setdefault("OBSERVABILITY_FLUSH_SECONDS", "2")  # the production default

from celery.signals import task_postrun, task_prerun  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from agentmesh.celery import app as celery_app  # noqa: E402
from benchmarks.workflow_engine import _redis, scratch_database_url, wait  # noqa: E402  (sets Django up)
from workflows.engine import scheduler  # noqa: E402
from workflows.engine.nodes import Done, NodeHandler, registry  # noqa: E402

ADMIT_TASK = "workflows.tasks.admit_queued_task"
STEP_TASK = "workflows.tasks.run_step"
KEY = "bench:admission:"  # + admit_s, admit_n, tasks, admitted, step_s (summed in Redis)


class WorkerSleep(NodeHandler):
    """A worker step that sleeps `ms` milliseconds (an LLM or tool call's wait)."""

    type = "bench_sleep"

    def step_refs(self, config) -> frozenset[str]:
        return frozenset()

    def run(self, ctx) -> Done:
        time.sleep(ctx.config.get("ms", 100) / 1000)
        return Done(1)


registry.register(WorkerSleep())


# --- timers (in the workers and in this process's reaper) -----------------------------------------
def _timed_admission(admit):
    """`scheduler.admit_queued` timed: the admission task and the reaper call it."""

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return admit(*args, **kwargs)
        finally:
            _redis().pipeline().incrbyfloat(KEY + "admit_s", time.perf_counter() - t0).incr(
                KEY + "admit_n"
            ).execute()

    return timed


scheduler.admit_queued = _timed_admission(scheduler.admit_queued)
_started: dict[str, float] = {}


@task_prerun.connect
def _task_started(task_id=None, task=None, **kwargs) -> None:
    if task is not None and task.name in (ADMIT_TASK, STEP_TASK):
        _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_ended(task_id=None, task=None, retval=None, **kwargs) -> None:
    t0 = _started.pop(task_id, None)
    if t0 is None:
        return
    seconds = time.perf_counter() - t0
    if task.name == ADMIT_TASK:
        _redis().pipeline().incr(KEY + "tasks").incrby(KEY + "admitted", int(retval or 0)).execute()
    else:
        _redis().incrbyfloat(KEY + "step_s", seconds)


# --- the driver -----------------------------------------------------------------------------------
def start_workers(queue: str, n: int, concurrency: int, limit: int) -> list[tuple[subprocess.Popen, Path]]:
    workers = []
    for i in range(n):
        log_path = Path(settings.VAR_DIR) / f"{queue}-{i}.log"
        env = {
            **os.environ,
            "DATABASE_URL": scratch_database_url(),
            "CELERY_BROKER_URL": celery_app.conf.broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "DATABASE_CONN_MAX_AGE": "60",
            "WORKFLOWS_MAX_RUNNING_PER_WORKFLOW": str(limit),
        }
        cmd = [
            sys.executable, "-m", "celery", "-A", "agentmesh", "worker", "-Q", queue,
            "-c", str(concurrency), "--pool", "prefork", "--include", "benchmarks.admission_backlog",
            "--without-heartbeat", "--without-gossip", "--without-mingle",
            "-n", f"{queue}-{i}@%h", "-l", "WARNING",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        workers.append((process, log_path))
    return workers


def stop_workers(workers) -> None:
    for process, _ in workers:
        process.terminate()
    for process, _ in workers:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def phase(user, args, limit: int) -> dict:
    """Start --runs runs against a per-workflow limit of `limit`, then start fresh workers:
    the runs are all there at once. Total time: the first step claimed -> the last run ended
    (the rows' timestamps), so the starts in this process are not part of it."""
    from django.db.models import Max, Min

    from workflows import services
    from workflows.models import StepExecution, WorkflowExecution

    settings.WORKFLOWS_MAX_RUNNING_PER_WORKFLOW = limit  # this process starts runs (and reaps)
    queue = f"bench-adm-{uuid.uuid4().hex[:8]}"
    celery_app.conf.task_default_queue = queue
    definition = {"nodes": [{"id": "s", "type": "bench_sleep", "config": {"ms": args.step_ms}}], "edges": []}
    workflow = services.workflow_create(owner=user, name=f"backlog-{queue}", definition=definition)
    t0 = time.perf_counter()
    ids = [services.workflow_execute(workflow=workflow, user=user)[0].pk for _ in range(args.runs)]
    started = time.perf_counter() - t0
    queued_at_start = WorkflowExecution.objects.filter(pk__in=ids, status="queued").count()
    for key in ("admit_s", "admit_n", "tasks", "admitted", "step_s"):
        _redis().delete(KEY + key)
    reaper = {"admitted": 0, "seconds": 0.0}
    stop = threading.Event()

    def beat():  # the reaper as beat runs it in production (every 5 s)
        try:
            while not stop.wait(5):
                t0 = time.perf_counter()
                reaper["admitted"] += scheduler.reap()["admitted"]
                reaper["seconds"] += time.perf_counter() - t0
        finally:
            connection.close()

    workers = start_workers(queue, args.workers, args.concurrency, limit)
    thread = threading.Thread(target=beat, daemon=True)
    try:
        thread.start()
        wait(
            lambda: WorkflowExecution.objects.filter(pk__in=ids, status="succeeded").count() == args.runs,
            1800,
            "all runs",
            interval=0.25,
        )
    finally:
        stop.set()
        thread.join()
        stop_workers(workers)
    first = StepExecution.objects.filter(execution_id__in=ids).aggregate(t=Min("started_at"))["t"]
    last = WorkflowExecution.objects.filter(pk__in=ids).aggregate(t=Max("finished_at"))["t"]
    r = _redis()
    return {
        "limit": limit,
        "total": (last - first).total_seconds(),
        "start": started,
        "queued_at_start": queued_at_start,
        "admit_s": float(r.get(KEY + "admit_s") or 0),
        "admit_n": int(r.get(KEY + "admit_n") or 0),
        "tasks": int(r.get(KEY + "tasks") or 0),
        "admitted": int(r.get(KEY + "admitted") or 0),
        "step_s": float(r.get(KEY + "step_s") or 0),
        "reaper": reaper,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--limit", type=int, default=100, help="WORKFLOWS_MAX_RUNNING_PER_WORKFLOW")
    parser.add_argument("--step-ms", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    parser.add_argument("--only", choices=["unlimited", "limited"], help="run one phase only")
    args = parser.parse_args()

    from django.test.utils import get_runner, setup_test_environment

    from agentmesh.accounts.models import Role, User

    if not celery_app.conf.broker_url.startswith("redis"):
        sys.exit("Set CELERY_BROKER_URL to a Redis broker.")
    setup_test_environment()
    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = db["NAME"]  # the database of DATABASE_URL, made afresh
    runner = get_runner(settings)(verbosity=0, interactive=False)
    old = runner.setup_databases()
    celery_app.conf.task_always_eager = False
    slots = args.workers * args.concurrency
    try:
        user = User.objects.create(username="bench", email="bench@example.com", role=Role.DEVELOPER)
        version = (
            f"PostgreSQL {connection.pg_version // 10000}" if connection.vendor == "postgresql" else "SQLite"
        )
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"database: {version}   broker: Redis   cpus: {os.cpu_count()}   load: {load}")
        print(
            f"{args.runs} runs x 1 step sleeping {args.step_ms} ms; {args.workers} workers x prefork "
            f"-c {args.concurrency} = {slots} slots; ideal {args.runs * args.step_ms / 1000 / slots:.1f} s"
        )
        results = {}
        for name, limit in (("unlimited", args.runs), ("limited", args.limit)):
            if args.only and args.only != name:
                continue
            results[name] = res = phase(user, args, limit)
            worker_time = res["total"] * slots
            print(
                f"{name:>9} (limit {limit}): total {res['total']:.1f} s ({res['queued_at_start']} queued after "
                f"the starts, which took {res['start']:.1f} s before it); steps {res['step_s']:.1f} s of "
                f"{worker_time:.1f} s worker time; admission: {res['tasks']} tasks admitted {res['admitted']}, "
                f"the reaper {res['reaper']['admitted']}; {res['admit_n']} calls took {res['admit_s']:.2f} s "
                f"= {100 * res['admit_s'] / worker_time:.2f} % of worker time"
            )
        if len(results) == 2:
            ratio = results["limited"]["total"] / results["unlimited"]["total"]
            print(f"limited / unlimited: {ratio:.2f} (target <= 1.3)")
    finally:
        from observability import buffer

        buffer.BUFFER.drain()
        connection.close()
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
