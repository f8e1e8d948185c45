"""What a local and a remote output directory do alike: note each unreadable file of
``.batchstyle/`` once, tell observers of each write, and write the plan in one shape."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Iterable

from .records import BadRecord, PlanItem, _json_bytes, record_from


class Shared:
    """A mixin of :class:`local.LocalOutputDir` and :class:`remote.RemoteOutputDir`; each sets
    ``observers`` (a list) in its ``__init__``."""

    observers: list[Any]

    @property
    def unreadable(self) -> dict[str, str]:
        """The files of ``.batchstyle/`` read as absent so far, each once: where -> why (for one note each)."""
        return self.__dict__.setdefault("_unreadable", {})

    def _record_of(self, where: str, data: bytes, cls):
        """The record in a file's bytes, or None (noted once in :attr:`unreadable`) when it is none."""
        try:
            return record_from(data, cls, where.rsplit("/", 1)[-1])
        except BadRecord as exc:
            self.unreadable.setdefault(where, str(exc))
            return None

    @staticmethod
    def _plan_bytes(items: Iterable[PlanItem], info: dict[str, Any]) -> bytes:
        """What ``plan.json`` holds: the run's info and its items."""
        return _json_bytes({**info, "items": [asdict(e) for e in items]})

    def watch(self, observer: Any) -> None:
        """After each write, call ``observer.on_result(record, image)`` or ``observer.on_failure(failure)``
        (the gallery follows the run this way); an observer must return quickly."""
        self.observers.append(observer)

    def _notify(self, event: str, *args: Any) -> None:
        for observer in self.observers:
            getattr(observer, event)(*args)


__all__ = ["Shared"]
