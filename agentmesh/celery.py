"""The Celery application. Configuration comes from Django settings (CELERY_ namespace)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmesh.settings.dev")

app = Celery("agentmesh")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
