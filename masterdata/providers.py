"""What each LLM provider needs in a model config, and the shape of default parameters."""

from dataclasses import dataclass

from .models import Provider


@dataclass(frozen=True)
class ProviderSpec:
    id: str
    label: str
    description: str
    required_fields: tuple[str, ...]
    optional_fields: tuple[str, ...]
    default_base_url: str = ""


_COMMON_OPTIONAL = (
    "context_window",
    "default_parameters",
    "input_price_per_million",
    "output_price_per_million",
)

PROVIDERS: dict[str, ProviderSpec] = {
    spec.id: spec
    for spec in (
        ProviderSpec(
            Provider.OPENAI,
            Provider.OPENAI.label,
            "OpenAI's hosted API.",
            ("model_name", "api_key_secret"),
            ("base_url", *_COMMON_OPTIONAL),
            "https://api.openai.com/v1",
        ),
        ProviderSpec(
            Provider.OPENAI_COMPATIBLE,
            Provider.OPENAI_COMPATIBLE.label,
            "Any server speaking the Chat Completions API (vLLM, llama.cpp, LM Studio, LiteLLM …).",
            ("model_name", "base_url"),
            ("api_key_secret", *_COMMON_OPTIONAL),
        ),
        ProviderSpec(
            Provider.AZURE_OPENAI,
            Provider.AZURE_OPENAI.label,
            "An Azure OpenAI resource; model_name is the deployment name.",
            ("model_name", "base_url", "api_key_secret", "api_version"),
            _COMMON_OPTIONAL,
        ),
        ProviderSpec(
            Provider.ANTHROPIC,
            Provider.ANTHROPIC.label,
            "Anthropic's Messages API.",
            ("model_name", "api_key_secret"),
            ("base_url", *_COMMON_OPTIONAL),
            "https://api.anthropic.com",
        ),
        ProviderSpec(
            Provider.OLLAMA,
            Provider.OLLAMA.label,
            "An Ollama server through its OpenAI-compatible endpoint, e.g. http://host:11434/v1.",
            ("model_name", "base_url"),
            ("api_key_secret", *_COMMON_OPTIONAL),
        ),
        ProviderSpec(
            Provider.ECHO,
            Provider.ECHO.label,
            "A built-in deterministic provider that echoes its input; for demos and tests, not a real model.",
            (),
            ("model_name", *_COMMON_OPTIONAL),
        ),
    )
}

DEFAULT_PARAMETERS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "stop": {"type": "array", "items": {"type": "string", "maxLength": 100}, "maxItems": 4},
        "seed": {"type": "integer"},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
    },
}
