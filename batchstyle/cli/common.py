"""What the commands share: exit codes, one-line user errors, the options that come from the
engine's tables (the settings of an image, the speed options), and where --web can be opened."""

from __future__ import annotations

import ipaddress
from typing import Any, Callable
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.markup import escape
from rich.style import Style
from rich.text import Text

from batchstyle.engine.settings import SETTING_FIELDS, SettingField, SettingsError, StyleSettings, settings_from_text

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130

_DEFAULTS = StyleSettings()

# How --help names each setting's value.
_METAVARS = {
    "end_scale": "PX|PX+", "min_scale": "PX", "iterations": "N", "initial_iterations": "N", "content_weight": "W",
    "tv_weight": "W", "style_weight": "W", "style_weights": "W;W...", "step_size": "LR", "avg_decay": "DECAY",
    "style_scale": "FACTOR", "style_size": "PX", "content_layers": "LAYERS", "style_layers": "LAYERS", "seed": "N",
}


class UserError(click.ClickException):
    """A problem with the user's input: printed as one or two lines, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file=None) -> None:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {self.message}", soft_wrap=True)


def print_urls(console: Console, what: str, server: Any) -> None:
    """Where a started web server (``--web``) can be opened. Bound beyond loopback (``--host 0.0.0.0``),
    a warning first: anyone on the network can open it, without a password; then every URL found."""
    urls = server.urls()
    port = urls[0].rstrip("/").rsplit(":", 1)[1]
    if server.open_to_network:
        console.print(f"[bold yellow]warning:[/] the {what.lower()} is open to the network (--host "
                      f"{escape(server.host)}), without authentication: anyone who can reach this machine on port "
                      f"{port} sees the run, its images and file names. Leave --host at 127.0.0.1 to keep it to "
                      "this machine (from elsewhere, through an SSH tunnel).", soft_wrap=True)
    for n, url in enumerate(urls):
        console.print(Text.assemble(f"{what} at " if n == 0 else "  and at ", (url, Style(link=url))), soft_wrap=True)
    if server.open_to_network and not any(map(_off_loopback, urls)):
        console.print(f"  and at this machine's network addresses, port {port} (none could be found here)",
                      soft_wrap=True)


def note_unreadable(console: Console, out: Any) -> None:
    """One note per file of ``.batchstyle/`` that was read as absent (not JSON, or not of its shape)."""
    from rich.markup import escape

    for where, why in out.unreadable.items():
        console.print(f"[cyan]note:[/] ignored {escape(where)}: {escape(why)}; it counts as absent (an image it "
                      "recorded as done is made again)")


def _off_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name
        return host != "localhost"


def flag_of(field: SettingField) -> str:
    """The long command-line flag of a setting (``--end-scale``)."""
    return next(f for f in field.flags[-1].split("/") if f.startswith("--"))


def with_flag(problem: str) -> str:
    """An engine problem, which names a setting, with the setting's flag in front (``--end-scale: ...``)."""
    for field in SETTING_FIELDS:
        if field.flags and problem.startswith(field.name + " "):
            return f"{flag_of(field)}: {problem}"
    return problem


def setting_options(func: Callable) -> Callable:
    """Add every setting that has flags to a command; all default to None (= not given).

    Values reach :func:`settings_from_options` as the user typed them and are checked there by the
    settings table, so that a bad value reads the same from a flag as from a manifest cell.
    """
    for field in reversed([f for f in SETTING_FIELDS if f.flags]):
        if field.choices:
            extra: dict[str, Any] = {"type": click.Choice(field.choices)}
        elif "/" in field.flags[-1]:
            extra = {}  # an on/off flag pair
        else:
            extra = {"metavar": _METAVARS.get(field.name, "TEXT")}
        func = click.option(*field.flags, field.name, default=None, **extra,
                            help=f"{field.help} [default: {_DEFAULTS.default_text(field.name)}]")(func)
    return func


def settings_from_options(options: dict[str, Any], base: StyleSettings | None = None) -> StyleSettings:
    """The settings the user gave as flags, over ``base``; every problem is reported with its flag."""
    names = {f.name for f in SETTING_FIELDS if f.flags}
    given = {name: value for name, value in options.items() if name in names and value is not None}
    try:
        return settings_from_text(given, base)
    except SettingsError as exc:
        raise UserError("\n".join(with_flag(p) for p in exc.problems)) from None


