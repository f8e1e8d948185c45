"""The ``schedule`` setting: ``fixed`` keeps today's loop and ids; ``adaptive`` ends a scale once its
averaged image stops changing (after a cooling of the step size), runs to the cap while it changes,
lets each job of a group end on its own, resumes, and keeps the displays' progress moving forward."""

from __future__ import annotations

import pytest
import torch

from batchstyle.engine import Checkpoint, Job, Progress, ScaleFinished, StyleSettings, Stylizer
from batchstyle.engine import pace
from batchstyle.engine.checkpoint import fingerprint

CAP = 160
# Scales 34 and 48. With no loss at all, a run that starts from the content has nothing to change: the
# easy case. A large step with noise to start from keeps changing: the hard case.
BASE = StyleSettings(end_scale=48, min_scale=32, initial_iterations=CAP, iterations=CAP, schedule="adaptive")
EASY = BASE.replace(content_weight=0.0, style_weight=0.0, tv_weight=0.0, init="content")
HARD = BASE.replace(init="uniform", step_size=0.3, style_weight=50.0, avg_decay=0.5)
CALM = BASE.replace(step_size=0.05, style_weight=5.0)


def ran(events, item: int = 0) -> list[int]:
    """The iterations each scale ran, from the job's last progress event of each scale."""
    last = [e for e in events if isinstance(e, Progress) and e.item == item and e.last_of_scale]
    return [e.iteration for e in last]


def test_fixed_keeps_the_ids_and_checkpoints_of_images_made_before_the_setting(random_weights, pair):
    fixed = StyleSettings()
    assert "schedule" not in fixed.to_dict() and fixed.schedule == "fixed"
    assert StyleSettings(schedule="adaptive").to_dict()["schedule"] == "adaptive"
    same = fingerprint(fixed, "w", list(pair)) == fingerprint(StyleSettings(schedule="fixed"), "w", list(pair))
    assert same and fingerprint(fixed, "w", list(pair)) != fingerprint(BASE, "w", list(pair))


def test_fixed_runs_every_iteration(tiny_stylizer, pair):
    run = tiny_stylizer.run(pair[0], [pair[1]], EASY.replace(schedule="fixed", initial_iterations=30, iterations=20))
    events = list(run)
    assert ran(events) == [30, 20] and run.iterations_run() == 50 and run.share_run() == 1.0


def test_adaptive_ends_an_easy_image_early_and_cools_before_it_ends(tiny_stylizer, pair):
    run = tiny_stylizer.run(pair[0], [pair[1]], EASY)
    steps, events = [], []
    for event in run:
        events.append(event)
        if isinstance(event, Progress) and event.scale_index == 0:
            steps.append(run._stage.optimizers[0].param_groups[0]["lr"])  # the step size of the next step
    # converged at the first look allowed (no change at all), then cooled for half as long again
    expected = pace.MIN_ITERATIONS + round(pace.COOLING * pace.MIN_ITERATIONS)
    assert ran(events) == [expected, expected] and expected < CAP
    assert steps[pace.MIN_ITERATIONS - 2] == EASY.step_size > steps[pace.MIN_ITERATIONS] > steps[-2] > 0
    assert run.iterations_run() == 2 * expected and run.share_run() == pytest.approx(expected / CAP)


def test_adaptive_runs_an_image_that_keeps_changing_to_the_cap(tiny_stylizer, pair):
    run = tiny_stylizer.run(pair[0], [pair[1]], HARD)
    events = list(run)
    assert ran(events) == [CAP, CAP]
    assert all(change >= pace.THRESHOLD for _, change in run._stage.paces[0].changes)
    finished = [e for e in events if isinstance(e, ScaleFinished)]
    assert [f.scale_index for f in finished] == [0, 1]


def test_a_group_whose_members_end_at_different_times_gives_each_its_own_image(real_weights, demo_images):
    """Bit for bit: with the real weights and one thread, the convolutions of a group of two give what
    they give alone, so any difference would be the schedule's: a job's steps in a group must be those it
    takes alone, and after a mate has left, the objective of the jobs still going must be theirs alone.
    (With more threads the kernels split the work otherwise for other group sizes; Adam then grows the
    rounding into visible differences, for the fixed schedule as much.)"""
    from PIL import Image

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        check_group_against_alone(real_weights, demo_images, Image)
    finally:
        torch.set_num_threads(threads)


def check_group_against_alone(real_weights, demo_images, Image) -> None:
    stylizer = Stylizer(real_weights, devices=["cpu"])
    content = Image.open(demo_images / "content" / "chelsea_cat.jpg")
    style = Image.open(demo_images / "styles" / "van_gogh_starry_night.jpg")
    real = BASE.replace(end_scale=64, min_scale=45, content_weight=10.0)  # scales 45 and 64
    easy = real.replace(content_weight=0.0, style_weight=0.0, tv_weight=0.0)
    alone = []
    for settings in (easy, real):
        run = stylizer.run(content, [style], settings)
        alone.append((run, ran(list(run))))
    assert alone[0][1][0] < alone[1][1][0]  # the easy one leaves the group first
    group = stylizer.run_group([Job(content, [style], easy), Job(content, [style], real)])
    events = list(group)
    assert ran(events, 0) == alone[0][1] and ran(events, 1) == alone[1][1]
    # once it has left, only the other one is stepped
    late = [e.item for e in events if isinstance(e, Progress) and e.scale_index == 0 and e.iteration > alone[0][1][0]]
    assert late and set(late) == {1}
    for index, (run, _) in enumerate(alone):
        assert torch.equal(group.image(index), run.image()), index
        assert group.checkpoint_of(index).adam.step == run.checkpoint_of(0).adam.step  # each its own step count


