"""Node types for engine tests, added through the public node registry (as an app would)."""

import time

from workflows.engine import expressions
from workflows.engine.nodes import Done, NodeHandler, StepError, registry

CALLS: dict[str, int] = {}


class FlakyNode(NodeHandler):
    """Fails its first `fail_times` calls (retryable), then answers its attempt number."""

    type = "test_flaky"
    inline = True
    config_schema = {"type": "object", "properties": {"fail_times": {"type": "integer"}}}

    def run(self, ctx):
        CALLS[ctx.node["id"]] = CALLS.get(ctx.node["id"], 0) + 1
        if CALLS[ctx.node["id"]] <= ctx.config.get("fail_times", 0):
            raise StepError(f"flaky failure on attempt {ctx.step.attempt}")
        return Done({"attempt": ctx.step.attempt}, input_tokens=3, output_tokens=4)


class EchoNode(NodeHandler):
    """Answers its rendered `value`: a no-op step like `transform`, but run by a worker."""

    type = "test_echo"
    config_schema = {"type": "object", "properties": {"value": {}}}

    def step_refs(self, config):
        return expressions.step_refs(config)

    def run(self, ctx):
        return Done(ctx.render(ctx.config.get("value")))


class SleepNode(NodeHandler):
    """Sleeps `seconds`, then answers."""

    type = "test_sleep"
    config_schema = {"type": "object", "properties": {"seconds": {"type": "number"}}}

    def run(self, ctx):
        time.sleep(ctx.config.get("seconds", 0))
        return Done("slept")


class CrashNode(NodeHandler):
    """A handler with a bug."""

    type = "test_crash"

    def run(self, ctx):
        raise KeyError("boom")


for handler in (FlakyNode(), EchoNode(), SleepNode(), CrashNode()):
    registry.register(handler)
