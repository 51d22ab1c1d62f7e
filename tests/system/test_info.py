"""GET /system/info: versions, the checked-out commit, run mode, features (pluggable), uptime —
and no secret or connection string anywhere in the answer."""

import shutil
import subprocess
from pathlib import Path

import celery
import django
import pytest
from django.conf import settings as django_settings

from agentmesh.celery import app as celery_app
from system.selectors import info, register_feature_source

URL = "/api/v1/system/info"


def test_info_for_admins(client_for, admin_user):
    body = client_for(admin_user).get(URL).json()
    assert body["version"] == "0.1.0"  # pyproject.toml
    assert body["django"] == django.get_version() and body["celery"] == celery.__version__
    assert body["python"].split()[-1].count(".") == 2
    assert body["database"]["vendor"] in ("sqlite", "postgresql")
    assert body["database"]["version"].split()[0] in ("SQLite", "PostgreSQL")
    assert body["broker"] in ("filesystem", "redis", "amqp")
    assert body["run_mode"] == ("embedded" if body["broker"] == "filesystem" else "production")
    assert body["time_zone"] == "UTC" and body["use_tz"] is True
    assert body["uptime_seconds"] >= 0 and body["started_at"]
    names = {f["name"]: f for f in body["features"]}
    assert names["mcp"]["enabled"] is True and names["mcp"]["source"] == "integrations"


@pytest.mark.skipif(not shutil.which("git"), reason="compares with git itself")
def test_commit_is_the_checked_out_one(client_for, admin_user):
    expected = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=django_settings.BASE_DIR, capture_output=True, text=True, timeout=10
    ).stdout.strip()
    if not expected:
        pytest.skip("not a git checkout")
    assert client_for(admin_user).get(URL).json()["commit"] == expected


def test_git_commit_follows_worktrees_and_packed_refs(tmp_path, settings):
    settings.GIT_COMMIT = ""
    common = tmp_path / "main" / ".git"
    (common / "worktrees" / "wt").mkdir(parents=True)
    (common / "packed-refs").write_text("# pack-refs with: peeled\n" + "a" * 40 + " refs/heads/feature\n")
    (common / "worktrees" / "wt" / "HEAD").write_text("ref: refs/heads/feature\n")
    (common / "worktrees" / "wt" / "commondir").write_text("../..\n")
    checkout = tmp_path / "wt"
    checkout.mkdir()
    (checkout / ".git").write_text(f"gitdir: {common / 'worktrees' / 'wt'}\n")
    assert info.git_commit(checkout) == "a" * 40

    (common / "refs" / "heads").mkdir(parents=True)
    (common / "refs" / "heads" / "feature").write_text("b" * 40 + "\n")  # a loose ref wins
    assert info.git_commit(checkout) == "b" * 40

    (common / "worktrees" / "wt" / "HEAD").write_text("c" * 40 + "\n")  # detached
    assert info.git_commit(checkout) == "c" * 40
    assert info.git_commit(tmp_path) == ""  # not a checkout

    settings.GIT_COMMIT = "d" * 40  # a container image without .git
    assert info.git_commit(checkout) == "d" * 40


def test_run_mode_can_be_set(client_for, admin_user, settings):
    settings.SYSTEM_RUN_MODE = "production"
    assert client_for(admin_user).get(URL).json()["run_mode"] == "production"


def test_a_registered_feature_source_is_listed_and_a_failing_one_skipped(client_for, admin_user):
    register_feature_source("flags", lambda: [{"name": "streaming", "enabled": False, "description": "SSE"}])
    register_feature_source("broken", lambda: 1 / 0)
    try:
        features = client_for(admin_user).get(URL).json()["features"]
    finally:
        info._feature_sources.pop("flags")
        info._feature_sources.pop("broken")
    assert {"name": "streaming", "enabled": False, "source": "flags", "description": "SSE"} in features
    assert not any(f["source"] == "broken" for f in features)


def test_no_secret_and_no_connection_string(client_for, admin_user, settings, monkeypatch):
    password = "Sup3r-s3cret-pw"  # noqa: S105
    monkeypatch.setitem(celery_app.conf, "broker_write_url", f"redis://agent:{password}@127.0.0.1:6379/3")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"redis://agent:{password}@cache:6379/4",
        }
    }
    settings.METRICS_TOKEN = "metrics-token-value"  # noqa: S105
    text = client_for(admin_user).get(URL).content.decode()
    body = client_for(admin_user).get(URL).json()
    assert body["broker"] == "redis" and body["run_mode"] == "production"
    for secret in (
        password,
        "metrics-token-value",
        django_settings.SECRET_KEY,
        *django_settings.FERNET_KEYS,
        "://",
        "@127.0.0.1",
    ):
        assert secret not in text, secret
    db_password = django_settings.DATABASES["default"].get("PASSWORD")
    if db_password:
        assert db_password not in text
    assert str(Path(django_settings.BASE_DIR)) not in text
