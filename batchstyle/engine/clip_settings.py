# PROVISIONAL (replaced by the engine's own module)
from dataclasses import dataclass, replace, asdict
CLIP_COLUMNS = ("temporal_weight", "frame_iterations", "long_term")
@dataclass(frozen=True)
class ClipSettings:
    temporal_weight: float = 100.0
    frame_iterations: int = 100
    long_term: tuple = (1,)
    def to_dict(self): return {"temporal_weight": self.temporal_weight, "frame_iterations": self.frame_iterations, "long_term": list(self.long_term)}
def parse_clip_settings(cells, defaults):
    v = {}
    if cells.get("temporal_weight"): v["temporal_weight"] = float(cells["temporal_weight"])
    if cells.get("frame_iterations"): v["frame_iterations"] = int(cells["frame_iterations"])
    if cells.get("long_term"): v["long_term"] = tuple(int(x) for x in cells["long_term"].replace(",", ";").split(";"))
    return replace(defaults, **v)
def frame_settings(settings, clip, content_size):
    from .settings import resolve_end_scale
    end = resolve_end_scale(settings.end_scale, content_size)
    return replace(settings, min_scale=end, initial_iterations=clip.frame_iterations)
