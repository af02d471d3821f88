"""The package version, in one place: pyproject.toml reads it (scikit-build-core's regex
provider), ``uws_py.__version__`` and ``uws-py --version`` import it."""

__version__ = "0.1.0"
