"""The template sandbox bounds every render by wall time and by the size of every value it
computes, before the value is built where that can be foreseen."""

import pytest

from agentmesh.core import sandbox
from tests.api_base import assert_problem

NESTED_LOOPS = "{% set s = 'x' * 2500 %}{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}"


def refused(source: str, variables=None) -> sandbox.TemplateProblem:
    with pytest.raises(sandbox.TemplateProblem) as caught:
        sandbox.render(source, variables or {})
    return caught.value


def test_nested_loops_stop_at_the_time_limit():
    # Unbounded, this render takes minutes (15.6 billion iterations); the deadline stops it.
    problem = refused(NESTED_LOOPS)
    assert isinstance(problem, sandbox.RenderTimeout)
    assert "time limit of 1 s" in str(problem) and "SANDBOX_RENDER_TIMEOUT_SECONDS" in str(problem)


def test_the_time_limit_is_a_setting(settings):
    settings.SANDBOX_RENDER_TIMEOUT_SECONDS = 0.05
    problem = refused(
        "{% set s = 'x' * 2500 %}{% for a in s %}{% for b in s %}{{ a ~ b }}{% endfor %}{% endfor %}"
    )
    assert isinstance(problem, sandbox.RenderTimeout) and "0.05 s" in str(problem)


@pytest.mark.parametrize(
    "source",
    [
        "{{ '%0*d' % (2000000, 1) }}",
        "{{ '%2000000d' % 1 }}",
        "{{ '%.2000000f' % 1 }}",
        "{{ 'x'.ljust(2000000) }}",
        "{{ 'x'.rjust(2000000) }}",
        "{{ 'x'.center(2000000) }}",
        "{{ '1'.zfill(2000000) }}",
        "{{ '{:>2000000}'.format(1) }}",
        "{{ '{:>{}}'.format(1, 2000000) }}",
        "{{ '{:{}}'.format(1, '>2000000') }}",
        "{{ '{a:>2000000}'.format_map({'a': 1}) }}",
        "{{ 'x'|center(2000000) }}",
        "{{ 'a\nb'|indent(2000000) }}",
        "{{ '%0*d'|format(2000000, 1) }}",
        "{{ ('ab' * 1000)|wordwrap(1, wrapstring='-' * 1000) }}",
        "{{ ('x' * 1000).replace('x', 'y' * 1000) }}",
        "{{ ('x' * 1000)|replace('x', 'y' * 1000) }}",
        "{{ ('\t' * 1000).expandtabs(1000) }}",
        "{{ ('x' * 1000).translate({120: 'y' * 1000}) }}",
        "{{ ('x' * 1000).join(['y' * 1000] * 400) }}",
        "{{ (['y' * 1000] * 1000)|join }}",
        "{{ ['y' * 300000, 'z' * 300000]|sum(start='') }}",
        "{{ [1]|batch(2000000, 0)|list }}",
        "{{ [1]|slice(2000000)|list }}",
        "{{ lipsum(100000) }}",
        "{{ [1, 2]|tojson(indent=2000000) }}",
        # growth by repetition, in loops
        "{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
        "{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) }}{% endfor %}",
        "{% set l = [] %}{% for i in range(100) %}{{ l.append('x' * 100000) }}{% endfor %}{{ l|join }}",
        "{% set ns = namespace(n=9 ** 99) %}{% for i in range(20) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
        # shared references multiply into text only when they become text: measured before
        "{% set a = ['x' * 400000] %}{% set b = [a, a, a, a] %}{{ b }}",
        "{% set a = ['x' * 400000] %}{% set b = [a, a, a, a] %}{{ b|tojson }}",
        "{% set a = ['x' * 400000] %}{% set b = [a, a, a, a] %}{{ 'x' ~ b }}",
        "{% set a = ['x' * 400000] %}{% set b = [a, a, a, a] %}{{ '%s' % (b,) }}",
        "{% set a = ['x' * 400000] %}{{ ([a] * 1000)|length }}",
    ],
)
def test_values_past_the_size_limit_are_refused(source):
    problem = refused(source)
    assert isinstance(problem, sandbox.ValueTooLarge), problem
    assert "size limit" in str(problem)


def test_the_big_strings_are_never_built():
    """Widths are checked before formatting: nothing of that size is ever allocated."""
    import tracemalloc

    tracemalloc.start()
    try:
        for source in (
            "{{ '%0*d' % (50000000, 1) }}",
            "{{ 'x'.ljust(50000000) }}",
            "{{ '{:>50000000}'.format(1) }}",
        ):
            refused(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_normal_templates_still_render():
    source = (
        "Hi {{ user.name|title }}! {% for t in tools %}{{ loop.index }}. {{ t.name }} ({{ '%.1f' % t.score }})"
        "{% if not loop.last %}, {% endif %}{% endfor %} {{ '{:>5}'.format(n) }} {{ ('ab' * 3)|upper }} "
        "{{ items|map(attribute='a')|join(',') }} {{ data|tojson }} {{ 'a' ~ 1 ~ [1, 2] }}"
    )
    variables = {
        "user": {"name": "ann"},
        "tools": [{"name": "calc", "score": 0.93}, {"name": "web", "score": 0.5}],
        "n": 42,
        "items": [{"a": 1}, {"a": 2}],
        "data": {"k": [1, 2]},
    }
    assert sandbox.render(source, variables) == (
        'Hi Ann! 1. calc (0.9), 2. web (0.5)    42 ABABAB 1,2 {"k": [1, 2]} a1[1, 2]'
    )


# --- through the API and the engine ------------------------------------------------------------
@pytest.mark.django_db
def test_prompt_render_is_a_400_naming_the_limit(client_for, developer):
    from masterdata.services import prompt_create

    client = client_for(developer)
    slow = prompt_create(owner=developer, actor=developer, name="slow", template=NESTED_LOOPS, variables=[])
    body = assert_problem(
        client.post(f"/api/v1/master-data/prompts/{slow.pk}/render", {}, format="json"), 400, "template"
    )
    assert "time limit" in body["detail"]
    big = prompt_create(
        owner=developer, actor=developer, name="big", template="{{ '%0*d' % (2000000, 1) }}", variables=[]
    )
    body = assert_problem(
        client.post(f"/api/v1/master-data/prompts/{big.pk}/render", {}, format="json"), 400, "template"
    )
    assert "size limit" in body["detail"]


@pytest.mark.django_db
def test_a_workflow_transform_step_fails_naming_the_limit(client_for, developer, settings):
    from workflows import services

    settings.SANDBOX_RENDER_TIMEOUT_SECONDS = 0.2
    definition = {
        "nodes": [
            {"id": "slow", "type": "transform", "config": {"template": NESTED_LOOPS}},
        ]
    }
    workflow = services.workflow_create(owner=developer, name="slow", definition=definition)
    response = client_for(developer).post(
        f"/api/v1/workflows/{workflow.pk}/execute", {"mode": "sync"}, format="json"
    )
    assert response.status_code in (200, 202), response.json()
    body = response.json()
    assert body["status"] == "failed" and "time limit" in body["error"]
    step = body["steps"][0]
    assert step["status"] == "failed" and "time limit" in step["error"]

    definition["nodes"][0]["config"]["template"] = "{{ 'x'.ljust(2000000) }}"
    workflow = services.workflow_update(workflow=workflow, definition=definition)
    body = (
        client_for(developer)
        .post(f"/api/v1/workflows/{workflow.pk}/execute", {"mode": "sync"}, format="json")
        .json()
    )
    assert body["status"] == "failed" and "size limit" in body["steps"][0]["error"]
