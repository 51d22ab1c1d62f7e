import pytest

pytestmark = pytest.mark.django_db


def test_health_reports_database_cache_and_broker(api_client):
    response = api_client.get("/api/v1/system/health")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert {name: c["status"] for name, c in body["components"].items()} == {
        "database": "up",
        "cache": "up",
        "broker": "up",
    }


def test_health_is_503_when_the_cache_is_down(api_client, settings):
    # a Redis cache on a port nothing listens on
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }
    response = api_client.get("/api/v1/system/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["components"]["cache"]["status"] == "down"
    assert body["components"]["database"]["status"] == "up"


def test_health_is_503_when_the_broker_is_down(api_client, monkeypatch):
    from agentmesh.celery import app

    # Celery prefers the CELERY_BROKER_URL environment variable over its configuration. The
    # configuration is patched first: its undo must restore the value read before the env change.
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    response = api_client.get("/api/v1/system/health")
    assert response.status_code == 503
    assert response.json()["components"]["broker"]["status"] == "down"
