"""Output names: the template a row's images are named by, the rule that two images never write
one file (with a hint that names the way out), and why an output could not be written, in words."""

from __future__ import annotations

import errno
import os
import posixpath
import string
from pathlib import Path

OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
DEFAULT_OUTPUT = "{content}__{style}.png"
PLACEHOLDERS = ("content", "ext", "style", "line", "n")


def output_path(template: str, content: Path, styles: tuple[Path, ...], line: int, n: int) -> tuple[str, str | None]:
    """The output path for one item, or an error text.

    Placeholders: ``{content}`` the content's name without extension, ``{ext}`` its extension
    (``jpg``), ``{style}`` the style names joined by ``+``, ``{line}`` the manifest line, ``{n}``
    the image's number within its row.
    """
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return "", f"output template {template!r} is malformed ({exc})"
    unknown = sorted({name for name in names if name not in PLACEHOLDERS})
    if unknown:
        return "", (f"output template {template!r} uses unknown placeholder(s) {', '.join(unknown)}; "
                    f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    out = template.format(content=content.stem, ext=content.suffix.lstrip(".").lower(),
                          style="+".join(s.stem for s in styles), line=line, n=n).replace("\\", "/")
    if not out.strip() or out.endswith("/"):
        return "", f"output {template!r} gives an empty file name"
    if out.startswith("/") or (len(out) > 1 and out[1] == ":") or ".." in out.split("/"):
        return "", f"output path {out!r} would leave the output directory; use a relative path inside it"
    out = posixpath.normpath(out)
    if posixpath.splitext(out)[1].lower() not in OUTPUT_EXTENSIONS:
        return "", f"output {out!r} has an unsupported extension; use one of {', '.join(OUTPUT_EXTENSIONS)}"
    return out, None


NAME_MAX = 255  # bytes in one file name on most file systems (ext4, XFS, APFS, NTFS, tmpfs)


def name_too_long(output: str, name_max: int | None = NAME_MAX) -> str | None:
    """What to tell the user when a file or folder name of ``output`` is longer than the ``name_max``
    bytes the output directory's file system allows in one name (such a file can never be written),
    else None. ``name_max`` None: no limit (object storage)."""
    if name_max is None:
        return None
    for part in output.split("/"):
        size = len(os.fsencode(part))
        if size > name_max:
            what = "file" if part == output.rsplit("/", 1)[-1] else "folder"
            shown = part if len(part) <= 40 else f"{part[:30]}...{part[-8:]}"
            return (f"output {shown!r}: its {what} name is {size} bytes long, and the output directory's file "
                    f"system allows at most {name_max} bytes in a name; give this row a shorter output "
                    f"(e.g. {{line}}_{{n}}{posixpath.splitext(output)[1]})")
    return None


class OutputClaims:
    """Which line and content write each output; a second claim on one file is refused."""

    def __init__(self):
        self.owners: dict[str, tuple[int, Path]] = {}  # output (lower case) -> the line and content making it

    def claim(self, output: str, line: int, content: Path, template: str) -> str | None:
        """None when ``output`` is free (it is now this item's), else what to tell the user."""
        key = output.lower()  # outputs differing only by case collide on macOS and Windows
        if key not in self.owners:
            self.owners[key] = (line, content)
            return None
        other_line, other = self.owners[key]
        where = "this row" if other_line == line else f"line {other_line}"
        return (f"output {output!r} is also written by {where} ({other.name}); "
                f"{collision_hint(template, content, other, other_line == line)}")


def collision_hint(template: str, content: Path, other: Path, same_row: bool) -> str:
    """How to make names unique, for the case at hand (not the template already in use)."""
    stem, ext = posixpath.splitext(template)
    if content.stem == other.stem and content.name != other.name and "{ext}" not in template:
        suggestion = template.replace("{content}", "{content}_{ext}") if "{content}" in template else \
            f"{stem}_{{content}}_{{ext}}{ext}"
        return f"{content.name} and {other.name} differ only by extension: use an output such as {suggestion}"
    if content.name == other.name and same_row and "{content}" in template and "{n}" not in template:
        suggestion = template.replace("{content}", "{content}_{n}")
        return f"this row finds {content.name} in two folders: use an output such as {suggestion}"
    if "{content}" not in template and same_row:
        return f"a folder or pattern row needs {{content}} (or {{n}}) in its output, e.g. {stem}_{{content}}{ext}"
    if "{line}" not in template and not same_row:
        return f"give each row its own output, e.g. {stem}_{{line}}{ext}"
    return "give each row its own output column"


def why_not_written(exc: OSError) -> str:
    """An OS error on writing an image, in words (with what to do where that is clear)."""
    where = exc.filename or ""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"a file stands where a folder of its path should be ({where}); move it away or change the output"
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno == errno.EDQUOT:
        return "the disk quota is used up"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied ({where})"
    return f"{exc.strerror or exc} ({where})" if where else str(exc.strerror or exc)


__all__ = ["why_not_written", "output_path", "name_too_long", "NAME_MAX", "OutputClaims", "collision_hint", "DEFAULT_OUTPUT", "OUTPUT_EXTENSIONS", "PLACEHOLDERS"]
