import copy

import pytest

from tests.agents.factories import make_model


def agent_bundle(model_name: str = "echo-shared", *, max_tokens="{{ params.max_tokens }}") -> dict:
    """A bundle: a built-in tool, an agent using it, a workflow calling the agent."""
    return {
        "resources": [
            {
                "key": "calc",
                "kind": "tool",
                "spec": {
                    "name": "{{ params.prefix }}_calc",
                    "type": "builtin",
                    "config": {"function": "calculator"},
                },
            },
            {
                "key": "helper",
                "kind": "agent",
                "spec": {
                    "name": "{{ params.prefix }} helper",
                    "model": {"$ref": "model", "name": model_name},
                    "system_prompt": "You help with {{ params.topic }}.",
                    "tools": [{"$ref": "local", "key": "calc"}],
                    "parameters": {"max_tokens": max_tokens},
                },
            },
            {
                "key": "flow",
                "kind": "workflow",
                "spec": {
                    "name": "{{ params.prefix }} flow",
                    "definition": {
                        "nodes": [
                            {
                                "id": "ask",
                                "type": "agent",
                                "config": {
                                    "agent_id": {"$ref": "local", "key": "helper"},
                                    "input": "{{ inputs.q }}",
                                },
                            }
                        ],
                        "edges": [],
                    },
                },
            },
        ]
    }


BUNDLE_PARAMETERS = {
    "type": "object",
    "properties": {
        "prefix": {
            "type": "string",
            "pattern": "^[a-z_]+$",
            "default": "demo",
            "description": "Name prefix.",
        },
        "topic": {"type": "string", "examples": ["maths"]},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096, "default": 256},
    },
    "required": ["topic"],
}


@pytest.fixture
def shared_model(developer):
    return make_model(developer, name="echo-shared")


@pytest.fixture
def bundle_payload(shared_model):
    return {
        "name": "Calc bundle",
        "kind": "bundle",
        "category": "demo",
        "tags": ["maths"],
        "body": agent_bundle(),
        "parameters": copy.deepcopy(BUNDLE_PARAMETERS),
    }