@pytest.fixture(scope="module")
def calm_run(tiny_stylizer, pair):
    """An uninterrupted CALM run, with a last-scale threshold at which its second scale ends early."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pace, "THRESHOLD", 1.0)
        whole = tiny_stylizer.run(pair[0], [pair[1]], CALM)
        counts = ran(list(whole))
    return whole, counts


@pytest.mark.parametrize("where", ["mid-scale", "after a scale"])
def test_an_interrupted_adaptive_run_resumes_to_the_same_image(tiny_stylizer, pair, calm_run, where, monkeypatch):
    monkeypatch.setattr(pace, "THRESHOLD", 1.0)
    whole, counts = calm_run
    assert counts[-1] < CAP  # the second scale ends early: its Adam step count is not the ladder's
    run, saved = tiny_stylizer.run(pair[0], [pair[1]], CALM), None
    for event in run:
        if isinstance(event, ScaleFinished):
            saved = event.checkpoint.to_bytes()
            if where == "after a scale":
                break
        elif where == "mid-scale" and event.scale_index == 1 and event.iteration == counts[1] // 2:
            break  # killed mid-way through the second scale: it resumes from the end of the first
    resumed = tiny_stylizer.run(pair[0], [pair[1]], CALM, Checkpoint.from_bytes(saved))
    assert ran(list(resumed)) == counts[1:]
    assert torch.equal(resumed.image(), whole.image())


def test_the_displays_progress_never_runs_backwards_and_the_eta_counts_on_the_batchs_share(monkeypatch):
    """An adaptive image's scales end before their caps, and a retried image starts again from its
    checkpoint: the dashboard's bar only moves forward, and the ETA takes the remaining cap times the
    share of the cap the batch's adaptive images have run."""
    import json
    from pathlib import Path

    from batchstyle.batch.items import Item
    from batchstyle.batch.messages import WorkerInfo
    from batchstyle.batch.pool import Call, Worker
    from batchstyle.batch.progress import ADAPTIVE_SHARE, BatchProgress, remaining_units, units_done
    from batchstyle.batch.state import BatchState
    from batchstyle.engine.schedule import scale_ladder
    from batchstyle.web.dashboard import Dashboard

    settings = StyleSettings(end_scale=256, initial_iterations=120, iterations=60, schedule="adaptive")
    ladder = scale_ladder((64, 48), settings)
    item = Item(line=2, content=Path("a.png"), styles=(Path("s.png"),), settings=settings, output="a.png",
                content_size=(64, 48), id="a", units=sum(s.units for s in ladder))
    call = Call([item], None, 0.0)
    state = BatchState(total=2, skipped=0, queued=1, units_total=2 * item.units, adaptive_units_total=2 * item.units,
                       workers=[Worker(None, 0, None, WorkerInfo("n1", "node", [], ["cpu"]), call)])

    def at(scale: int, iteration: int, iterations: int | None = None) -> Progress:
        s = ladder[scale]
        return Progress(scale, len(ladder), s.width, s.height, iteration, iterations or s.iterations, 1.0, 0.0, 0, 0.0)

    # the first scale ends at 40 of 120: its whole cap counts as done, and nothing of it is left to do
    assert units_done(item, at(0, 40, 40)) == ladder[0].units > units_done(item, at(0, 39))
    assert remaining_units(item, at(0, 40, 40), 0.5) == sum(s.units for s in ladder[1:]) * 0.5
    dashboard, shown = Dashboard(), []
    path = [at(0, 10), at(0, 39), at(0, 40, 40), at(1, 1), at(1, 30, 30), at(2, 5),
            at(1, 1)]  # ... and the worker is lost: the image starts again after its first scale
    for progress in path:
        call.progress[item.id] = progress
        dashboard.publish(state)
        shown.append(json.loads(dashboard._state_json())["progress"])
    assert shown == sorted(shown) and shown[-1] > shown[0]
    progress = BatchProgress()
    assert progress.batch_eta(state) is None  # no rate yet: no guess
    monkeypatch.setattr(progress, "throughput", lambda state: 1000.0)
    queued = item.units * ADAPTIVE_SHARE  # no adaptive image done yet: the measured median share
    assert progress.batch_eta(state) == pytest.approx((remaining_units(item, path[-1], ADAPTIVE_SHARE) + queued) / 1000)
    state.adaptive_shares.append(0.25)  # one is done, and ran a quarter of its cap: the batch's share now
    assert progress.batch_eta(state) == pytest.approx((remaining_units(item, path[-1], 0.25) + item.units * 0.25) / 1000)


def test_status_estimates_the_pending_images_at_the_pace_their_run_kept():
    from types import SimpleNamespace

    from batchstyle.batch.progress import pace_of
    from batchstyle.cli.status import _eta

    # two workers, each making an image in 10 minutes, then another: 4 images in 20 minutes
    records = [SimpleNamespace(started=t, finished=t + 600) for t in (1000, 1000, 1600, 1600)]
    assert pace_of(records) == pytest.approx(12.0) and pace_of(records[:1]) is None
    assert "3 pending take about 15m00s" in _eta([1, 2, 3], records)
    assert _eta([], records) is None and _eta([1], records[:1]) is None
