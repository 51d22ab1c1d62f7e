"""The instance's own secret key (no public default), old secrets still readable, production
defaults that pass `check --deploy`."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken

from agentmesh.core import crypto
from agentmesh.settings.keys import LEGACY_DEV_SECRET_KEY, fernet_key_from, load_or_create_secret_key
from masterdata.models import Secret
from masterdata.services import secret_create, secret_keys_rotate, secret_reveal

ROOT = Path(__file__).resolve().parents[2]
LEGACY_FERNET_KEY = fernet_key_from(LEGACY_DEV_SECRET_KEY)


def clean_env(var_dir: Path, settings_module: str = "agentmesh.settings.dev", **extra) -> dict:
    """The environment of a fresh install: none of the suite's or the shell's configuration."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(var_dir)),
        "DJANGO_SETTINGS_MODULE": settings_module,
        "AGENTMESH_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
        "CACHE_URL": "locmem://",
        **extra,
    }


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    if args[0] == "shell":
        args = ("shell", "-v", "0", *args[1:])  # without the auto-import notice
    return subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the key file -------------------------------------------------------------------------
def test_the_key_file_is_created_once_with_mode_0600_and_reused(tmp_path):
    path = tmp_path / "secret_key"
    key = load_or_create_secret_key(path)
    assert len(key) >= 50 and key != LEGACY_DEV_SECRET_KEY
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == key
    assert load_or_create_secret_key(path) == key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]  # no candidate left behind
    assert load_or_create_secret_key(tmp_path / "other") != key


def test_processes_starting_together_agree_on_one_key(tmp_path):
    path = tmp_path / "secret_key"
    code = (
        "import sys; from pathlib import Path; from agentmesh.settings.keys import load_or_create_secret_key; "
        "print(load_or_create_secret_key(Path(sys.argv[1])))"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
        for _ in range(8)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in processes}
    assert keys == {path.read_text()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]


def test_a_fresh_install_generates_its_key_and_keeps_it(tmp_path):
    show = (
        "from django.conf import settings; "
        "print(settings.SECRET_KEY); print(settings.SIMPLE_JWT['SIGNING_KEY']); print(*settings.FERNET_KEYS)"
    )
    first = manage("shell", "-c", show, env=clean_env(tmp_path))
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    secret_key, signing_key, fernet_keys = first.stdout.split("\n")[:3]
    assert secret_key == signing_key == key_file.read_text() != LEGACY_DEV_SECRET_KEY
    # The first Fernet key (it encrypts) comes from the new key; the old one only decrypts.
    assert fernet_keys.split() == [fernet_key_from(secret_key), LEGACY_FERNET_KEY]

    again = manage("shell", "-c", show, env=clean_env(tmp_path))
    assert again.stdout == first.stdout


def test_secrets_stored_under_the_old_dev_key_still_decrypt_in_a_fresh_install(tmp_path):
    old = Fernet(LEGACY_FERNET_KEY).encrypt(b"sk-stored-long-ago").decode()
    script = (
        "import os; from agentmesh.core import crypto; "
        "print(crypto.decrypt(os.environ['OLD'])); print(crypto.rotate(os.environ['OLD']))"
    )
    result = manage("shell", "-c", script, env=clean_env(tmp_path, OLD=old))
    assert result.returncode == 0, result.stderr
    plaintext, rotated = result.stdout.split("\n")[:2]
    assert plaintext == "sk-stored-long-ago"
    new_key = fernet_key_from((tmp_path / "secret_key").read_text())
    assert (
        Fernet(new_key).decrypt(rotated.encode()) == b"sk-stored-long-ago"
    )  # re-encrypted under the new key


@pytest.mark.django_db
def test_rotate_secret_keys_moves_old_secrets_off_the_public_key(developer):
    new_key = Fernet.generate_key().decode()
    with override_settings(FERNET_KEYS=[LEGACY_FERNET_KEY]):
        secret = secret_create(owner=developer, name="old", value="sk-stored-long-ago")
    with override_settings(FERNET_KEYS=[new_key, LEGACY_FERNET_KEY]):
        assert secret_reveal(secret=secret, actor=developer, purpose="test") == "sk-stored-long-ago"
        assert secret_keys_rotate() == 1
    with override_settings(FERNET_KEYS=[new_key]):  # the public key can now be dropped
        secret = Secret.objects.get(pk=secret.pk)
        assert crypto.decrypt(secret.encrypted_value) == "sk-stored-long-ago"


# --- tokens -------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_token_signed_with_the_old_public_dev_key_is_refused(api_client, admin_user):
    assert settings.SECRET_KEY != LEGACY_DEV_SECRET_KEY
    payload = dict(AccessToken.for_user(admin_user).payload)
    forged = jwt.encode(payload, LEGACY_DEV_SECRET_KEY, algorithm="HS256")
    response = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert response.status_code == 401, response.content
    # The same claims signed with the instance's key are accepted (the test is not vacuous).
    genuine = jwt.encode(payload, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")
    assert api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {genuine}").status_code == 200


# --- production ---------------------------------------------------------------------------
def prod_env(var_dir: Path, **extra) -> dict:
    return clean_env(
        var_dir,
        "agentmesh.settings.prod",
        SECRET_KEY=secrets.token_urlsafe(64)[:50],
        FERNET_KEYS=Fernet.generate_key().decode(),
        **extra,
    )


def test_check_deploy_is_clean_with_the_production_defaults(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=prod_env(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "W0" not in output and "WARNING" not in output
    assert not (tmp_path / "secret_key").exists()  # production never generates a key


def test_production_settings_are_secure_by_default_and_can_be_relaxed(tmp_path):
    show = (
        "from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "s.SECURE_HSTS_PRELOAD, s.REGISTRATION_OPEN, s.DEBUG, s.SECURE_REDIRECT_EXEMPT, "
        "s.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES'])"
    )
    default = manage("shell", "-c", show, env=prod_env(tmp_path))
    assert default.stdout.strip() == (
        "True 31536000 True True False False ['^api/v1/system/health$'] "
        "['rest_framework.renderers.JSONRenderer']"
    ), default
    relaxed = manage(
        "shell",
        "-c",
        show,
        env=prod_env(
            tmp_path,
            SECURE_SSL_REDIRECT="false",
            SECURE_HSTS_SECONDS="0",
            REGISTRATION_OPEN="true",
            DEBUG="1",  # never in production
        ),
    )
    assert relaxed.stdout.strip().startswith("False 0 True True True False"), relaxed
    assert "Browsable" not in relaxed.stdout


def test_production_without_a_secret_key_refuses_to_start_and_writes_no_key(tmp_path):
    env = prod_env(tmp_path)
    del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0 and "Set SECRET_KEY" in result.stderr
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.django_db
def test_health_stays_reachable_over_http_when_https_is_enforced(client):
    exempt = [r"^api/v1/system/health$"]  # prod's (checked above)
    with override_settings(SECURE_SSL_REDIRECT=True, SECURE_REDIRECT_EXEMPT=exempt):
        assert client.get("/api/v1/system/health").status_code in (200, 503)
        redirect = client.get("/api/v1/tools")
    assert redirect.status_code == 301 and redirect["Location"].startswith("https://")
