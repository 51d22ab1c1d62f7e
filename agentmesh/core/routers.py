from rest_framework.routers import SimpleRouter


class ApiRouter(SimpleRouter):
    """Paths without a trailing slash, as in the API contract (`/skills/{id}`)."""

    def __init__(self):
        super().__init__(trailing_slash=False)
