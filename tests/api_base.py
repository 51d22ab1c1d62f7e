"""The API test base class every owned-resource endpoint reuses.

A concrete test declares the data and inherits the standard CRUD and permission cases:

    class TestWidgetAPI(OwnedResourceAPITests):
        basename = "testapp-api:widget"
        model = Widget
        create_payload = {"name": "w1", "size": 3}
        update_payload = {"name": "w2", "size": 4}
        invalid_payload = ({"size": "big"}, "size")       # (payload, field named in the 400)

        def make_object(self, owner):
            return Widget.objects.create(owner=owner, name="existing")
"""

from typing import Any, ClassVar

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agentmesh.accounts.models import Role


def assert_problem(response, status: int, field: str | None = None) -> dict:
    """Assert the response is the API error shape with `status` (and an error on `field`)."""
    assert response.status_code == status, (response.status_code, getattr(response, "content", b"")[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert {"type", "title", "status", "detail", "errors"} <= set(body), body
    assert body["status"] == status
    if field is not None:
        assert field in {e["field"] for e in body["errors"]}, body
    return body


class OwnedResourceAPITests:
    basename: ClassVar[str]
    model: ClassVar[type]
    create_payload: ClassVar[dict[str, Any]]
    update_payload: ClassVar[dict[str, Any]]
    invalid_payload: ClassVar[tuple[dict[str, Any], str]]
    #: fields of update_payload to compare after an update (default: all of them)
    compare_fields: ClassVar[list[str] | None] = None

    def make_object(self, owner):
        raise NotImplementedError

    def get_create_payload(self, user) -> dict:
        return dict(self.create_payload)

    def get_update_payload(self, obj) -> dict:
        return dict(self.update_payload)

    # --- helpers ---------------------------------------------------------------------------
    def list_url(self, **query) -> str:
        url = reverse(f"{self.basename}-list")
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return url

    def detail_url(self, obj) -> str:
        return reverse(f"{self.basename}-detail", args=[obj.pk])

    def share_url(self, obj) -> str:
        return reverse(f"{self.basename}-share", args=[obj.pk])

    @staticmethod
    def ids(response) -> set[str]:
        body = response.json()
        return {item["id"] for item in body["results"]}

    # --- authentication and roles ----------------------------------------------------------
    def test_anonymous_is_401(self, api_client, db):
        assert_problem(api_client.get(self.list_url()), 401)

    def test_developer_creates_and_owns(self, client_for, developer):
        response = client_for(developer).post(
            self.list_url(), self.get_create_payload(developer), format="json"
        )
        assert response.status_code == 201, response.json()
        obj = self.model.objects.get(pk=response.json()["id"])
        assert obj.owner_id == developer.pk

    def test_user_role_cannot_create(self, client_for, plain_user):
        before = self.model.objects.count()
        response = client_for(plain_user).post(
            self.list_url(), self.get_create_payload(plain_user), format="json"
        )
        assert_problem(response, 403)
        assert self.model.objects.count() == before

    def test_invalid_payload_is_400_naming_the_field(self, client_for, developer):
        payload, field = self.invalid_payload
        before = self.model.objects.count()
        response = client_for(developer).post(self.list_url(), payload, format="json")
        assert_problem(response, 400, field)
        assert self.model.objects.count() == before

    # --- object visibility -----------------------------------------------------------------
    def test_owner_lists_and_retrieves(self, client_for, developer):
        obj = self.make_object(developer)
        client = client_for(developer)
        assert str(obj.pk) in self.ids(client.get(self.list_url()))
        response = client.get(self.detail_url(obj))
        assert response.status_code == 200
        assert response.json()["id"] == str(obj.pk)

    def test_other_user_gets_404_and_never_sees_it(self, client_for, developer, other_developer):
        obj = self.make_object(developer)
        client = client_for(other_developer)
        assert str(obj.pk) not in self.ids(client.get(self.list_url()))
        assert_problem(client.get(self.detail_url(obj)), 404)
        assert_problem(client.put(self.detail_url(obj), self.get_update_payload(obj), format="json"), 404)
        assert_problem(client.delete(self.detail_url(obj)), 404)
        assert self.model.objects.filter(pk=obj.pk).exists()

    def test_admin_sees_everything(self, client_for, developer, other_developer, admin_user):
        mine, theirs = self.make_object(developer), self.make_object(other_developer)
        client = client_for(admin_user)
        assert {str(mine.pk), str(theirs.pk)} <= self.ids(client.get(self.list_url()))
        assert client.get(self.detail_url(theirs)).status_code == 200

    def test_unknown_id_and_bad_uuid_are_404(self, client_for, developer):
        client = client_for(developer)
        assert_problem(client.get(self.list_url() + "/00000000-0000-0000-0000-000000000000"), 404)
        assert_problem(client.get(self.list_url() + "/not-a-uuid"), 404)

    # --- writes ----------------------------------------------------------------------------
    def test_owner_updates(self, client_for, developer):
        obj = self.make_object(developer)
        payload = self.get_update_payload(obj)
        response = client_for(developer).put(self.detail_url(obj), payload, format="json")
        assert response.status_code == 200, response.json()
        body = response.json()
        for field in self.compare_fields or payload:
            assert body[field] == payload[field], field

    def test_owner_deletes(self, client_for, developer):
        obj = self.make_object(developer)
        response = client_for(developer).delete(self.detail_url(obj))
        assert response.status_code == 204
        assert not self.model.objects.filter(pk=obj.pk).exists()

    def test_wrong_method_is_405_in_error_shape(self, client_for, developer):
        obj = self.make_object(developer)
        assert_problem(client_for(developer).post(self.detail_url(obj), {}, format="json"), 405)

    # --- sharing ---------------------------------------------------------------------------
    def test_share_view_grants_read_only_and_revoke_removes(self, client_for, developer, other_developer):
        obj = self.make_object(developer)
        owner, other = client_for(developer), client_for(other_developer)
        response = owner.post(self.share_url(obj), {"users": [other_developer.username], "actions": ["view"]})
        assert response.status_code == 200, response.json()
        assert response.json()["users"] == [
            {"id": str(other_developer.pk), "username": other_developer.username, "actions": ["view"]}
        ]
        assert other.get(self.detail_url(obj)).status_code == 200
        assert str(obj.pk) in self.ids(other.get(self.list_url()))
        assert_problem(other.put(self.detail_url(obj), self.get_update_payload(obj), format="json"), 403)
        assert_problem(other.delete(self.detail_url(obj)), 403)
        assert_problem(other.post(self.share_url(obj), {"users": [other_developer.username]}), 403)

        response = owner.post(self.share_url(obj), {"users": [other_developer.username], "revoke": True})
        assert response.status_code == 200
        assert response.json()["users"] == []
        assert_problem(other.get(self.detail_url(obj)), 404)
        assert str(obj.pk) not in self.ids(other.get(self.list_url()))

    def test_share_change_allows_update(self, client_for, developer, other_developer):
        obj = self.make_object(developer)
        client_for(developer).post(
            self.share_url(obj), {"users": [other_developer.username], "actions": ["change"]}
        )
        response = client_for(other_developer).put(
            self.detail_url(obj), self.get_update_payload(obj), format="json"
        )
        assert response.status_code == 200, response.json()

    def test_share_with_group(self, client_for, developer, plain_user):
        from django.contrib.auth.models import Group

        team = Group.objects.create(name=f"team-{plain_user.pk}")
        plain_user.groups.add(team)
        obj = self.make_object(developer)
        response = client_for(developer).post(
            self.share_url(obj), {"groups": [team.name], "actions": ["use"]}
        )
        assert response.status_code == 200, response.json()
        assert response.json()["groups"][0]["actions"] == ["use", "view"]
        assert client_for(plain_user).get(self.detail_url(obj)).status_code == 200

    def test_share_rejects_unknown_user(self, client_for, developer):
        obj = self.make_object(developer)
        response = client_for(developer).post(self.share_url(obj), {"users": ["nobody-here"]})
        assert_problem(response, 400, "users")

    # --- performance -----------------------------------------------------------------------
    def test_list_query_count_does_not_grow_with_rows(self, client_for, developer):
        client = client_for(developer)
        self.make_object(developer)
        with CaptureQueriesContext(connection) as few:
            assert client.get(self.list_url()).status_code == 200
        for _ in range(5):
            self.make_object(developer)
        with CaptureQueriesContext(connection) as many:
            assert client.get(self.list_url()).status_code == 200
        assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


__all__ = ["OwnedResourceAPITests", "Role", "assert_problem", "pytest"]
