"""The ``batchstyle`` command: ``stylize`` one image, ``run`` a manifest, ``status`` of an output
directory, ``bench`` the engine. One module per command; this package is the only place that
prints and exits. Exit codes: 0 done, 1 failed, 2 bad input, 130 interrupted.

Embedding: ``main(obj={"backend": factory})`` makes ``run`` use another stylizer backend (see
:mod:`batchstyle.batch.engine_backend` for what a backend is).
"""

from __future__ import annotations

import click

from batchstyle import __version__

from .bench import bench
from .run import run
from .status import status
from .stylize import stylize


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batchstyle")
def main() -> None:
    """Neural style transfer for folders of images: the multi-scale Gatys optimisation, on one machine or a Ray cluster.

    \b
    batchstyle stylize photo.jpg painting.jpg -o out.png     one image
    batchstyle run manifest.csv -o outdir/                    a batch (resumable)
    batchstyle status outdir/                                 what is done, failed, pending
    """


for command in (stylize, run, bench, status):
    main.add_command(command)

__all__ = ["main"]
