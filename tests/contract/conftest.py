import pytest


@pytest.fixture
def bearer_for():
    """`Authorization` headers with a real access token for the user."""
    from rest_framework_simplejwt.tokens import RefreshToken

    def make(user) -> dict[str, str]:
        return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}

    return make
