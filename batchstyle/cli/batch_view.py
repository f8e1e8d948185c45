"""What ``batchstyle run`` shows besides the terminal: the gallery in the output directory (always)
and, with ``--web``, the live dashboard served from the driver."""

from __future__ import annotations

import time
from typing import Any, Callable

import click
from rich.console import Console

from .common import UserError, print_urls

WEB_GRACE = 2.5  # seconds the dashboard stays up after the batch so that open pages can show the end


def web_options(func: Callable) -> Callable:
    """--web, --host and --port of ``batchstyle run``."""
    func = click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
                        help="Port for --web (0: any free port).")(func)
    func = click.option("--host", default="127.0.0.1", show_default=True,
                        help="Address for --web. 0.0.0.0 serves every network the machine is on: only where "
                             "you trust them all.")(func)
    func = click.option("--web", is_flag=True,
                        help="Serve a live dashboard of the batch (progress, ETA, every worker with its image as "
                             "it forms, the gallery) while it runs.")(func)
    return func


class BatchView:
    """The gallery, and with ``web`` the dashboard's server, over one output directory."""

    def __init__(self, out, web: tuple[str, int] | None):
        self.out, self.web = out, web
        self.gallery: Any = None
        self.dashboard: Any = None
        self.server: Any = None
        self.served = False

    def open(self, console: Console) -> "BatchView":
        """Bind the dashboard's port first, so that a busy port is said before any work is done."""
        if self.web is None:
            return self
        from batchstyle.web.dashboard import Dashboard
        from batchstyle.web import WebServer

        self.dashboard = Dashboard(out=self.out)
        self.server = WebServer(*self.web, root=self.dashboard.root, allow=self.dashboard.allow, routes=self.dashboard)
        try:
            self.server.start()
        except OSError as exc:
            raise UserError(f"--web: {exc.strerror or exc}") from None
        print_urls(console, "Live dashboard", self.server)
        return self

    def start(self, console: Console, plan) -> None:
        """Write the gallery now and keep it current: every result and failure the run writes updates it."""
        from batchstyle.web.gallery import Gallery

        self.gallery = Gallery(self.out).start()
        self.out.watch(self.gallery)
        if self.dashboard is not None:
            self.dashboard.gallery = self.gallery
            self.dashboard.starting(len(plan.all), len(plan.done), "starting the workers")
        console.print(f"Gallery: {self.out.root / 'index.html'}")

    def display(self, display):
        """The scheduler's display: the terminal's, and with --web the dashboard around it."""
        return display if self.dashboard is None else self.dashboard.attach(display)

    def finished(self, state, aborted: bool = False) -> None:
        """The scheduler has stopped (``aborted``: at once, by a second Ctrl-C); ``state`` is its last word."""
        self.served = True
        if self.gallery is not None and aborted:
            self.gallery.close(budget=0)  # no thumbnails are made after a second Ctrl-C
        elif self.gallery is not None:
            self.gallery.close()
        if self.dashboard is not None:
            self.dashboard.finish(state)

    def close(self, console: Console) -> None:
        """Write the gallery's last update; give open pages a moment to show the end; stop serving."""
        error = self.gallery.close() if self.gallery is not None else None
        if error:
            console.print(f"[yellow]The gallery could not be written:[/] {error}", markup=True)
        if self.server is not None:
            if self.served:
                time.sleep(WEB_GRACE)
            self.server.stop()


__all__ = ["BatchView", "web_options", "WEB_GRACE"]
