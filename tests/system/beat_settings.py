"""Settings of a real `celery beat` in the status integration tests: the test settings with
only beat's tick, every second, sent to the queue named by STATUS_TEST_BEAT_QUEUE."""

import os

from agentmesh.settings.test import *  # noqa: F403

CELERY_BEAT_SCHEDULE = {
    "system-beat-tick": {
        "task": "system.tasks.record_beat_tick",
        "schedule": 1.0,
        "options": {"queue": os.environ["STATUS_TEST_BEAT_QUEUE"], "expires": 10},
    }
}
