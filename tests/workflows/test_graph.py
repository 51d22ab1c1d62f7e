"""Definition validation: every bad graph is refused with the culprit named."""

import pytest
from rest_framework.exceptions import ValidationError

from agentmesh.core.exceptions import flatten_errors
from tests.agents.factories import make_agent, make_deployed_tool, make_model
from tests.workflows.conftest import linear, transform
from workflows.engine.graph import find_cycle, validate_definition

pytestmark = pytest.mark.django_db


def field_of(definition, owner, workflow=None) -> str:
    with pytest.raises(ValidationError) as info:
        validate_definition(definition, owner=owner, workflow=workflow)
    return flatten_errors(info.value.detail)[0]["field"]


A = transform("a", 1)
B = transform("b", 2)
C = transform("c", 3)


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ([], "definition"),
        ({}, "definition.nodes"),
        ({"nodes": []}, "definition.nodes"),
        ({"nodes": [A], "extra": 1}, "definition.extra"),
        (
            {"nodes": [{"id": "1bad", "type": "transform", "config": {"template": 1}}]},
            "definition.nodes[0].id",
        ),
        ({"nodes": [A, {**B, "id": "a"}]}, "definition.nodes[1].id"),
        ({"nodes": [{"id": "a", "type": "teleport"}]}, "definition.nodes[0].type"),
        ({"nodes": [{"id": "a", "type": "transform", "config": {}}]}, "definition.nodes[0].config"),
        ({"nodes": [transform("a", "{{ inputs.x ")]}, "definition.nodes[0].config.template"),
        (
            {"nodes": [{"id": "a", "type": "transform", "config": {"jmespath": "a[?"}}]},
            "definition.nodes[0].config.jmespath",
        ),
        ({"nodes": [A, B], "edges": [{"source": "a", "target": "zz"}]}, "definition.edges[0].target"),
        ({"nodes": [A, B], "edges": [{"source": "zz", "target": "b"}]}, "definition.edges[0].source"),
        ({"nodes": [A], "edges": [{"source": "a", "target": "a"}]}, "definition.edges[0].target"),
        ({"nodes": [A, B, C], "edges": [{"source": "a", "target": "b"}]}, "definition.nodes[2]"),
        (
            {
                "nodes": [A, B, C],
                "edges": [
                    {"source": "a", "target": "b"},
                    {"source": "b", "target": "c"},
                    {"source": "c", "target": "b"},
                ],
            },
            "definition.nodes[1]",
        ),
        (
            {"nodes": [A, B], "edges": [{"source": "a", "target": "b"}], "start": "b"},
            "definition.edges[0].target",
        ),
        ({"nodes": [A], "start": "nope"}, "definition.start"),
        (
            {"nodes": [A, B], "edges": [{"source": "a", "target": "b", "condition": "{{ ) }}"}]},
            "definition.edges[0].condition",
        ),
        (
            {"nodes": [A, B], "edges": [{"source": "a", "target": "b", "branch": "yes"}]},
            "definition.edges[0].branch",
        ),
        (
            {
                "nodes": [
                    {
                        "id": "c",
                        "type": "condition",
                        "config": {"branches": [{"label": "yes", "when": True}]},
                    },
                    B,
                ],
                "edges": [{"source": "c", "target": "b"}],
            },
            "definition.edges[0].branch",
        ),
        (
            {
                "nodes": [
                    {
                        "id": "c",
                        "type": "condition",
                        "config": {"branches": [{"label": "yes", "when": "{{ 1 +"}]},
                    }
                ],
            },
            "definition.nodes[0].config.branches[0].when",
        ),
        (
            {"nodes": [{**A, "on_error": "branch"}, B], "edges": [{"source": "a", "target": "b"}]},
            "definition.nodes[0].on_error",
        ),
        (
            {"nodes": [A, B], "edges": [{"source": "a", "target": "b", "branch": "error"}]},
            "definition.edges[0].branch",
        ),
        ({"nodes": [{**A, "retry": {"max_attempts": 99}}]}, "definition.nodes[0].retry.max_attempts"),
        ({"nodes": [{**A, "retry": {"tries": 2}}]}, "definition.nodes[0].retry.tries"),
        ({"nodes": [{**A, "timeout_seconds": 10**7}]}, "definition.nodes[0].timeout_seconds"),
        ({"nodes": [{**A, "on_error": "explode"}]}, "definition.nodes[0].on_error"),
        ({"nodes": [A], "timeout_seconds": 10**9}, "definition.timeout_seconds"),
        ({"nodes": [A], "inputs": {"type": "nonsense"}}, "definition.inputs"),
        ({"nodes": [A], "outputs": {"r": "{{ steps. }}"}}, "definition.outputs.r"),
        (
            {"nodes": [{"id": "m", "type": "map", "config": {"items": [1], "node": {"type": "approval"}}}]},
            "definition.nodes[0].config.node.type",
        ),
        (
            {
                "nodes": [
                    {
                        "id": "m",
                        "type": "map",
                        "config": {"items": [1], "node": {"type": "transform", "config": {}}},
                    }
                ]
            },
            "definition.nodes[0].config.node.config",
        ),
        (
            {
                "nodes": [
                    {
                        "id": "l",
                        "type": "loop",
                        "config": {
                            "until": True,
                            "max_iterations": 10**6,
                            "node": {"type": "transform", "config": {"template": 1}},
                        },
                    }
                ]
            },
            "definition.nodes[0].config.max_iterations",
        ),
        (
            {"nodes": [{"id": "d", "type": "delay", "config": {"seconds": -1}}]},
            "definition.nodes[0].config.seconds",
        ),
        (
            {"nodes": [{"id": "t", "type": "tool", "config": {"tool_id": "not-a-uuid"}}]},
            "definition.nodes[0].config.tool_id",
        ),
        (
            {"nodes": [{"id": "g", "type": "agent", "config": {"input": "hi"}}]},
            "definition.nodes[0].config.agent_id",
        ),
        (
            {
                "nodes": [
                    {
                        "id": "w",
                        "type": "workflow",
                        "config": {"workflow_id": "00000000-0000-0000-0000-000000000000"},
                    }
                ]
            },
            "definition.nodes[0].config.workflow_id",
        ),
    ],
)
def test_bad_definitions_name_the_culprit(definition, field, developer):
    assert field_of(definition, developer) == field


