"""The public API: the Stack that composes the layers."""

from .stack import Stack

__all__ = ["Stack"]
