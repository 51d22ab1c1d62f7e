"""OpenAPI 3.x import: one `http` tool per operation, run against a real pet API on 127.0.0.1."""

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from agentmesh.core.exceptions import ServiceValidationError
from tools import openapi_import
from tools.models import Tool
from tools.openapi_import import MAX_DOCUMENT_BYTES, tools_import_openapi
from tools.services import tool_create, tool_execute

PETS = {"1": {"id": 1, "name": "Rex", "tag": "dog"}, "7": {"id": 7, "name": "Tom", "tag": "cat"}}


def petstore(server_url: str | None = None) -> dict:
    """A small petstore. Without `server_url` the server is relative ("/api")."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "Petstore", "version": "1.0.0"},
        "servers": [{"url": server_url or "/api"}],
        "paths": {
            "/pets": {
                "get": {
                    "operationId": "listPets",
                    "summary": "List all pets",
                    "tags": ["pets", "Read Only", "READ"],
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "description": "How many pets to return",
                            "schema": {"type": "integer", "maximum": 100, "exclusiveMaximum": True},
                        },
                        {
                            "name": "X-Request-ID",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                        {"name": "session", "in": "cookie", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "A list of pets"}},
                },
                "post": {
                    "operationId": "createPet",
                    "summary": "Create a pet",
                    "description": "Adds a pet to the store.",
                    "tags": ["pets"],
                    "requestBody": {
                        "required": True,
                        "description": "The pet to add",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}},
                    },
                    "responses": {"201": {"description": "Created"}},
                },
            },
            "/pets/{petId}": {
                "parameters": [{"$ref": "#/components/parameters/PetId"}],
                "get": {
                    "operationId": "showPetById",
                    "summary": "Info for a specific pet",
                    "tags": ["pets"],
                    "responses": {"200": {"description": "The pet"}},
                },
                "delete": {"summary": "Delete a pet", "responses": {"204": {"description": "Deleted"}}},
                "options": {"responses": {"200": {"description": "CORS"}}},
            },
            "/pets/{petId}/photos/{photo.name}": {
                "get": {
                    "operationId": "get pet/by id!",
                    "parameters": [
                        {"$ref": "#/components/parameters/PetId"},
                        {"name": "photo.name", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "filter[kind]", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "A photo"}},
                }
            },
        },
        "components": {
            "parameters": {
                "PetId": {
                    "name": "petId",
                    "in": "path",
                    "required": True,
                    "description": "The id of the pet",
                    "schema": {"type": "string"},
                }
            },
            "schemas": {
                "NewPet": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "tag": {"type": "string", "nullable": True},
                        "parent": {"$ref": "#/components/schemas/Pet"},
                    },
                },
                # Pet -> NewPet -> parent -> Pet: a cycle.
                "Pet": {
                    "allOf": [
                        {"$ref": "#/components/schemas/NewPet"},
                        {"type": "object", "properties": {"id": {"type": "integer"}}},
                    ]
                },
            },
        },
    }


# --- a real HTTP server: serves the documents and the pet API -----------------------------------
class PetServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PetHandler)
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class PetHandler(BaseHTTPRequestHandler):
    server: PetServer

    def log_message(self, format, *args) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        self._send(status, json.dumps(value).encode())

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        record = {
            "method": method,
            "path": parts.path,
            "query": parse_qs(parts.query),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": json.loads(raw) if raw else None,
        }
        with self.server.lock:
            self.server.requests.append(record)
        segments = parts.path.strip("/").split("/")
        if parts.path == "/openapi.json":
            return self._json(200, petstore())
        if parts.path == "/openapi.yaml":
            return self._send(200, yaml.safe_dump(petstore()).encode(), "application/yaml")
        if parts.path == "/big.json":
            return self._send(200, b" " * (MAX_DOCUMENT_BYTES + 10))
        if segments[:2] == ["api", "pets"]:
            if len(segments) == 2 and method == "GET":
                limit = int(record["query"].get("limit", ["10"])[0])
                return self._json(200, list(PETS.values())[:limit])
            if len(segments) == 2 and method == "POST":
                return self._json(201, {"id": 3, **record["body"]})
            if len(segments) == 3 and segments[2] in PETS:
                if method == "DELETE":
                    return self._send(204)
                return self._json(200, PETS[segments[2]])
            if len(segments) == 5 and segments[3] == "photos":
                return self._json(200, {"pet": segments[2], "photo": segments[4]})
        return self._json(404, {"error": "not found"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


@pytest.fixture(scope="module")
def pet_server():
    server = PetServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def api(pet_server):
    pet_server.requests.clear()
    return pet_server


def by_name(tools) -> dict[str, Tool]:
    return {tool.name: tool for tool in tools}


def field_of(exc: pytest.ExceptionInfo) -> str:
    (field,) = exc.value.detail.keys()
    return field


# --- import ---------------------------------------------------------------------------------------
def test_import_from_dict_maps_every_operation(developer, api):
    tools = tools_import_openapi(
        owner=developer, document=petstore(f"{api.url}/api/"), category="pets-api", name_prefix=""
    )
    assert [t.name for t in tools] == [
        "listPets",
        "createPet",
        "showPetById",
        "delete_pets_petId",
        "get_pet_by_id",
    ]
    assert Tool.objects.filter(owner=developer).count() == 5  # OPTIONS is not imported
    tools = by_name(tools)
    assert all(t.type == "http" and t.category == "pets-api" for t in tools.values())

    list_pets = tools["listPets"]
    assert list_pets.description == "List all pets"
    assert list_pets.tags == ["pets", "read"]  # "read only" is not a valid tag
    assert list_pets.parameters_schema == {
        "type": "object",
        "properties": {
            # 3.0's boolean exclusiveMaximum became the JSON Schema number form
            "limit": {"type": "integer", "exclusiveMaximum": 100, "description": "How many pets to return"},
            "X-Request-ID": {"type": "string"},
        },
        "required": ["X-Request-ID"],
        "additionalProperties": False,
    }
    assert list_pets.config == {
        "method": "GET",
        "url": f"{api.url}/api/pets",
        "arguments_in": {"limit": "query", "X-Request-ID": "header"},
    }

    create = tools["createPet"]
    assert create.description == "Create a pet\n\nAdds a pet to the store."
    body = create.parameters_schema["properties"]["body"]
    assert body == {
        "type": "object",
        "required": ["name"],
        "description": "The pet to add",
        "properties": {
            "name": {"type": "string"},
            "tag": {"type": ["string", "null"]},
            # Pet's allOf refers back to NewPet, which is already being inlined: a cycle becomes {}.
            "parent": {"allOf": [{}, {"type": "object", "properties": {"id": {"type": "integer"}}}]},
        },
    }
    assert create.parameters_schema["required"] == ["body"]
    assert create.config == {
        "method": "POST",
        "url": f"{api.url}/api/pets",
        "arguments_in": {"body": "body_root"},
    }

    show = tools["showPetById"]
    assert show.parameters_schema["properties"] == {
        "petId": {"type": "string", "description": "The id of the pet"}
    }
    assert show.parameters_schema["required"] == ["petId"]
    assert show.config["url"] == f"{api.url}/api/pets/{{petId}}"
    assert show.config["arguments_in"] == {"petId": "path"}

    delete = tools["delete_pets_petId"]
    assert delete.description == "Delete a pet"
    assert delete.tags == []
    assert delete.config["method"] == "DELETE"
    assert delete.parameters_schema["required"] == ["petId"]  # inherited from the path item

    weird = tools["get_pet_by_id"]
    # "photo.name" cannot be a {placeholder}: the argument and the placeholder are renamed together;
    # "filter[kind]" is renamed and mapped back to its real query name.
    assert weird.config["url"] == f"{api.url}/api/pets/{{petId}}/photos/{{photo_name}}"
    assert weird.config["arguments_in"] == {
        "petId": "path",
        "photo_name": "path",
        "filter_kind": {"in": "query", "name": "filter[kind]"},
    }
    assert weird.parameters_schema["required"] == ["petId", "photo_name"]
    assert set(weird.parameters_schema["properties"]) == {"petId", "photo_name", "filter_kind"}


def test_import_from_yaml_text_resolves_server_variables(developer, api):
    doc = petstore("{scheme}://127.0.0.1:{port}/{base}")
    doc["servers"][0]["variables"] = {
        "scheme": {"default": "http", "enum": ["http", "https"]},
        "port": {"default": str(api.server_address[1])},
        "base": {"default": "api"},
    }
    text = yaml.safe_dump(doc)
    tools = by_name(tools_import_openapi(owner=developer, document=text, name_prefix="shop_"))
    assert set(tools) == {
        "shop_listPets",
        "shop_createPet",
        "shop_showPetById",
        "shop_delete_pets_petId",
        "shop_get_pet_by_id",
    }
    assert tools["shop_showPetById"].config["url"] == f"{api.url}/api/pets/{{petId}}"
    # bytes work too, and names already taken get a suffix
    again = tools_import_openapi(owner=developer, document=text.encode(), operations=["listPets"])
    assert [t.name for t in again] == ["listPets"]
    third = tools_import_openapi(owner=developer, document=text, operations=["listPets"])
    assert [t.name for t in third] == ["listPets-2"]


def test_import_from_url_resolves_a_relative_server(developer, api):
    for path in ("/openapi.json", "/openapi.yaml"):
        tools = by_name(
            tools_import_openapi(owner=developer, url=f"{api.url}{path}", name_prefix=path[9:13] + "_")
        )
        prefix = path[9:13]
        assert tools[f"{prefix}_listPets"].config["url"] == f"{api.url}/api/pets"
        assert tools[f"{prefix}_createPet"].parameters_schema["properties"]["body"]["required"] == ["name"]
    assert [r["path"] for r in api.requests] == ["/openapi.json", "/openapi.yaml"]


def test_base_url_and_auth_override(developer, api):
    auth = {"type": "none"}
    tools = tools_import_openapi(
        owner=developer,
        document=petstore("https://pets.example.com/v1"),
        base_url=f"{api.url}/api/",
        auth=auth,
        operations=["showPetById", "DELETE /pets/{petId}"],
    )
    assert [t.name for t in tools] == ["showPetById", "delete_pets_petId"]
    assert all(t.config["url"] == f"{api.url}/api/pets/{{petId}}" for t in tools)
    assert all(t.config["auth"] == auth for t in tools)


def test_names_are_sanitised_trimmed_and_deduplicated(developer, api):
    long_id = "x" * 80
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": f"{api.url}/api"}],
        "paths": {
            "/a": {"get": {"operationId": long_id}, "post": {"operationId": long_id}},
            "/b": {"get": {"operationId": "ünïcode op"}, "put": {"operationId": "!!!"}},
        },
    }
    tool_create(owner=developer, name="x" * 64, type="http", config={"url": f"{api.url}/x"})
    names = [t.name for t in tools_import_openapi(owner=developer, document=doc)]
    assert names == ["x" * 62 + "-2", "x" * 62 + "-3", "n_code_op", "put_b"]
    assert all(len(n) <= 64 for n in names)


# --- executing imported tools against the real API ------------------------------------------------
def test_imported_tools_execute_against_the_api(developer, api):
    tools = by_name(tools_import_openapi(owner=developer, url=f"{api.url}/openapi.json"))

    run = tool_execute(tool=tools["showPetById"], arguments={"petId": "7"}, actor=developer)
    assert run.status == "succeeded", run.error
    assert run.result == PETS["7"]

    run = tool_execute(
        tool=tools["listPets"], arguments={"limit": 1, "X-Request-ID": "req-1"}, actor=developer
    )
    assert run.status == "succeeded", run.error
    assert run.result == [PETS["1"]]
    request = api.requests[-1]
    assert request["query"] == {"limit": ["1"]}
    assert request["headers"]["x-request-id"] == "req-1"

    pet = {"name": "Felix", "tag": None}
    run = tool_execute(tool=tools["createPet"], arguments={"body": pet}, actor=developer)
    assert run.status == "succeeded", run.error
    assert run.result == {"id": 3, **pet}
    request = api.requests[-1]
    assert request["method"] == "POST" and request["path"] == "/api/pets"
    assert request["headers"]["content-type"] == "application/json"
    assert request["body"] == pet

    run = tool_execute(
        tool=tools["get_pet_by_id"],
        arguments={"petId": "1", "photo_name": "a b.png", "filter_kind": "jpeg"},
        actor=developer,
    )
    assert run.status == "succeeded", run.error
    assert api.requests[-1]["path"] == "/api/pets/1/photos/a%20b.png"
    assert api.requests[-1]["query"] == {"filter[kind]": ["jpeg"]}

    run = tool_execute(tool=tools["delete_pets_petId"], arguments={"petId": "1"}, actor=developer)
    assert run.status == "succeeded", run.error
    assert api.requests[-1]["method"] == "DELETE"


# --- errors ---------------------------------------------------------------------------------------
def test_swagger_2_is_refused(developer):
    swagger = {"swagger": "2.0", "info": {"title": "t", "version": "1"}, "paths": {}}
    with pytest.raises(ServiceValidationError, match=r"Swagger 2\.0") as exc:
        tools_import_openapi(owner=developer, document=swagger, base_url="http://127.0.0.1:1")
    assert field_of(exc) == "document"


@pytest.mark.parametrize(
    "document",
    [
        {"openapi": "3.0.0", "info": {}},  # no paths
        {"openapi": 3.0, "paths": {}},
        ["not", "an", "object"],
        "openapi: 3.0.0\npaths: [unclosed",  # invalid YAML
        "{'openapi': ",  # invalid JSON / YAML
        "   ",
        b"\xff\xfe\x00bad",
        "[" * 5000 + "]" * 5000,  # nested too deeply
    ],
)
def test_invalid_documents_name_the_document(developer, document):
    with pytest.raises(ServiceValidationError) as exc:
        tools_import_openapi(owner=developer, document=document, base_url="http://127.0.0.1:1")
    assert field_of(exc) == "document"


def test_too_large_documents_are_refused(developer, api):
    big = "openapi: 3.0.0\npaths: {}\n" + "#" * MAX_DOCUMENT_BYTES
    with pytest.raises(ServiceValidationError, match="larger than 2 MB") as exc:
        tools_import_openapi(owner=developer, document=big)
    assert field_of(exc) == "document"
    with pytest.raises(ServiceValidationError, match="larger than 2 MB") as exc:
        tools_import_openapi(owner=developer, url=f"{api.url}/big.json")
    assert field_of(exc) == "url"


def test_yaml_alias_bombs_are_refused(developer):
    lines = ["openapi: 3.0.0", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    lines.append("paths: {}")
    with pytest.raises(ServiceValidationError, match="more than") as exc:
        tools_import_openapi(owner=developer, document="\n".join(lines), base_url="http://127.0.0.1:1")
    assert field_of(exc) == "document"


def test_url_errors_name_the_url(developer, api):
    with pytest.raises(ServiceValidationError, match="404") as exc:
        tools_import_openapi(owner=developer, url=f"{api.url}/missing.json")
    assert field_of(exc) == "url"
    with pytest.raises(ServiceValidationError) as exc:
        tools_import_openapi(owner=developer, url="file:///etc/passwd")
    assert field_of(exc) == "url"
    with pytest.raises(ServiceValidationError) as exc:
        tools_import_openapi(owner=developer, url=f"{api.url}/openapi.json", document=petstore())
    assert field_of(exc) == "url"


def test_unknown_operations_are_refused(developer, api):
    with pytest.raises(ServiceValidationError, match="nope") as exc:
        tools_import_openapi(
            owner=developer, document=petstore(f"{api.url}/api"), operations=["listPets", "nope"]
        )
    assert field_of(exc) == "operations"
    with pytest.raises(ServiceValidationError, match="OPTIONS") as exc:
        tools_import_openapi(
            owner=developer, document=petstore(f"{api.url}/api"), operations=["OPTIONS /pets/{petId}"]
        )
    assert field_of(exc) == "operations"
    assert not Tool.objects.filter(owner=developer).exists()


@pytest.mark.parametrize(
    ("servers", "variables"),
    [(None, None), ([{"url": "/api"}], None), ([{"url": "http://{host}/api"}], {})],
)
def test_missing_server_url_names_base_url(developer, servers, variables):
    doc = petstore()
    if servers is None:
        del doc["servers"]
    else:
        doc["servers"] = servers
    with pytest.raises(ServiceValidationError, match="base_url") as exc:
        tools_import_openapi(owner=developer, document=doc)
    assert field_of(exc) == "base_url"


def test_unsafe_base_url_is_refused(developer):
    with pytest.raises(ServiceValidationError) as exc:
        tools_import_openapi(owner=developer, document=petstore(), base_url="http://169.254.169.254/x")
    assert field_of(exc) == "base_url"


def test_a_failure_creates_nothing(developer, api, monkeypatch):
    existing = tool_create(owner=developer, name="showPetById", type="http", config={"url": f"{api.url}/x"})
    # Another request takes the name between the check and the creation: the third tool fails after
    # two were created, and the transaction takes those back.
    monkeypatch.setattr(openapi_import, "owner_tool_names", lambda owner: set())
    with pytest.raises(ServiceValidationError, match="showPetById") as exc:
        tools_import_openapi(owner=developer, document=petstore(f"{api.url}/api"))
    assert field_of(exc) == "document"
    assert list(Tool.objects.filter(owner=developer)) == [existing]


def test_an_invalid_operation_creates_nothing(developer, api):
    doc = petstore(f"{api.url}/api")
    doc["paths"]["/broken"] = {"get": {"operationId": "broken", "parameters": [{"name": "q"}]}}
    with pytest.raises(ServiceValidationError, match="GET /broken") as exc:
        tools_import_openapi(owner=developer, document=doc)
    assert field_of(exc) == "document"
    doc = petstore(f"{api.url}/api")
    doc["paths"]["/pets"]["get"]["parameters"].append({"$ref": "#/components/parameters/Missing"})
    with pytest.raises(ServiceValidationError, match="Missing") as exc:
        tools_import_openapi(owner=developer, document=doc)
    assert not Tool.objects.filter(owner=developer).exists()


def test_auth_errors_name_auth(developer, api):
    with pytest.raises(ServiceValidationError) as exc:
        tools_import_openapi(
            owner=developer,
            document=petstore(f"{api.url}/api"),
            auth={"type": "bearer", "secret_id": "00000000-0000-0000-0000-000000000000"},
        )
    assert field_of(exc).startswith("auth")
    assert not Tool.objects.filter(owner=developer).exists()


def test_input_document_is_not_modified(developer, api):
    doc = petstore(f"{api.url}/api")
    before = copy.deepcopy(doc)
    tools_import_openapi(owner=developer, document=doc)
    assert doc == before
