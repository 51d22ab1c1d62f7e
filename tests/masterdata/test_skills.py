import pytest

from masterdata.models import Skill
from tests.api_base import assert_problem

from .factories import make_skill

URL = "/api/v1/master-data/skills"


def names(response):
    assert response.status_code == 200, response.json()
    return [item["name"] for item in response.json()["results"]]


def test_slug_is_generated_and_unique_per_owner(client_for, developer, other_developer):
    client = client_for(developer)
    first = client.post(URL, {"name": "Web Search"}, format="json").json()
    assert first["slug"] == "web-search"
    make_skill(developer, name="web search!")  # same slug base, different name
    assert Skill.objects.get(name="web search!").slug == "web-search-2"
    assert make_skill(other_developer, name="Web Search").slug == "web-search"


def test_duplicate_name_per_owner_is_400_but_other_owner_may(client_for, developer, other_developer):
    make_skill(developer, name="Dup")
    assert_problem(client_for(developer).post(URL, {"name": "Dup"}, format="json"), 400, "name")
    assert client_for(other_developer).post(URL, {"name": "Dup"}, format="json").status_code == 201


def test_tags_are_normalised_and_validated(client_for, developer):
    client = client_for(developer)
    body = client.post(URL, {"name": "t", "tags": ["NLP", "nlp", " text "]}, format="json").json()
    assert body["tags"] == ["nlp", "text"]
    assert_problem(client.post(URL, {"name": "u", "tags": ['bad"quote']}, format="json"), 400, "tags")
    assert_problem(client.post(URL, {"name": "v", "tags": "nlp"}, format="json"), 400, "tags")


@pytest.mark.parametrize("field", ["input_schema", "output_schema"])
def test_schemas_must_be_valid_json_schema(client_for, developer, field):
    client = client_for(developer)
    assert_problem(client.post(URL, {"name": "s", field: {"type": 12}}, format="json"), 400, field)
    assert_problem(client.post(URL, {"name": "s", field: [1]}, format="json"), 400, field)
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    response = client.post(URL, {"name": "s", field: schema}, format="json")
    assert response.status_code == 201 and response.json()[field] == schema


def test_filters_category_type_tags_active_owner(client_for, developer, other_developer, admin_user):
    make_skill(developer, name="a", category="Language", tags=["nlp", "text"], type="knowledge")
    make_skill(developer, name="b", category="language", tags=["nlp"], is_active=False)
    make_skill(developer, name="c", category="math", tags=["nlp-extra"])
    make_skill(other_developer, name="d", category="language", tags=["nlp"])
    client = client_for(developer)
    assert sorted(names(client.get(f"{URL}?category=language"))) == ["a", "b"]
    assert names(client.get(f"{URL}?type=knowledge")) == ["a"]
    assert sorted(names(client.get(f"{URL}?tags=nlp"))) == ["a", "b"]  # not "nlp-extra"
    assert names(client.get(f"{URL}?tags=nlp,text")) == ["a"]
    assert names(client.get(f"{URL}?tags=NLP, TEXT")) == ["a"]
    assert sorted(names(client.get(f"{URL}?is_active=true"))) == ["a", "c"]
    everyone = client_for(admin_user)
    assert names(everyone.get(f"{URL}?owner={other_developer.username}")) == ["d"]
    assert names(client.get(f"{URL}?ordering=name")) == ["a", "b", "c"]


def test_categories_counts_only_visible_skills(client_for, developer, other_developer):
    make_skill(developer, name="a", category="language")
    make_skill(developer, name="b", category="language")
    make_skill(developer, name="c", category="math")
    make_skill(developer, name="d")  # no category: not listed
    make_skill(other_developer, name="e", category="secret-stuff")
    response = client_for(developer).get(f"{URL}/categories")
    assert response.status_code == 200
    assert response.json() == [{"category": "language", "count": 2}, {"category": "math", "count": 1}]


def test_search_ranks_name_over_tag_over_description(client_for, developer, other_developer):
    make_skill(developer, name="Summarize", description="Shortens a document.", tags=["text"])
    make_skill(developer, name="Digest", description="Produces a summary.", tags=["summarize"])
    make_skill(developer, name="Translate", description="Can summarize before translating.", tags=["lang"])
    make_skill(developer, name="Calculator", description="Arithmetic.", tags=["math"])
    make_skill(other_developer, name="Summarize", description="not yours")
    response = client_for(developer).get(f"{URL}/search?q=summarize")
    assert response.status_code == 200, response.json()
    results = response.json()["results"]
    assert [r["name"] for r in results] == ["Summarize", "Digest", "Translate"]
    assert results[0]["rank"] > results[1]["rank"] > results[2]["rank"] > 0
    assert response.json()["count"] == 3


def test_search_finds_partial_words_and_honours_filters(client_for, developer):
    make_skill(developer, name="Summarize", category="text")
    make_skill(developer, name="Summary judge", category="eval")
    client = client_for(developer)
    assert {r["name"] for r in client.get(f"{URL}/search?q=summ").json()["results"]} == {
        "Summarize",
        "Summary judge",
    }
    assert [r["name"] for r in client.get(f"{URL}/search?q=summ&category=eval").json()["results"]] == [
        "Summary judge"
    ]
    assert client.get(f"{URL}/search?q=nothing-matches-this").json()["results"] == []


def test_search_needs_q(client_for, developer):
    client = client_for(developer)
    assert_problem(client.get(f"{URL}/search"), 400, "q")
    assert_problem(client.get(f"{URL}/search?q=" + "x" * 201), 400, "q")


def test_put_keeps_slug_unless_given(client_for, developer):
    skill = make_skill(developer, name="Old name")
    client = client_for(developer)
    body = client.put(f"{URL}/{skill.pk}", {"name": "New name"}, format="json").json()
    assert body["slug"] == "old-name"
    body = client.patch(f"{URL}/{skill.pk}", {"slug": "new-name"}, format="json").json()
    assert body["slug"] == "new-name"
    make_skill(developer, name="Other")
    assert_problem(client.patch(f"{URL}/{skill.pk}", {"slug": "other"}, format="json"), 400, "slug")
