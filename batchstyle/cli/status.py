"""``batchstyle status``: what is done, failed and pending in an output directory, without Ray."""

from __future__ import annotations

import sys
import time

import click
from rich.console import Console

from .common import EXIT_FAILED, UserError, note_unreadable
from .display import items_table, failed_table


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--all", "show_all", is_flag=True, help="List every pending and done image, not just the first few.")
@click.option("--html", is_flag=True, help="Also write the gallery, OUTDIR/index.html, from the records (for output "
              "directories made before there was one; a run keeps it up to date by itself).")
def status(outdir: str, show_all: bool, html: bool) -> None:
    """Show what is done, failed (with errors) and pending in an output directory (no Ray needed).

    Exits with 1 when images of the latest run failed, so that scripts can tell.
    """
    from batchstyle.batch.remote_files import StorageError

    console = Console(highlight=False, soft_wrap=True)
    try:
        out, plan, records, failures, done_ids = _read_state(outdir, show_all)
    except StorageError as exc:
        raise UserError(str(exc)) from None
    note_unreadable(console, out)
    done = [e for e in plan if e.id in done_ids]
    failed = [e for e in plan if e.id in failures and e.id not in done_ids]
    pending = [e for e in plan if e.id not in done_ids and e.id not in failures]
    console.print(f"[bold]{out.root}[/]: {len(plan)} image(s) in the latest run: [green]{len(done)} done[/], "
                  f"[red]{len(failed)} failed[/], {len(pending)} pending")
    extra = len(done_ids - {e.id for e in plan})
    if extra:
        console.print(f"({extra} more done image(s) from earlier manifests or settings)")
    for line in _clip_lines(out, plan, done_ids, failures):
        console.print(line)
    _describe_lock(console, out)
    eta = _eta(pending, [records[e.id] for e in done if e.id in records])
    if eta:
        console.print(eta)
    if failed:
        console.print(failed_table(failed, failures))
    limit = None if show_all else 20
    stills = lambda entries: [e for e in entries if not e.clip]  # noqa: E731 - a clip's frames are counted above
    for title, items in (("pending", stills(pending)), ("done", stills(done) if show_all else [])):
        if items:
            console.print(items_table(title, items[:limit], records))
            if limit is not None and len(items) > limit:
                console.print(f"... and {len(items) - limit} more (--all lists them)")
    if html:
        _write_gallery(console, out)
    if failed:
        sys.exit(EXIT_FAILED)


def _clip_lines(out, plan: list, done_ids: set[str], failures: dict) -> list[str]:
    """One line per clip of the latest run: its frames done, failed and pending, and whether its video
    is written from these very frames (as the batch decides whether to encode it again)."""
    from batchstyle.batch.clip_outputs import video_current

    clips: dict[str, list] = {}
    for entry in plan:
        if entry.clip:
            clips.setdefault(entry.video or entry.clip, []).append(entry)
    lines = []
    for name, frames in clips.items():
        made = sum(1 for e in frames if e.id in done_ids)
        failed = sum(1 for e in frames if e.id in failures and e.id not in done_ids)
        video, ids = frames[0].video, [e.id for e in sorted(frames, key=lambda e: e.frame)]
        state = "" if not video else (", video written" if made == len(frames) and video_current(out, video, ids)
                                      else ", video not written yet")
        lines.append(f"clip {name}: [green]{made}/{len(frames)} frames done[/], [red]{failed} failed[/], "
                     f"{len(frames) - made - failed} pending{state}")
    return lines


def _eta(pending: list, records: list) -> str | None:
    """How long the pending images take at the pace their run has kept (from its records), if known."""
    from batchstyle.batch.progress import duration, pace_of

    pace = pace_of(records)
    if not pending or not pace:
        return None
    return (f"The latest run made its {len(records)} image(s) at {pace:.1f} images/h: at that pace the "
            f"{len(pending)} pending take about {duration(3600 * len(pending) / pace)} more.")


def _write_gallery(console: Console, out) -> None:
    """Rebuild OUTDIR/index.html with every thumbnail, unless a run is writing it now."""
    from batchstyle.web.gallery import rebuild_gallery

    if out.lock().held_elsewhere():
        console.print(f"A run is in progress there; it keeps {out.root / 'index.html'} up to date.")
        return
    try:
        gallery = rebuild_gallery(out)
    except OSError as exc:
        raise UserError(str(exc)) from None
    console.print(f"Wrote {out.root / 'index.html'} ({len(gallery.items)} image(s)); open it in a browser.")


def _read_state(outdir: str, show_all: bool):
    """The output directory, its latest plan, records, failures and done ids. On object storage one
    listing of the prefix tells what is done; the records themselves are read only for --all."""
    from batchstyle.batch.outdir import open_output_dir

    out = open_output_dir(outdir)
    if not out.exists():
        raise UserError(f"{outdir} is not a batchstyle output directory (no {out.meta.name}/ in it)")
    plan, failures = out.plan(), out.failures()
    records = out.records() if show_all or not out.remote else {}
    done_ids = out.done_ids(records or None, outputs={e.id: e.output for e in plan})
    return out, plan, records, failures, done_ids


def _describe_lock(console: Console, out) -> None:
    lock = out.lock()
    holder = lock.holder()
    if holder:
        since = time.strftime('%Y-%m-%d %H:%M', time.localtime(holder.get('started', 0)))
        who = f"pid {holder.get('pid')} on {holder.get('host')}, started {since}"
        console.print(f"A run is in progress ({who})." if lock.held_elsewhere() else
                      f"The last run ended without finishing ({who}); run the same command again to resume.")
