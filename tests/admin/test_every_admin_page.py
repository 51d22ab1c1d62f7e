"""Every page of every model registered in the admin, as a superuser, with objects present.

The models come from `admin.site._registry`, so a model another app registers is covered
without listing it here (give it a row in tests/admin/dataset.py so its change page is opened).
For each: the list loads, with a search when it has search fields, with each choice of each
list filter; the add page answers 200 or 403 as `has_add_permission` says; one object's page
loads, and so do its delete page (200 or 403 as `has_delete_permission` says; nothing is
deleted by opening it) and the confirmation page of each of its object actions. No page is a
500 and no page shows a known secret plaintext.

A registered admin whose list page is not a change list (a settings form, no rows) is named in
FORM_PAGES with the reason: its page must load (200, no secret) and be a form, not a change
list; it has no objects, so the object pages are not opened.
"""

import uuid

import pytest
from django.contrib import admin
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import reverse

from agentmesh.core.admin import ObjectActionsMixin
from agentmesh.core.admin_display import IdSearchMixin

from .dataset import SEARCH_TERM, build

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
MODELS = [model for model, _ in REGISTRY]
IDS = [model._meta.label for model in MODELS]
#: admin pages that are not a ModelAdmin change list, and why
FORM_PAGES = {
    "constance.Config": "django-constance's runtime settings: one form page at the list address "
    "('add' is the same page, 'change' redirects to it), no rows, no search, filters or delete",
}
ROW_MODELS = [model for model in MODELS if model._meta.label not in FORM_PAGES]
ROW_IDS = [model._meta.label for model in ROW_MODELS]
FILTER_CHOICES_PER_FILTER = 3


@pytest.fixture(scope="module")
def dataset(django_db_setup, django_db_blocker):
    """Built once for the module inside a transaction that is rolled back at its end (each
    test runs in a savepoint of it)."""
    with django_db_blocker.unblock(), transaction.atomic():
        data = build()
        client = Client()
        client.force_login(data["admin"])
        data["client"] = client
        yield data
        transaction.set_rollback(True)


@pytest.fixture
def site(dataset, db):
    return dataset


def get(site, url: str, expect: int | tuple[int, ...] = 200):
    response = site["client"].get(url)
    allowed = (expect,) if isinstance(expect, int) else expect
    assert response.status_code in allowed, f"{url} answered {response.status_code}"
    page = response.content.decode(errors="replace")
    for plaintext in site["plaintexts"]:
        assert plaintext not in page, f"{url} shows a secret plaintext"
    return response


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _request(site):
    request = RequestFactory().get("/admin/")
    request.user = site["admin"]
    return request


def _first(model):
    return model._default_manager.order_by("pk").first()


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_changelist_loads_with_search_and_every_filter(site, model):
    model_admin = admin.site._registry[model]
    changelist = _url(model, "changelist")
    response = get(site, changelist)
    if model._meta.label in FORM_PAGES:
        assert "cl" not in response.context, "a change list now: take it out of FORM_PAGES"
        assert response.context.get("form") is not None, "the settings page shows no form"
        return
    assert "cl" in response.context, "the list page did not render a change list (or name it in FORM_PAGES)"

    if model_admin.get_search_fields(_request(site)):
        for term in (SEARCH_TERM, "nothing-matches-this", str(uuid.uuid4())[:8], str(uuid.uuid4())):
            found = get(site, f"{changelist}?q={term}")
            assert "cl" in found.context

    for spec in response.context["cl"].filter_specs:
        choices = [c for c in spec.choices(response.context["cl"]) if not c.get("selected")]
        for choice in choices[:FILTER_CHOICES_PER_FILTER]:
            query = choice["query_string"]
            filtered = get(site, f"{changelist}{query}")
            assert "cl" in filtered.context, f"filter {spec.title!r} {query} did not list"


@pytest.mark.parametrize("model", ROW_MODELS, ids=ROW_IDS)
def test_add_page_matches_the_add_permission(site, model):
    model_admin = admin.site._registry[model]
    allowed = model_admin.has_add_permission(_request(site))
    get(site, _url(model, "add"), 200 if allowed else 403)


@pytest.mark.parametrize("model", ROW_MODELS, ids=ROW_IDS)
def test_change_page_of_an_object_loads(site, model):
    obj = _first(model)
    assert obj is not None, f"no {model._meta.label} in tests/admin/dataset.py: add one"
    get(site, _url(model, "change", obj.pk))


@pytest.mark.parametrize("model", ROW_MODELS, ids=ROW_IDS)
def test_delete_page_matches_the_delete_permission_and_dates_drill_down(site, model):
    model_admin = admin.site._registry[model]
    obj = _first(model)
    assert obj is not None, f"no {model._meta.label} in tests/admin/dataset.py: add one"
    allowed = model_admin.has_delete_permission(_request(site), obj)
    get(site, _url(model, "delete", obj.pk), 200 if allowed else 403)
    assert model._default_manager.filter(pk=obj.pk).exists()
    listed = get(site, _url(model, "changelist"))
    actions = listed.context["action_form"]
    offered = [value for value, _ in actions.fields["action"].choices] if actions else []
    assert ("delete_selected" in offered) == (
        allowed and "delete_selected" in model_admin.get_actions(_request(site))
    )
    if model_admin.date_hierarchy:
        field = model_admin.date_hierarchy
        moment = getattr(obj, field, None)
        if moment is not None:
            get(
                site, f"{_url(model, 'changelist')}?{field}__year={moment.year}&{field}__month={moment.month}"
            )


ACTION_ADMINS = [(m, a) for m, a in REGISTRY if isinstance(a, ObjectActionsMixin)]


@pytest.mark.parametrize(
    "model", [m for m, _ in ACTION_ADMINS], ids=[m._meta.label for m, _ in ACTION_ADMINS]
)
def test_object_action_confirmation_pages_load(site, model):
    """GET only: a confirmation page changes nothing (actions without one are not opened)."""
    model_admin = admin.site._registry[model]
    obj = _first(model)
    assert obj is not None, f"no {model._meta.label} in tests/admin/dataset.py: add one"
    request = _request(site)
    change = get(site, _url(model, "change", obj.pk)).content.decode()
    for action in model_admin.get_object_actions(request, obj):
        url = model_admin.object_action_url(obj, action)
        assert url in change, f"{action.name} has no button on the page"
        if action.confirm:
            page = get(site, url)
            assert "confirm" in page.content.decode()


@pytest.mark.parametrize(
    "model",
    [m for m, a in REGISTRY if isinstance(a, IdSearchMixin)],
    ids=[m._meta.label for m, a in REGISTRY if isinstance(a, IdSearchMixin)],
)
def test_search_by_whole_and_short_id_finds_the_object(site, model):
    obj = _first(model)
    assert obj is not None
    changelist = _url(model, "changelist")
    whole = uuid.UUID(str(obj.pk))
    for term in (str(whole), str(whole)[:8], str(whole).upper(), whole.hex, str(whole)[:8].upper()):
        cl = get(site, f"{changelist}?q={term}").context["cl"]
        assert obj.pk in {row.pk for row in cl.result_list}, f"{term} did not find {obj.pk}"
