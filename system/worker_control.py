"""Remote-control commands this project adds to its Celery workers (imported by SystemConfig.ready,
so every worker registers them before it consumes its control queue).

- `agentmesh_control(action)`: do `action` (`connections`, `caches`, `config`: see
  system.services.control.LOCAL_ACTIONS) in this worker. Celery runs a control command in the
  worker's main process while tasks run in its pool processes (prefork), so the command acts in
  the main process and bumps the action's counter in memory shared with the pool processes
  (allocated before they are forked); each pool process compares the counters before its next
  task and does the same there. The reply says so.
- `agentmesh_process_stats`: the resident memory of the main process and of each pool process
  (psutil), with their PIDs: GET /system/metrics shows it, and a pool restart shows as new PIDs.
"""

import multiprocessing
import os

from celery import signals
from celery.worker.control import control_command, inspect_command

ACTIONS = ("connections", "caches", "config")
_shared: dict = {"generations": None, "main_pid": None}
_seen: list[int] = [0] * len(ACTIONS)


@signals.worker_init.connect(dispatch_uid="system.worker_control.init")
def _allocate_shared_counters(**kwargs) -> None:
    _shared["generations"] = multiprocessing.RawArray("q", len(ACTIONS))
    _shared["main_pid"] = os.getpid()


@signals.worker_process_init.connect(dispatch_uid="system.worker_control.process_init")
def _start_from_current_counters(**kwargs) -> None:
    generations = _shared["generations"]
    if generations is not None:
        _seen[:] = list(generations)


@signals.task_prerun.connect(dispatch_uid="system.worker_control.prerun")
def follow_control_requests(sender=None, **kwargs) -> None:
    """In a pool process, before a task: do what the main process was told since the last task."""
    generations = _shared["generations"]
    if generations is None or os.getpid() == _shared["main_pid"]:
        return  # not a worker, or a solo/threads pool: the command already ran in this process
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from system.services.control import LOCAL_ACTIONS

    for index, action in enumerate(ACTIONS):
        current = generations[index]
        if current != _seen[index]:
            _seen[index] = current
            LOCAL_ACTIONS[action]()


def _pool_pids(state) -> list[int]:
    pool = getattr(state.consumer, "pool", None)
    info = getattr(pool, "info", None) or {}
    return [int(pid) for pid in info.get("processes", []) or []]


@control_command(args=[("action", str)], signature="<action>")
def agentmesh_control(state, action: str = "", **kwargs) -> dict:
    """Do `action` (connections, caches, config) in this worker and its pool processes."""
    from system.services.control import LOCAL_ACTIONS

    if action not in ACTIONS:
        return {"error": f"unknown action {action!r}; valid: {', '.join(ACTIONS)}"}
    result = LOCAL_ACTIONS[action]()
    generations = _shared["generations"]
    if generations is not None:
        generations[ACTIONS.index(action)] += 1
    pool = _pool_pids(state)
    return {
        "ok": action,
        "pid": os.getpid(),
        "main_process": result,
        "pool_processes": len(pool),
        "pool": "each pool process does the same before its next task" if pool else "none",
    }


@inspect_command()
def agentmesh_process_stats(state, **kwargs) -> dict:
    """PID and resident memory of this worker's main process and of each pool process."""
    import psutil

    def rss(pid: int) -> int | None:
        try:
            return psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return None

    return {
        "pid": os.getpid(),
        "rss_bytes": rss(os.getpid()),
        "pool": [{"pid": pid, "rss_bytes": rss(pid)} for pid in _pool_pids(state)],
    }


def broadcast(command: str, *, arguments: dict | None = None, destination=None, reply=True, timeout=1.0):
    """Send a remote-control command to the workers from an API process, failing within a few
    seconds when the broker is down (a publish would otherwise retry with kombu's policy)."""
    from agentmesh.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
        return app.control.broadcast(
            command,
            arguments=arguments or {},
            destination=destination or None,
            reply=reply,
            timeout=timeout,
            limit=len(destination) if destination else None,
            connection=conn,
        )