def test_size_caps_come_from_settings(developer, settings):
    settings.WORKFLOWS_MAX_NODES = 2
    assert field_of(linear(A, B, C), developer) == "definition.nodes"
    settings.WORKFLOWS_MAX_NODES = 500
    settings.WORKFLOWS_MAX_DEFINITION_BYTES = 100
    assert field_of(linear(transform("a", "x" * 200)), developer) == "definition"


def test_references_must_be_usable_by_the_owner(developer, other_developer):
    agent = make_agent(other_developer)
    tool = make_deployed_tool(other_developer)
    model = make_model(other_developer)
    bad = [
        ({"id": "n", "type": "agent", "config": {"agent_id": str(agent.pk), "input": "hi"}}, "agent_id"),
        ({"id": "n", "type": "tool", "config": {"tool_id": str(tool.pk)}}, "tool_id"),
        ({"id": "n", "type": "llm", "config": {"model_id": str(model.pk), "prompt": "hi"}}, "model_id"),
    ]
    for node, name in bad:
        assert field_of({"nodes": [node]}, developer) == f"definition.nodes[0].config.{name}"
        validate_definition({"nodes": [node]}, owner=other_developer)  # the owner may


MAP_BODY = {"type": "transform", "config": {"template": 1}}
MISSING = "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"items": [1]}, "node"),
        ({"items": [1], "node": MAP_BODY, "workflow": {"workflow_id": MISSING}}, "node"),
        ({"items": [1], "workflow": {"workflow_id": MISSING}}, "workflow.workflow_id"),
        ({"items": [1], "workflow": {"workflow_id": "{{ item }}"}}, "workflow.workflow_id"),
        ({"items": [1], "workflow": {"workflow_id": MISSING, "extra": 1}}, "workflow.extra"),
        (
            {
                "items": [1],
                "node": {"type": "map", "config": {"items": [1], "workflow": {"workflow_id": MISSING}}},
            },
            "node",
        ),
    ],
)
def test_a_map_runs_either_a_body_or_a_usable_sub_workflow(config, field, developer):
    node = {"id": "m", "type": "map", "config": config}
    assert field_of({"nodes": [node]}, developer) == f"definition.nodes[0].config.{field}"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"until": True}, "node"),
        ({"until": True, "node": MAP_BODY, "workflow": {"workflow_id": MISSING}}, "node"),
        ({"until": True, "workflow": {"workflow_id": MISSING}}, "workflow.workflow_id"),
        ({"until": "{{ loop. }}", "workflow": {"workflow_id": MISSING}}, "until"),
    ],
)
def test_a_loop_repeats_either_a_body_or_a_usable_sub_workflow(config, field, developer):
    node = {"id": "l", "type": "loop", "config": config}
    assert field_of({"nodes": [node]}, developer) == f"definition.nodes[0].config.{field}"


