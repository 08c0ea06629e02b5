"""Real servers and message factories for inboxd's tests and local demo."""

from inboxd.testing.ports import free_port

__all__ = ["free_port"]
