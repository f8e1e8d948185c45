"""A display for the scheduler that records its log lines and can act on each state update."""

from __future__ import annotations


class RecordingDisplay:
    def __init__(self, on_update=None):
        self.lines: list[str] = []
        self.on_update = on_update

    def update(self, state) -> None:
        if self.on_update:
            self.on_update(state)

    def log(self, text: str) -> None:
        self.lines.append(text)
