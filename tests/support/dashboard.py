"""What the dashboard is handed: a batch's state with one worker running one image, with its progress
and a live preview."""

from __future__ import annotations

import time
from pathlib import Path


def running_state(item_id: str = "abc"):
    """Five images: one skipped, two done, one failed, ``item_id`` at its second scale on worker ``n1``."""
    from batchstyle.batch.items import Item
    from batchstyle.batch.messages import ItemPreview, WorkerInfo
    from batchstyle.batch.pool import Call, Worker
    from batchstyle.batch.state import BatchState
    from batchstyle.engine.events import Progress
    from batchstyle.engine.schedule import scale_ladder
    from batchstyle.engine.settings import StyleSettings

    settings = StyleSettings(end_scale=256, initial_iterations=120, iterations=60)
    ladder = scale_ladder((64, 48), settings)
    item = Item(line=3, content=Path("a.png"), styles=(Path("s.png"),), settings=settings, output="a__s.png",
                content_size=(64, 48), id=item_id, units=sum(s.units for s in ladder))
    progress = Progress(1, 3, *ladder[1].size, 40, 60, 2.5, 12.0, 0, time.time())
    preview = ItemPreview(b"\xff\xd8fake-jpeg", *ladder[1].size, *ladder[1].size, 1, 40)
    call = Call([item], None, time.time() - 12, progress={item_id: progress}, previews={item_id: preview})
    worker = Worker(None, 0, None, WorkerInfo("n1", "node", [], ["cpu"]), call)
    return BatchState(total=5, skipped=1, done=2, failed=1, units_total=3 * item.units, units_done=2 * item.units,
                      workers=[worker])
