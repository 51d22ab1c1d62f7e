"""POST /system/cache/clear: a named cache, all of it or a key prefix. Runs on the configured
cache: locmem by default, the real Redis cache when CACHE_URL is a redis:// URL."""

import pytest
from django.conf import settings
from django.core.cache import cache, caches
from django.test import override_settings

from agentmesh.accounts.models import Role
from observability.models import ObservabilityEvent
from system.models import ControlRequest
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db

URL = "/api/v1/system/cache/clear"
BACKEND = "redis" if settings.CACHES["default"]["BACKEND"].endswith("RedisCache") else "locmem"


def test_clearing_a_prefix_leaves_the_other_keys(client_for, admin_user):
    cache.set_many({"runtime:a": 1, "runtime:b": 2, "runtimeX": 3, "flags:a": 4, "other": 5})

    response = client_for(admin_user).post(URL, {"prefix": "runtime:"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["kind"] == "cache_clear" and body["target"] == "default"
    assert body["result"] == {"cache": "default", "backend": BACKEND, "prefix": "runtime:", "cleared": 2}
    assert cache.get_many(["runtime:a", "runtime:b", "runtimeX", "flags:a", "other"]) == {
        "runtimeX": 3,
        "flags:a": 4,
        "other": 5,
    }
    record = ControlRequest.objects.get(pk=body["id"])
    assert record.requested_by == admin_user and record.parameters == {
        "cache": "default",
        "prefix": "runtime:",
    }
    event = ObservabilityEvent.objects.get(type="audit.create", resource_id=str(record.pk))
    assert event.actor_id == admin_user.pk and event.payload["channel"] == "api"


def test_a_prefix_with_glob_characters_matches_literally(client_for, admin_user):
    cache.set_many({"a*b:1": 1, "axb:1": 2, "a[b]:1": 3, "ab:1": 4})

    body = client_for(admin_user).post(URL, {"prefix": "a*b"}, format="json").json()
    assert body["result"]["cleared"] == 1
    body = client_for(admin_user).post(URL, {"prefix": "a[b]"}, format="json").json()
    assert body["result"]["cleared"] == 1
    assert cache.get_many(["a*b:1", "axb:1", "a[b]:1", "ab:1"]) == {"axb:1": 2, "ab:1": 4}


def test_clearing_the_whole_cache_counts_the_keys(client_for, admin_user):
    cache.set_many({f"k{i}": i for i in range(7)})
    redis = caches["default"]._cache.get_client(write=True) if BACKEND == "redis" else None
    if redis is not None:  # Redis: a key of the same database that is not the cache's stays
        redis.set("not-a-cache-key", "stays")

    try:
        body = client_for(admin_user).post(URL, {}, format="json").json()

        assert body["result"]["cleared"] >= 7 and body["result"]["prefix"] == ""  # + the throttle's key
        assert cache.get_many([f"k{i}" for i in range(7)]) == {}
        if redis is not None:
            assert redis.get("not-a-cache-key") == b"stays"
    finally:
        if redis is not None:
            redis.delete("not-a-cache-key")


def test_a_named_cache(client_for, admin_user):
    second = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "second-cache"}
    with override_settings(CACHES={**settings.CACHES, "second": second}):
        caches["second"].set("x:1", 1)
        cache.set("x:1", "default")
        body = client_for(admin_user).post(URL, {"cache": "second", "prefix": "x:"}, format="json").json()
        assert body["result"]["cleared"] == 1 and body["target"] == "second"
        assert caches["second"].get("x:1") is None and cache.get("x:1") == "default"


def test_the_file_cache_clears_whole_but_not_by_prefix(client_for, admin_user, tmp_path):
    files = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path)}
    with override_settings(CACHES={**settings.CACHES, "files": files}):
        caches["files"].set_many({"a": 1, "b": 2})
        client = client_for(admin_user)
        assert_problem(client.post(URL, {"cache": "files", "prefix": "a"}, format="json"), 400, "prefix")
        assert caches["files"].get("a") == 1
        body = client.post(URL, {"cache": "files"}, format="json").json()
        assert body["result"] == {"cache": "files", "backend": "file", "prefix": "", "cleared": 2}
        assert caches["files"].get("a") is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"cache": "nope"}, "cache"), ({"prefix": 5, "cache": ["x"]}, "cache"), ({"colour": "x"}, "colour")],
)
def test_bad_input_is_a_400_naming_it(client_for, admin_user, payload, field):
    cache.set("keep", 1)
    assert_problem(client_for(admin_user).post(URL, payload, format="json"), 400, field)
    assert cache.get("keep") == 1 and not ControlRequest.objects.exists()


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.USER])
def test_only_admins_clear_caches(client_for, make_user, role):
    cache.set("keep", 1)
    assert_problem(client_for(make_user(role)).post(URL, {}, format="json"), 403)
    assert cache.get("keep") == 1
