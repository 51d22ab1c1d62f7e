import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command


@pytest.mark.django_db
def test_no_model_change_without_a_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_production_settings_refuse_the_dev_secret_key(monkeypatch):
    import importlib
    import sys

    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("FERNET_KEYS", "ZmVybmV0LXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY=")
    sys.modules.pop("agentmesh.settings.prod", None)
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        importlib.import_module("agentmesh.settings.prod")

    monkeypatch.setenv("SECRET_KEY", "x" * 50)
    monkeypatch.delenv("FERNET_KEYS")
    sys.modules.pop("agentmesh.settings.prod", None)
    with pytest.raises(ImproperlyConfigured, match="FERNET_KEYS"):
        importlib.import_module("agentmesh.settings.prod")

    monkeypatch.setenv("FERNET_KEYS", "ZmVybmV0LXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY=")
    sys.modules.pop("agentmesh.settings.prod", None)
    prod = importlib.import_module("agentmesh.settings.prod")
    assert prod.DEBUG is False
    sys.modules.pop("agentmesh.settings.prod", None)


def test_cache_url_parsing(tmp_path):
    from agentmesh.settings.env import cache_from_url

    assert cache_from_url("redis://127.0.0.1:6379/1", tmp_path)["BACKEND"].endswith("RedisCache")
    assert cache_from_url("locmem://", tmp_path)["BACKEND"].endswith("LocMemCache")
    assert cache_from_url("file:///tmp/x", tmp_path)["LOCATION"] == "/tmp/x"
    with pytest.raises(ImproperlyConfigured):
        cache_from_url("memcached://x", tmp_path)


@pytest.mark.django_db
def test_seed_demo_is_idempotent(capsys):
    from agentmesh.accounts.models import User

    call_command("seed_demo")
    call_command("seed_demo")
    assert User.objects.filter(username="admin", is_superuser=True, role="admin").count() == 1
    assert User.objects.filter(username="developer", role="developer").count() == 1
    assert "already exists" in capsys.readouterr().out
    from masterdata.models import ModelConfig
    from tools.models import Tool

    developer = User.objects.get(username="developer")
    assert ModelConfig.objects.filter(owner=developer, provider="echo").count() == 1
    tools = Tool.objects.filter(owner=developer, category="Demo")
    assert tools.count() == 3 and set(tools.values_list("status", flat=True)) == {"deployed"}
    from agents.models import Agent

    agent = Agent.objects.get(owner=developer, name="echo-assistant")
    assert agent.status == "deployed" and agent.tools.count() == 3 and agent.versions.count() == 1
