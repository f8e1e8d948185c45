"""The chains of frames the scheduler keeps: a frame of a clip starts when the earlier frames of its
chain that it starts from are done; it is sent with their content frames and outputs; and when a
frame fails, the later frames of its chain fail with it (they could only start from it)."""

from __future__ import annotations

import errno
from typing import Iterable

from .items import Item
from .outdir import OutputDir


class Chains:
    """What the scheduler knows of the batch's frames: each by its clip and number, and which are done."""

    def __init__(self, todo: Iterable[Item], done: Iterable[Item] = ()):
        done = [item for item in done if item.frame is not None]
        self.frames = {(i.frame.clip, i.frame.index): i for i in [*todo, *done] if i.frame is not None}
        self.finished = {(i.frame.clip, i.frame.index) for i in done}

    def ready(self, item: Item) -> bool:
        """Whether the item may start now: a still image always, a frame once its earlier frames are done."""
        frame = item.frame
        return frame is None or all((frame.clip, k) in self.finished for k in frame.earlier)

    def done(self, item: Item) -> None:
        if item.frame is not None:
            self.finished.add((item.frame.clip, item.frame.index))

    def later(self, item: Item, waiting: Iterable[Item]) -> list[Item]:
        """The items of ``waiting`` that are later frames of ``item``'s chain (they start from it, at one
        or more removes)."""
        frame = item.frame
        if frame is None:
            return []
        return [i for i in waiting if i.frame is not None and i.frame.clip == frame.clip
                and i.frame.chain == frame.chain and i.frame.index > frame.index]

    def earlier_inputs(self, item: Item, out: OutputDir) -> list[tuple[bytes, bytes]]:
        """For each earlier frame the item starts from: its content frame's bytes and its output's bytes.
        An output that has gone since it was made raises FileNotFoundError (the item fails, saying so)."""
        frame = item.frame
        if frame is None:
            return []
        inputs = []
        for k in frame.earlier:
            earlier = self.frames[(frame.clip, k)]
            output = out.read_file(earlier.output)
            if output is None:
                raise FileNotFoundError(errno.ENOENT, "made, then removed; run the batch again to make it anew",
                                        earlier.output)
            inputs.append((earlier.content.read_bytes(), output))
        return inputs


__all__ = ["Chains"]
