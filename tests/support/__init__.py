"""Helpers shared by the tests: servers, processes, TLS files and a raw-socket WebSocket client."""
