"""LLM providers behind one interface (see base.py). Entry points: `chat()` and `chat_stream()`
in agents.llm.client, which add timeouts, retries, the circuit breaker, fallback models,
usage and cost, and a `chat` span to every call."""
