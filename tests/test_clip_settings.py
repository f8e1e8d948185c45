"""The settings of a clip: the manifest columns read with their defaults, every problem named by its column,
and the one-scale settings of a frame after the first. The module imports no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from batchstyle.engine.clip_settings import CLIP_COLUMNS, FRAME_STEP_SHARE, ClipSettings, frame_settings, parse_clip_settings
from batchstyle.engine.schedule import scale_ladder
from batchstyle.engine.settings import StyleSettings


def test_cells_override_the_defaults_and_empty_cells_keep_them():
    defaults = ClipSettings(temporal_weight=10, frame_iterations=50, long_term=(1, 2))
    assert parse_clip_settings({}, defaults) == defaults
    assert parse_clip_settings({"temporal_weight": " ", "frame_iterations": "", "content": "a.jpg"}, defaults) == defaults
    got = parse_clip_settings({"temporal_weight": "3.5", "frame_iterations": "120", "long_term": "1;2;4"}, defaults)
    assert got == ClipSettings(temporal_weight=3.5, frame_iterations=120, long_term=(1, 2, 4))
    assert parse_clip_settings({"long_term": "1, 3"}, defaults).long_term == (1, 3)
    assert parse_clip_settings({"temporal_weight": "0"}, defaults).temporal_weight == 0
    assert set(CLIP_COLUMNS) == {"temporal_weight", "frame_iterations", "long_term"}


@pytest.mark.parametrize("column, text, allowed", [
    ("temporal_weight", "strong", "a number of at least 0"),
    ("temporal_weight", "-1", "at least 0"),
    ("temporal_weight", "nan", "finite"),
    ("frame_iterations", "0", "at least 1"),
    ("frame_iterations", "1.5", "whole number"),
    ("long_term", "2;1", "ascending"),
    ("long_term", "1;1", "ascending"),
    ("long_term", "0;1", "at least 1"),
    ("long_term", "1;two", "whole numbers"),
])
def test_a_bad_cell_is_refused_naming_its_column_and_what_it_allows(column, text, allowed):
    with pytest.raises(ValueError, match=column) as caught:
        parse_clip_settings({column: text}, ClipSettings())
    assert allowed in str(caught.value)


def test_clip_settings_are_checked_when_made_and_written_for_ids():
    with pytest.raises(ValueError, match="long_term"):
        ClipSettings(long_term=())
    clip = ClipSettings(temporal_weight=2, frame_iterations=7, long_term=(1, 4))
    assert clip.to_dict() == {"temporal_weight": 2.0, "frame_iterations": 7, "long_term": [1, 4]}
    assert ClipSettings(**clip.to_dict()) == clip


@pytest.mark.parametrize("end_scale, size, side", [(512, (640, 480), 512), ("256+", (400, 300), 295), (64, (90, 60), 64)])
def test_a_later_frame_runs_its_end_scale_alone_with_the_frame_iterations(end_scale, size, side):
    settings = StyleSettings(end_scale=end_scale, content_weight=0.5, seed=3)
    later = frame_settings(settings, ClipSettings(frame_iterations=37), size)
    ladder = scale_ladder(size, later)
    assert [(s.long_side, s.iterations) for s in ladder] == [(side, 37)]
    assert ladder[-1].size == scale_ladder(size, settings)[-1].size  # the first frame's last scale
    assert (later.content_weight, later.seed) == (0.5, 3)
    assert later.step_size == settings.step_size * FRAME_STEP_SHARE  # it starts from a stylized image


def test_the_clip_settings_import_no_torch():
    code = ("import sys, batchstyle.engine.clip_settings; "
            "sys.exit(1 if 'torch' in sys.modules or 'cv2' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