def speed_options(func: Callable) -> Callable:
    """--precision, --memory-format, --compile and --tile: how the engine runs (not what it makes)."""
    from batchstyle.engine.speed import MEMORY_FORMATS, PRECISIONS

    func = click.option("--tile", default="auto", show_default=True, metavar="auto|off|PX",
                        callback=lambda ctx, param, value: _tile(value),
                        help="Evaluate the objective tile by tile: the same image in the memory of one tile "
                             "(a little slower). auto: only the scales whose whole image would not fit the "
                             "device's memory, with tiles as large as fit; off: never; PX: every scale larger "
                             "than PX, with tiles of PX (rounded down to a multiple of 16).")(func)
    func = click.option("--compile", "compile_", is_flag=True,
                        help="torch.compile the network for each scale's size (pays off only on long runs; "
                             "the first iterations of each size wait for the compiler).")(func)
    func = click.option("--memory-format", type=click.Choice(MEMORY_FORMATS), default="auto", show_default=True,
                        help="Activation layout. auto: channels_last on CUDA, contiguous (NCHW) on CPU.")(func)
    func = click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                        help="Convolution arithmetic. bf16 keeps Gram matrices, losses and the optimizer in "
                             "float32. auto: bf16 where the CPU or GPU has native bfloat16 units, else fp32. "
                             "fp32 reproduces the reference exactly.")(func)
    return func


def speed_from_options(options: dict[str, Any]):
    """Pop the speed options out of a command's keyword arguments into a :class:`Speed`."""
    from batchstyle.engine.speed import Speed

    return Speed(precision=options.pop("precision", "auto"), memory_format=options.pop("memory_format", "auto"),
                 compile=bool(options.pop("compile_", False)), tile=options.pop("tile", "auto"))


def _tile(value: str):
    from batchstyle.engine.speed import parse_tile

    try:
        return parse_tile(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("tile ")) from None


def parse_pixels(text: str) -> int:
    """A pixel count: ``250000000``, ``250M`` or ``1G`` (also ``250MP``)."""
    value = text.strip().upper().removesuffix("P")
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(value[-1:], 1)
    try:
        number = float(value[:-1] if scale > 1 else value) * scale
    except ValueError:
        number = 0
    if number < 1:
        raise click.BadParameter(f"a pixel count such as 250M or 1G, not {text!r}")
    return int(number)


def max_pixels_option(func: Callable) -> Callable:
    """--max-input-pixels: the largest input image accepted."""
    from batchstyle.engine.images import MAX_PIXELS

    return click.option(
        "--max-input-pixels", default=f"{MAX_PIXELS // 10**6}M", show_default=True, metavar="PIXELS",
        callback=lambda ctx, param, value: parse_pixels(value),
        help="Largest input image accepted (a header that claims more is refused without decoding it: a "
             "decompression bomb); room for 150 MP medium-format photos. Raise it, e.g. 1G, for larger files.",
    )(func)


def split_list(values: tuple[str | None, ...]) -> list[str]:
    """Comma-separated values of one or more repeated options."""
    return [v.strip() for value in values if value for v in value.split(",") if v.strip()]


class user_errors:
    """Turn the engine's user-facing exceptions into one-line errors with exit code 2.

    ``flags`` names the option behind an exception type (``{DeviceError: "--devices"}``): the
    engine speaks of devices and settings, the command line of its flags.
    """

    def __init__(self, flags: dict[type, str] | None = None):
        self.flags = flags or {}

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from batchstyle.engine.images import ImageError
        from batchstyle.engine.weights import WeightsError

        if exc is None or not isinstance(exc, (ImageError, WeightsError, ValueError, OSError)):
            return False
        if isinstance(exc, OSError) and not isinstance(exc, ImageError):
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            raise UserError(f"{where}{exc.strerror or exc}") from None
        flag = next((f for t, f in self.flags.items() if isinstance(exc, t)), None)
        raise UserError(f"{flag}: {exc}" if flag else with_flag(str(exc))) from None


__all__ = ["EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "UserError", "note_unreadable", "setting_options",
           "settings_from_options", "speed_options", "speed_from_options", "split_list", "user_errors", "with_flag",
           "max_pixels_option", "parse_pixels"]
