"""The workflow engine: definition validation (graph), node handlers (nodes) and the
database-backed scheduler that Celery tasks drive (scheduler)."""
