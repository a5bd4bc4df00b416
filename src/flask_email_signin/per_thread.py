"""A resource each thread owns (a connection), released when the thread ends.

The lean paths keep a Redis connection and a database connection per thread. Each is
held by an `_Owned` stored in thread-local storage: when the thread ends that storage
goes, and the resource is released with it, so a server that starts a thread per
request (`flask run`) keeps nothing per finished thread. A forked child never releases
its parent's: closing it there would act on the parent's socket.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any


class _Owned:
    __slots__ = ("__weakref__", "key", "pid", "release_resource", "resource")

    def __init__(self, resource: Any, release: Callable[[Any], None], key: Hashable) -> None:
        self.resource, self.release_resource, self.key = resource, release, key
        self.pid = os.getpid()

    def release(self) -> None:
        resource, self.resource = self.resource, None
        if resource is not None and self.pid == os.getpid():
            try:
                self.release_resource(resource)
            except Exception:  # noqa: S110 - a broken connection: nothing more to release
                pass

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: S110 - at interpreter exit: the socket closes anyway
            pass


def _release_all(owned: weakref.WeakSet[_Owned]) -> None:
    for one in list(owned):
        one.release()


class PerThread:
    """This thread's resource for `key`, made by `make` on first use (and after a fork,
    a change of key or a `drop`), released by `release`."""

    def __init__(self, make: Callable[[Hashable], Any], release: Callable[[Any], None]) -> None:
        self._make, self._release = make, release
        self._local = threading.local()
        self._owned: weakref.WeakSet[_Owned] = weakref.WeakSet()  # every thread's
        weakref.finalize(self, _release_all, self._owned)

    def get(self, key: Hashable = None) -> Any:
        owned: _Owned | None = getattr(self._local, "owned", None)
        if owned is None or owned.resource is None or owned.pid != os.getpid() \
                or owned.key is not key:
            if owned is not None:
                owned.release()
            owned = _Owned(self._make(key), self._release, key)
            self._local.owned = owned
            self._owned.add(owned)
        return owned.resource

    def drop(self) -> None:
        """Release this thread's resource; the next `get` makes a new one."""
        owned = self._local.__dict__.pop("owned", None)
        if owned is not None:
            owned.release()

    def release_all(self) -> None:
        _release_all(self._owned)
        self._local = threading.local()

    def count(self) -> int:
        """How many threads hold one now."""
        return sum(1 for one in list(self._owned) if one.resource is not None)
