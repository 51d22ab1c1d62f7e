"""The two published demo templates `make run` seeds (on the demo agent's model and tools)."""

from django.db import transaction

from .models import Template
from .services import template_create, template_set_published

DEMO_TEMPLATES = [
    {
        "name": "Echo assistant",
        "kind": "agent",
        "category": "Demo",
        "tags": ["demo", "echo"],
        "description": "An agent on the offline echo provider with the built-in calculator tool.",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "my-assistant", "description": "The agent's name."},
                "persona": {
                    "type": "string",
                    "default": "a concise helper",
                    "examples": ["a patient maths tutor"],
                    "description": "Who the assistant is (goes into the system prompt).",
                },
                "max_messages": {"type": "integer", "minimum": 1, "maximum": 500, "default": 20},
            },
        },
        "body": {
            "resources": [
                {
                    "key": "assistant",
                    "kind": "agent",
                    "spec": {
                        "name": "{{ params.name }}",
                        "model": {"$ref": "model", "name": "Echo (demo)"},
                        "system_prompt": "You are {{ params.persona }}.",
                        "tools": [{"$ref": "tool", "name": "calculator"}],
                        "memory": {"max_messages": "{{ params.max_messages }}"},
                    },
                }
            ]
        },
    },
    {
        "name": "Shout workflow",
        "kind": "workflow",
        "category": "Demo",
        "tags": ["demo"],
        "description": "A one-node workflow: upper-cases its text input behind a prefix.",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "shout"},
                "prefix": {"type": "string", "default": ">>", "description": "Put before the text."},
            },
        },
        "body": {
            "resources": [
                {
                    "key": "shout",
                    "kind": "workflow",
                    "spec": {
                        "name": "{{ params.name }}",
                        "definition": {
                            "inputs": {
                                "type": "object",
                                "properties": {"text": {"type": "string", "default": "hello"}},
                            },
                            "nodes": [
                                {
                                    "id": "shout",
                                    "type": "transform",
                                    "config": {"template": "{{ params.prefix }} {{ inputs.text | upper }}"},
                                }
                            ],
                            "outputs": {"text": "{{ steps.shout.output }}"},
                        },
                    },
                }
            ]
        },
    },
]


@transaction.atomic
def demo_templates_seed(*, owner) -> int:
    """Create (and publish) the demo templates `owner` lacks; returns how many it created."""
    created = 0
    for spec in DEMO_TEMPLATES:
        template = Template.objects.filter(owner=owner, name=spec["name"]).first()
        if template is None:
            template = template_create(owner=owner, **spec)
            created += 1
        if not template.published:
            template_set_published(template=template, published=True)
    return created
