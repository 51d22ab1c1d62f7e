"""Node types for the real-worker integration tests. The test process imports this module and
the worker processes load it with `celery worker --include` (see test_integration_engine.py)."""

import json
import time
import urllib.request

from workflows.engine.nodes import Done, NodeHandler, registry

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SideEffectNode(NodeHandler):
    """POSTs to `url` with the step's idempotency key (the side effect), then sleeps `seconds`
    (a worker can be killed there, after the side effect and before the step is recorded)."""

    type = "test_side_effect"
    config_schema = {
        "type": "object",
        "required": ["url"],
        "properties": {"url": {"type": "string"}, "seconds": {"type": "number"}},
    }

    def run(self, ctx):
        request = urllib.request.Request(
            ctx.config["url"],
            data=b"{}",
            method="POST",
            headers={"Idempotency-Key": ctx.idempotency_key, "Content-Type": "application/json"},
        )
        with _NO_PROXY.open(request, timeout=10) as response:
            body = json.loads(response.read())
        time.sleep(ctx.config.get("seconds", 0))
        return Done(body)


registry.register(SideEffectNode())
