"""export_data / import_data: the same bundle and report as the API, for admins and cron."""

import io
import json

import pytest
import yaml
from django.core.management import CommandError, call_command

from agents.models import Agent
from masterdata.models import Secret, Skill
from masterdata.services import skill_create
from tests.integration.test_bundle import SECRET_VALUE, delete_everything, make_setup, strip_volatile

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_export_whole_system_to_stdout_without_secret_values(developer, other_developer):
    secret = make_setup(developer)
    skill_create(owner=other_developer, name="theirs")
    text = run("export_data")
    assert SECRET_VALUE not in text and secret.encrypted_value not in text
    bundle = json.loads(text)
    assert bundle["metadata"]["scope"] == "system"
    assert {s["owner"] for s in bundle["skills"]} == {developer.username, other_developer.username}


def test_export_one_owner_as_yaml_to_a_file(developer, other_developer, tmp_path):
    make_setup(developer)
    skill_create(owner=other_developer, name="theirs")
    target = tmp_path / "backup.yaml"
    run(
        "export_data",
        "--owner",
        developer.username,
        "--format",
        "yaml",
        "--include",
        "skills,agents",
        "-o",
        str(target),
    )
    bundle = yaml.safe_load(target.read_text())
    assert set(bundle) == {"apiVersion", "kind", "metadata", "skills", "agents"}
    assert [s["name"] for s in bundle["skills"]] == ["Summarise"]
    with pytest.raises(CommandError):
        run("export_data", "--include", "nope")


def test_system_backup_restore_round_trip(developer, other_developer, admin_user, tmp_path):
    make_setup(developer)
    skill_create(owner=other_developer, name="theirs")
    target = tmp_path / "backup.json"
    run("export_data", "-o", str(target))
    first = json.loads(target.read_text())
    delete_everything(developer)
    Skill.objects.filter(owner=other_developer).delete()

    report = json.loads(run("import_data", str(target), "--dry-run"))
    assert report["ok"] and not report["written"]
    assert not Agent.objects.exists()

    report = json.loads(run("import_data", str(target), "--actor", admin_user.username))
    assert report["ok"] and report["written"], report
    assert Skill.objects.get(name="theirs").owner == other_developer  # owners kept
    assert Secret.objects.get(owner=developer).encrypted_value == ""

    again = json.loads(run("export_data"))
    expected = strip_volatile(first)
    next(m for m in expected["models"] if m["name"] == "gpt")["is_active"] = False
    assert strip_volatile(again) == expected

    report = json.loads(run("import_data", str(target), "--on-conflict", "skip"))
    assert set(report["counts"]) == {"skipped"}


def test_import_for_one_owner_and_failures(developer, other_developer, tmp_path):
    make_setup(developer)
    target = tmp_path / "mine.json"
    run("export_data", "--owner", developer.username, "-o", str(target))
    report = json.loads(run("import_data", str(target), "--owner", other_developer.username))
    assert report["ok"]
    assert Agent.objects.filter(owner=other_developer, name="helper").exists()

    bad = json.loads(target.read_text())
    bad["skills"].append({"name": "x", "input_schema": {"type": 3}})
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(bad))
    with pytest.raises(CommandError, match="Nothing imported"):
        run("import_data", str(bad_path), "--owner", other_developer.username, "--on-conflict", "rename")
    assert not Skill.objects.filter(owner=other_developer, name="x").exists()
    assert not Skill.objects.filter(owner=other_developer, name="Summarise-2").exists()
    with pytest.raises(CommandError, match="Invalid bundle"):
        garbage = tmp_path / "garbage.yaml"
        garbage.write_text("kind: [unclosed")
        run("import_data", str(garbage), "--owner", developer.username)
    with pytest.raises(CommandError, match="No user"):
        run("import_data", str(target), "--owner", "nobody")
