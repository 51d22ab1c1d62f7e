"""Event ingestion through POST /api/v1/observability/events vs. a raw insert of the same rows.

Runs on the database of DATABASE_URL (PostgreSQL for the recorded figures) in a scratch test
database created and dropped by the script:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentmesh .venv/bin/python benchmarks/event_ingest.py

Each round posts BATCHES batches of 1,000 events through the full stack (test client: URL
resolution, middleware, JWT-less forced authentication, JSON parsing, per-item validation,
the ingest service) and then inserts the same rows with raw psycopg `executemany` and raw
`COPY` (the physical limit). Figures go to benchmarks/BENCHMARKS.md by hand.
"""

import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmesh.settings.test")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import get_runner, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

BATCH = 1000
BATCHES = int(os.environ.get("BENCH_BATCHES", "20"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def make_batch(n: int) -> list[dict]:
    return [
        {
            "type": "tool.call.finished",
            "level": "info",
            "source": "bench",
            "resource_type": "tools.tool",
            "resource_id": str(i % 50),
            "message": "tool call finished",
            "trace_id": uuid.uuid4().hex,
            "payload": {"duration_ms": i % 997, "ok": True, "tool": "lookup"},
        }
        for i in range(n)
    ]


def main() -> None:
    from rest_framework.test import APIClient

    from agentmesh.accounts.models import Role, User
    from observability.models import ObservabilityEvent
    from observability.services import EVENT_COLUMNS, event_rows

    setup_test_environment()
    # A database of our own: never the test database another run may be using.
    django.conf.settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"bench_events_{os.getpid()}"
    runner = get_runner(django.conf.settings)(verbosity=0, interactive=False)
    old = runner.setup_databases()
    try:
        user = User.objects.create(username="bench", email="bench@example.com", role=Role.DEVELOPER)
        client = APIClient()
        client.force_authenticate(user)
        batches = [make_batch(BATCH) for _ in range(BATCHES)]
        table = ObservabilityEvent._meta.db_table
        results = {"api": [], "executemany": [], "copy": []}
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            cProfile.runctx(
                "for b in batches[:5]: client.post('/api/v1/observability/events', b, format='json')",
                globals(),
                {"client": client, "batches": batches},
                sort="cumtime",
            )
            return
        for _ in range(ROUNDS):
            ObservabilityEvent.objects.all().delete()
            t0 = time.perf_counter()
            for batch in batches:
                response = client.post("/api/v1/observability/events", batch, format="json")
                assert response.status_code == 201, response.content[:300]
            results["api"].append(BATCH * BATCHES / (time.perf_counter() - t0))

            # The same rows (same columns, values, JSON payloads) as plain tuples.
            now = timezone.now()
            rows = []
            for batch in batches:
                objs = [
                    ObservabilityEvent(
                        timestamp=now,
                        type=e["type"],
                        level=e["level"],
                        source=e["source"],
                        actor_id=user.pk,
                        resource_type=e["resource_type"],
                        resource_id=e["resource_id"],
                        message=e["message"],
                        trace_id=e["trace_id"],
                        span_id="",
                        request_id="",
                        payload=e["payload"],
                    )
                    for e in batch
                ]
                rows.append(list(event_rows(objs)))
            cols = ", ".join(EVENT_COLUMNS)
            marks = ", ".join(["%s"] * len(EVENT_COLUMNS))

            ObservabilityEvent.objects.all().delete()
            raw = connection.connection  # psycopg connection (autocommit)
            t0 = time.perf_counter()
            for batch_rows in rows:
                with raw.transaction(), raw.cursor() as cur:
                    cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", batch_rows)  # noqa: S608
            results["executemany"].append(BATCH * BATCHES / (time.perf_counter() - t0))

            ObservabilityEvent.objects.all().delete()
            t0 = time.perf_counter()
            for batch_rows in rows:
                with (
                    raw.transaction(),
                    raw.cursor() as cur,
                    cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy,
                ):
                    for row in batch_rows:
                        copy.write_row(row)
            results["copy"].append(BATCH * BATCHES / (time.perf_counter() - t0))

        print(
            f"database: {connection.vendor} {connection.pg_version if connection.vendor == 'postgresql' else ''}"
        )
        print(f"{ROUNDS} rounds x {BATCHES} batches x {BATCH} events (median of rounds)")
        med = {k: statistics.median(v) for k, v in results.items()}
        for name, value in med.items():
            print(
                f"  {name:12s} {value:10,.0f} events/s   rounds: {', '.join(f'{x:,.0f}' for x in results[name])}"
            )
        print(
            f"  api / executemany: {med['api'] / med['executemany']:.0%}   api / copy: {med['api'] / med['copy']:.0%}"
        )
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    if connection.vendor != "postgresql" and "--allow-sqlite" not in sys.argv:
        sys.exit("Set DATABASE_URL to a PostgreSQL database (or pass --allow-sqlite).")
    main()
