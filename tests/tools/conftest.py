import pytest

from tools import services


@pytest.fixture
def make_http_tool(fake_api):
    def make(owner, name="get_item", *, path="/items/{item_id}", method="GET", deploy=False, **fields):
        config = {"method": method, "url": fake_api.url + path, **fields.pop("config", {})}
        tool = services.tool_create(owner=owner, name=name, type="http", config=config, **fields)
        if deploy:
            services.tool_validate(tool=tool, actor=owner)
            tool = services.tool_deploy(tool=tool, actor=owner)
        return tool

    return make
