import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from agentmesh.core import crypto
from agentmesh.core.signals import write_audited
from masterdata import services
from masterdata.models import Secret
from tests.api_base import assert_problem

from .factories import SECRET_VALUE, make_model, make_secret

URL = "/api/v1/master-data/secrets"


def assert_no_plaintext(response, value=SECRET_VALUE):
    assert value not in response.content.decode(), response.content
    # Not even a long fragment of it.
    assert value[4:-4] not in response.content.decode()


def test_value_never_in_any_response(client_for, developer, other_developer):
    client = client_for(developer)
    responses = []
    created = client.post(URL, {"name": "k", "value": SECRET_VALUE, "description": "d"}, format="json")
    responses.append(created)
    body = created.json()
    assert body["mask"] == "sk-…abcd"
    assert body["fingerprint"].startswith("sha256:")
    assert "value" not in body and "encrypted_value" not in body
    pk = body["id"]
    responses += [
        client.get(URL),
        client.get(f"{URL}/{pk}"),
        client.put(f"{URL}/{pk}", {"name": "k2", "value": SECRET_VALUE}, format="json"),
        client.patch(f"{URL}/{pk}", {"description": "x"}, format="json"),
        client.post(URL, {"name": "k2", "value": SECRET_VALUE}, format="json"),  # duplicate name: 400
        client.post(
            URL, {"name": "k3", "value": SECRET_VALUE + "x" * 10_000}, format="json"
        ),  # too long: 400
        client.post(f"{URL}/{pk}/share", {"users": [other_developer.username], "actions": ["use"]}),
        client.get(f"{URL}/{pk}/share"),
        client.get("/api/v1/master-data/stats"),
        client_for(other_developer).get(f"{URL}/{pk}"),
    ]
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 200, 400, 400, 200, 200, 200, 200]
    for response in responses:
        assert_no_plaintext(response)


def test_value_is_required_on_create_and_optional_on_update(client_for, developer):
    client = client_for(developer)
    assert_problem(client.post(URL, {"name": "k", "value": ""}, format="json"), 400, "value")
    secret = make_secret(developer)
    old_cipher = secret.encrypted_value
    assert client.put(f"{URL}/{secret.pk}", {"name": "renamed"}, format="json").status_code == 200
    secret.refresh_from_db()
    assert secret.encrypted_value == old_cipher
    client.patch(f"{URL}/{secret.pk}", {"value": "another-value-1234567"}, format="json")
    secret.refresh_from_db()
    assert secret.mask == "ano…4567"
    assert services.secret_reveal(secret=secret, actor=developer, purpose="test") == "another-value-1234567"


def test_database_column_holds_only_ciphertext(developer):
    secret = make_secret(developer)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM masterdata_secret WHERE id = %s",
            [secret.pk.hex if connection.vendor == "sqlite" else secret.pk],
        )
        row = cursor.fetchone()
    assert row is not None
    assert not any(SECRET_VALUE in str(column) for column in row)
    assert crypto.decrypt(Secret.objects.get(pk=secret.pk).encrypted_value) == SECRET_VALUE


def test_audit_event_masks_the_ciphertext(client_for, developer):
    seen = []

    def receiver(sender, **kwargs):
        seen.append(kwargs["changes"])

    write_audited.connect(receiver, sender=Secret)
    try:
        response = client_for(developer).post(URL, {"name": "k", "value": SECRET_VALUE}, format="json")
        client_for(developer).patch(f"{URL}/{response.json()['id']}", {"value": "x" * 20}, format="json")
    finally:
        write_audited.disconnect(receiver, sender=Secret)
    assert len(seen) == 2
    for changes in seen:
        assert changes["encrypted_value"] == "***"
        assert SECRET_VALUE not in json.dumps(changes, default=str)


def test_reveal_checks_use_permission_and_records_the_use(developer, other_developer, caplog):
    secret = make_secret(developer)
    with pytest.raises(services.SecretAccessDenied):
        services.secret_reveal(secret=secret, actor=other_developer, purpose="sneaky")
    with caplog.at_level(logging.DEBUG):
        value = services.secret_reveal(secret=secret, actor=developer, purpose="llm call: model m")
    assert value == SECRET_VALUE
    assert SECRET_VALUE not in caplog.text
    secret.refresh_from_db()
    assert secret.last_used_at is not None
    assert secret.last_used_for == "llm call: model m"
    assert services.secret_reveal(secret=secret, actor=None, purpose="system") == SECRET_VALUE


def test_rotate_command_then_old_key_can_be_removed(settings, developer, other_developer):
    old_key = settings.FERNET_KEYS[0]
    secrets = [
        make_secret(developer, name="a", value="first-secret-value-0001"),
        make_secret(other_developer, name="b", value="second-secret-value-0002"),
    ]
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, old_key]
    secrets.append(make_secret(developer, name="c", value="third-secret-value-0003"))  # already under new key

    # Without rotation, dropping the old key would lose the first two.
    settings.FERNET_KEYS = [new_key]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(Secret.objects.get(name="a").encrypted_value)
    settings.FERNET_KEYS = [new_key, old_key]

    from io import StringIO

    out = StringIO()
    call_command("rotate_secret_keys", stdout=out)
    assert "Re-encrypted 3 secret(s)" in out.getvalue()

    settings.FERNET_KEYS = [new_key]  # the old key is gone
    for secret, expected in zip(
        secrets,
        ["first-secret-value-0001", "second-secret-value-0002", "third-secret-value-0003"],
        strict=True,
    ):
        secret.refresh_from_db()
        assert services.secret_reveal(secret=secret, actor=None, purpose="check") == expected


