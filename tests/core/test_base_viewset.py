from tests.api_base import OwnedResourceAPITests, assert_problem
from tests.testapp.models import Widget, WidgetPart


class TestWidgetAPI(OwnedResourceAPITests):
    basename = "testapp-api:widget"
    model = Widget
    create_payload = {"name": "first", "size": 3, "category": "tools"}
    update_payload = {"name": "renamed", "size": 4, "category": "tools"}
    invalid_payload = ({"name": "x", "size": "big"}, "size")

    def make_object(self, owner):
        return Widget.objects.create(owner=owner, name="existing", size=2)


def test_protected_delete_is_409(client_for, developer):
    widget = Widget.objects.create(owner=developer, name="w")
    WidgetPart.objects.create(owner=developer, widget=widget, label="p")
    response = client_for(developer).delete(f"/api/v1/test/widgets/{widget.pk}")
    assert_problem(response, 409)
    assert Widget.objects.filter(pk=widget.pk).exists()


def test_filter_search_ordering_and_page_size_cap(client_for, developer):
    for i in range(5):
        Widget.objects.create(owner=developer, name=f"w{i}", size=i, category="a" if i % 2 else "b")
    client = client_for(developer)
    body = client.get("/api/v1/test/widgets?category=a").json()
    assert {w["name"] for w in body["results"]} == {"w1", "w3"}
    body = client.get("/api/v1/test/widgets?search=w4").json()
    assert [w["name"] for w in body["results"]] == ["w4"]
    body = client.get("/api/v1/test/widgets?ordering=-size&page_size=2").json()
    assert [w["size"] for w in body["results"]] == [4, 3]
    assert body["count"] == 5 and body["next"]
    body = client.get("/api/v1/test/widgets?page_size=100000").json()
    assert len(body["results"]) == 5  # capped at 200, still answers


def test_out_of_range_page_is_404_problem(client_for, developer):
    assert_problem(client_for(developer).get("/api/v1/test/widgets?page=99"), 404)
