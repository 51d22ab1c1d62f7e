import threading
import time

import pytest
import uvicorn


@pytest.fixture
def live_server_url(transactional_db):
    """The ASGI app served by uvicorn on a free port in this process (same test database)."""
    from agentmesh.asgi import application

    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def bearer_for():
    """`Authorization` headers with a real access token for the user."""
    from rest_framework_simplejwt.tokens import RefreshToken

    def make(user) -> dict[str, str]:
        return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}

    return make
