"""Helpers of the backup tests: seed data, read a database's whole state, and run manage.py
against another database (a temp SQLite file, a fresh PostgreSQL database) in a subprocess.

`python -m tests.system.backup_support state` prints the state of the database that
DATABASE_URL names, as JSON (used on the restored databases)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parents[2]
EVENTS_TABLE = "observability_observabilityevent"
COUNTERS_TABLE = "observability_metricseries"
SECRET_NAME = "backup-secret"


def seed() -> dict:
    """Users, groups, master data (a secret), tools, an agent, templates, sharing: rows in many tables."""
    from agentmesh.accounts.models import Role, User
    from agentmesh.core.sharing import object_share
    from integration.services import demo_seed
    from templates_app.demo import demo_templates_seed
    from tests.masterdata.factories import SECRET_VALUE, make_constraint, make_prompt, make_secret, make_skill
    from tests.testapp.models import Widget

    admin = User.objects.create_user(
        username="backup-admin", email="backup-admin@example.com", password="x", role=Role.ADMIN
    )
    owner = User.objects.create_user(
        username="backup-dev", email="backup-dev@example.com", password="x", role=Role.DEVELOPER
    )
    demo_seed(owner=owner)
    demo_templates_seed(owner=owner)
    secret = make_secret(owner, name=SECRET_NAME, value=SECRET_VALUE)
    skill = make_skill(owner)
    make_prompt(owner)
    make_constraint(owner)
    object_share(obj=skill, users=[admin], groups=None, actions=["view", "use"], revoke=False)
    Widget.objects.create(owner=owner, name="w-ü-🙂", size=3)
    return {"admin": admin, "owner": owner, "secret": secret, "plaintext": SECRET_VALUE}


def database_state(using: str = "default") -> dict:
    """Every backed-up table's rows ({pk: values} in a vendor-neutral JSON form) and the
    decrypted secrets."""
    from agentmesh.core import crypto
    from masterdata.models import Secret
    from system.backup_formats import _encode, backed_up_models

    tables = {}
    for model in backed_up_models():
        fields = [f.attname for f in model._meta.local_concrete_fields]
        rows = {}
        for row in model._base_manager.using(using).values_list(*fields).iterator():
            values = json.loads(json.dumps(row, default=_encode))
            rows[json.dumps(values[fields.index(model._meta.pk.attname)])] = values
        tables[model._meta.db_table] = rows
    secrets = {s.name: crypto.decrypt(s.encrypted_value) for s in Secret.objects.using(using).all()}
    return {"tables": tables, "secrets": secrets}


def assert_same_rows(source: dict, target: dict, *, restore_events: int = 1) -> None:
    """The same rows per table (the restore's own audit event aside) and the same secrets."""
    assert set(target["tables"]) == set(source["tables"])
    for table, rows in source["tables"].items():
        got = target["tables"][table]
        if table == EVENTS_TABLE:
            added = [values for pk, values in got.items() if pk not in rows]
            assert len(added) == restore_events, (table, added)
            assert all("audit.restore" in values for values in added), added
            got = {pk: values for pk, values in got.items() if pk in rows}
        if table == COUNTERS_TABLE:
            # The restoring process counts its own audit event (flushed when it exits).
            counted = {tuple(v[1:3]): v[3] for v in rows.values()}
            got_counted = {tuple(v[1:3]): v[3] for v in got.values()}
            events = "agentmesh_events_total"
            added = sum(v for k, v in got_counted.items() if k[0] == events) - sum(
                v for k, v in counted.items() if k[0] == events
            )
            assert added == restore_events, (added, got_counted, counted)
            assert {k: v for k, v in got_counted.items() if k[0] != events} == {
                k: v for k, v in counted.items() if k[0] != events
            }
            continue
        assert len(got) == len(rows), (table, len(got), len(rows))
        for pk, values in rows.items():
            assert got.get(pk) == values, (table, pk, values, got.get(pk))
    assert target["secrets"] == source["secrets"]


def subprocess_env(database_url: str, var_dir: Path) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CACHE_URL", "CELERY_BROKER_URL", "DATABASE_POOL_MAX_SIZE", "DATABASE_URL")
    }
    var_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        DJANGO_SETTINGS_MODULE="agentmesh.settings.test",
        DATABASE_URL=database_url,
        AGENTMESH_VAR_DIR=str(var_dir),
        CELERY_TASK_ALWAYS_EAGER="true",
    )
    return env


def run(args: list[str], env: dict, *, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(  # noqa: S603
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=600
    )
    if check:
        assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


def manage(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["manage.py", *args], env, check=check)


def state_of(env: dict, *, then_insert: bool = False) -> dict:
    """The state of the database of `env`; `then_insert`: afterwards insert rows (their ids
    under "inserted")."""
    args = ["-m", "tests.system.backup_support", "state", *(["--then-insert"] if then_insert else [])]
    return json.loads(run(args, env).stdout)


def postgres_url(settings_dict: dict, name: str) -> str:
    user = quote(settings_dict.get("USER") or "", safe="")
    password = settings_dict.get("PASSWORD")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{name}"


def postgres_admin(settings_dict: dict, statement: str) -> None:
    """Run CREATE/DROP DATABASE on the server of `settings_dict` (outside any transaction)."""
    import psycopg

    with psycopg.connect(
        dbname="postgres",
        user=settings_dict.get("USER") or None,
        password=settings_dict.get("PASSWORD") or None,
        host=settings_dict.get("HOST") or None,
        port=settings_dict.get("PORT") or None,
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        conn.execute(statement)


def insert_rows() -> dict:
    """New rows in tables with integer ids: they must not collide with the restored ids
    (PostgreSQL sequences reset after a restore)."""
    from django.contrib.auth.models import Group

    from agentmesh.accounts.models import User

    user = User.objects.create_user(username="after-restore", email="after@example.com", password="x")
    group = Group.objects.create(name="after-restore")
    return {"user": user.pk, "group": group.pk}


if __name__ == "__main__" and sys.argv[1:2] == ["state"]:
    import django

    django.setup()
    result = database_state()
    if "--then-insert" in sys.argv:
        result["inserted"] = insert_rows()
    print(json.dumps(result))
