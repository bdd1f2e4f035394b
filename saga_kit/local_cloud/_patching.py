"""Reversible attribute patches (moto internals, ``os.environ``) for LocalCloud's lifetime."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``owner.name = value`` and restore the exact previous attribute afterwards.

    The original is read from ``vars(owner)`` so descriptors (static/class methods) come back
    unchanged, and an attribute that was only inherited is deleted again instead of copied in.
    """
    own = vars(owner)
    had_own = name in own
    original = own.get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)