def test_rotate_refuses_when_a_value_does_not_decrypt(settings, developer):
    make_secret(developer, name="a")
    ciphertexts = list(Secret.objects.values_list("encrypted_value", flat=True))
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]  # the key that wrote it is gone
    with pytest.raises(CommandError, match="Nothing was changed"):
        call_command("rotate_secret_keys")
    assert list(Secret.objects.values_list("encrypted_value", flat=True)) == ciphertexts


def test_secret_used_by_a_model_cannot_be_deleted(client_for, developer):
    secret = make_secret(developer)
    make_model(developer, provider="anthropic", model_name="c", api_key_secret=secret)
    body = assert_problem(client_for(developer).delete(f"{URL}/{secret.pk}"), 409)
    assert "model config" in body["detail"]


# --- admin ----------------------------------------------------------------------------------
@pytest.fixture
def admin_client(client, make_user):
    from agentmesh.accounts.models import Role

    admin = make_user(Role.ADMIN, is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def test_admin_pages_show_only_the_mask(admin_client, developer):
    secret = make_secret(developer)
    for url in (
        f"/admin/masterdata/secret/{secret.pk}/change/",
        "/admin/masterdata/secret/",
        "/admin/masterdata/secret/add/",
        f"/admin/masterdata/secret/{secret.pk}/history/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert SECRET_VALUE not in html, url
        assert secret.encrypted_value not in html, url
    assert secret.mask in admin_client.get(f"/admin/masterdata/secret/{secret.pk}/change/").content.decode()


def test_admin_creates_and_updates_secrets_through_the_service(admin_client, developer):
    response = admin_client.post(
        "/admin/masterdata/secret/add/",
        {"owner": developer.pk, "name": "from-admin", "description": "", "value": SECRET_VALUE},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    secret = Secret.objects.get(name="from-admin")
    assert secret.mask == "sk-…abcd" and SECRET_VALUE not in secret.encrypted_value
    response = admin_client.post(
        f"/admin/masterdata/secret/{secret.pk}/change/",
        {"owner": developer.pk, "name": "from-admin", "description": "kept", "value": ""},
    )
    assert response.status_code == 302
    secret.refresh_from_db()
    assert secret.description == "kept"
    assert crypto.decrypt(secret.encrypted_value) == SECRET_VALUE


@pytest.mark.parametrize("model", ["skill", "constraint", "prompt", "promptversion", "modelconfig", "secret"])
def test_every_admin_changelist_loads(admin_client, developer, model):
    from .factories import make_constraint, make_prompt, make_skill

    make_skill(developer), make_constraint(developer), make_prompt(developer), make_model(developer)
    response = admin_client.get(f"/admin/masterdata/{model}/?q=a")
    assert response.status_code == 200


def test_admin_prompt_edit_goes_through_the_service(admin_client, developer):
    from masterdata.models import Prompt

    from .factories import make_prompt

    prompt = make_prompt(developer)
    assert admin_client.get(f"/admin/masterdata/prompt/{prompt.pk}/change/").status_code == 200
    response = admin_client.post(
        f"/admin/masterdata/prompt/{prompt.pk}/change/",
        {
            "owner": developer.pk,
            "name": prompt.name,
            "description": "",
            "category": "",
            "tags": "[]",
            "template": "Bye {{ name }}",
            "variables": '[{"name": "name"}]',
            "is_active": "on",
            "versions-TOTAL_FORMS": "1",
            "versions-INITIAL_FORMS": "1",
            "versions-MIN_NUM_FORMS": "0",
            "versions-MAX_NUM_FORMS": "1000",
            "versions-0-id": str(prompt.versions.get().pk),
            "versions-0-prompt": str(prompt.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    prompt = Prompt.objects.get(pk=prompt.pk)
    assert prompt.version == 2
    assert list(prompt.versions.values_list("version", flat=True)) == [2, 1]


def test_admin_shows_service_errors_as_form_errors(admin_client, developer):
    from masterdata.models import Constraint

    response = admin_client.post(
        "/admin/masterdata/constraint/add/",
        {
            "owner": developer.pk,
            "name": "bad",
            "description": "",
            "type": "budget",
            "rules": '{"max_cost_usd_per_run": -1}',
        },
    )
    assert response.status_code == 200
    assert "rules.max_cost_usd_per_run" in response.content.decode()
    assert not Constraint.objects.exists()
    response = admin_client.post(
        "/admin/masterdata/constraint/add/",
        {
            "owner": developer.pk,
            "name": "ok",
            "description": "",
            "type": "budget",
            "rules": '{"max_cost_usd_per_run": 1}',
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    assert Constraint.objects.get().name == "ok"
