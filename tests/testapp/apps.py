from django.apps import AppConfig


class TestAppConfig(AppConfig):
    """A minimal owned model used to test the shared base viewset and permissions."""

    name = "tests.testapp"
    label = "testapp"