def test_a_map_over_a_sub_workflow_checks_it_like_a_workflow_node(make_workflow, developer, other_developer):
    theirs = make_workflow(linear(A), owner=other_developer, name="theirs")
    mine = make_workflow(linear(A), name="mine")

    def map_over(workflow_id, **extra) -> dict:
        return {
            "nodes": [
                {
                    "id": "m",
                    "type": "map",
                    "config": {"items": [1], "workflow": {"workflow_id": workflow_id, **extra}},
                }
            ]
        }

    assert field_of(map_over(str(theirs.pk)), developer) == "definition.nodes[0].config.workflow.workflow_id"
    assert (
        field_of(map_over(str(mine.pk)), developer, mine) == "definition.nodes[0].config.workflow.workflow_id"
    )
    assert (
        field_of(map_over(str(mine.pk), version=9), developer)
        == "definition.nodes[0].config.workflow.version"
    )
    bad_template = map_over(str(mine.pk), inputs={"x": "{{ item. }}"})
    assert field_of(bad_template, developer) == "definition.nodes[0].config.workflow.inputs"
    good = map_over(str(mine.pk), inputs={"x": "{{ item }}"}, version=1)
    assert validate_definition(good, owner=developer) is good


def test_a_workflow_may_not_call_itself(make_workflow, developer):
    workflow = make_workflow(linear(A))
    node = {"id": "w", "type": "workflow", "config": {"workflow_id": str(workflow.pk)}}
    assert field_of({"nodes": [node]}, developer, workflow) == "definition.nodes[0].config.workflow_id"


def test_valid_graph_with_every_feature_passes(developer):
    definition = {
        "nodes": [
            A,
            {
                "id": "c",
                "type": "condition",
                "config": {"branches": [{"label": "big", "when": "{{ steps.a.output > 1 }}"}]},
            },
            {**B, "on_error": "branch", "retry": {"max_attempts": 3, "backoff": 0.5, "max_delay": 4}},
            {"id": "fix", "type": "output", "config": {"value": "{{ steps.b.error }}"}},
            {**transform("end", 3), "timeout_seconds": 5},
        ],
        "edges": [
            {"source": "a", "target": "c"},
            {"source": "c", "target": "b", "branch": "big"},
            {"source": "c", "target": "fix", "branch": "else"},
            {"source": "b", "target": "fix", "branch": "error"},
            {"source": "b", "target": "end", "condition": "{{ steps.b.output == 2 }}"},
        ],
        "inputs": {"type": "object", "properties": {"x": {"type": "integer"}}},
        "outputs": {"r": "{{ steps.fix.output }}"},
    }
    assert validate_definition(definition, owner=developer) is definition


def test_find_cycle_reports_the_path():
    nodes = [{"id": n} for n in "abcd"]
    edges = [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}, {"source": "c", "target": "a"}]
    assert find_cycle(nodes, edges) == ["a", "b", "c", "a"]
    assert find_cycle(nodes, edges[:2]) is None
