"""What a rule raises when the pod must not be created."""

from __future__ import annotations


class Denied(Exception):
    """The pod must not be created; the message tells its owner what to fix."""
