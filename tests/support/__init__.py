"""Test scaffolding shared by the tests (and by some benchmarks), one module per job:

* ``fake_backend``: a fast stand-in for the engine behind the workers (``Fake``);
* ``fake_batchstyle``: the CLI with the fake backend (``python -m support.fake_batchstyle SPEC run ...``);
* ``photos``: synthetic photos, folder jobs and PNG bytes;
* ``processes``: the CLI as subprocesses (run, start, kill, wait) and a separate holder of a run lock;
* ``display``: a scheduler display that records what it is told;
* ``dashboard``: a scheduler state with a running image, for the dashboard;
* ``network``: this machine's network addresses;
* ``moto_s3``: moto's S3 server, a real S3 API on 127.0.0.1;
* ``hostile``: a folder of hostile images;
* ``clips``: test clips with their true motion (a pan, a handheld camera with a moving object);
* ``video_files``: clips as video files (mp4, mov, mkv, webm with an optional tone as audio) and GIFs.

The tests import it as ``support``: pytest puts ``tests/`` on the import path (the folder is not a
package), and conftest.py puts it on ``PYTHONPATH`` for Ray's workers and the CLI subprocesses, so a
pickled ``support.fake_backend.Fake`` resolves there too. The benchmarks, run as modules from the
repository root (``python -m benchmarks.NAME``), import it as ``tests.support``. Modules here import
each other relatively, so both work.
"""
