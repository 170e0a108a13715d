from tests.serving.conftest import served_registry  # noqa: F401  (a registry with models to serve)
