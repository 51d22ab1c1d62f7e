"""Aggregates the database computes for us, on SQLite and PostgreSQL alike."""

import math

from django.db.models import QuerySet


def percentiles(qs: QuerySet, field: str, points=(0.5, 0.95, 0.99)) -> dict:
    """Nearest-rank percentiles of `field` over `qs`: {"p50": …, "p95": …} (None when empty).

    One COUNT, then one ordered OFFSET query per point: no rows are loaded into Python.
    """
    qs = qs.exclude(**{f"{field}__isnull": True})
    n = qs.count()
    out = {}
    for p in points:
        key = f"p{round(p * 100)}"
        if n == 0:
            out[key] = None
            continue
        offset = min(n - 1, max(0, math.ceil(p * n) - 1))
        out[key] = qs.order_by(field).values_list(field, flat=True)[offset]
    return out
