"""Manifest parsing and validation: every problem, with its line number, before any work starts."""

from __future__ import annotations

import os
import socket

import pytest

from batchstyle.batch.manifest import ManifestError, read_manifest
from batchstyle.engine.settings import StyleSettings


@pytest.fixture
def job(tmp_path, photo):
    """A job folder with photos/ (3 images + a non-image), styles and a helper to write manifests."""
    (tmp_path / "photos").mkdir()
    for name, seed in (("b.png", 1), ("a.jpg", 2), ("c.PNG", 3)):
        photo(40, 30, seed).save(tmp_path / "photos" / name)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    photo(32, 32, 4).save(tmp_path / "starry.jpg")
    photo(32, 32, 5).save(tmp_path / "wave.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")

    def write(text: str, name: str = "manifest.csv"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return tmp_path, write


def problems(path, **kwargs) -> list[str]:
    with pytest.raises(ManifestError) as err:
        read_manifest(path, **kwargs)
    return str(err.value).splitlines()


def test_folder_rows_expand_in_stable_order_and_paths_are_relative_to_the_manifest(job):
    root, write = job
    items = read_manifest(write("content,style\nphotos,starry.jpg\n"))
    assert [i.content.name for i in items] == ["a.jpg", "b.png", "c.PNG"]
    assert all(i.content.parent == root / "photos" for i in items)
    assert [i.output for i in items] == ["a__starry.png", "b__starry.png", "c__starry.png"]
    assert items[0].styles == (root / "starry.jpg",) and items[0].content_size == (40, 30)


def test_glob_rows_and_several_styles(job):
    root, write = job
    items = read_manifest(write('content,style,style_weights,output\n'
                                'photos/*.png,starry.jpg;wave.png,3;1,out/{content}-{style}-{line}.tif\n'))
    assert [i.content.name for i in items] == ["b.png"]  # c.PNG: glob matching is case-sensitive here
    assert items[0].styles == (root / "starry.jpg", root / "wave.png")
    assert items[0].settings.style_weights == (3.0, 1.0)
    assert items[0].output == "out/b-starry+wave-2.tif"


def test_comments_blank_lines_and_line_numbers(job):
    _, write = job
    path = write("# my batch\n\ncontent,style\n# a comment row\nphotos/a.jpg,starry.jpg\n\n"
                 "photos/b.png,wave.png\n")
    assert [i.line for i in read_manifest(path)] == [5, 7]


def test_row_overrides_fall_back_to_command_line_defaults(job):
    _, write = job
    defaults = StyleSettings(end_scale=256, content_weight=5.0)
    items = read_manifest(write("content,style,end_scale,content-weight,original_colors,style_layers,gpus\n"
                                "photos/a.jpg,starry.jpg,,,yes,relu1_1:1 relu2_1:0.5,2\n"
                                "photos/b.png,starry.jpg,1024+,0.5,,,\n"), defaults=defaults)
    assert items[0].settings.end_scale == 256 and items[0].settings.content_weight == 5.0
    assert items[0].settings.original_colors is True and items[0].gpus == 2
    assert items[0].settings.style_layers == ("relu1_1", "relu2_1")
    assert items[0].settings.style_layer_weights == (1.0, 0.5)
    assert items[1].settings.end_scale == "1024+" and items[1].settings.content_weight == 0.5
    assert items[1].gpus is None and items[1].settings.style_layers == defaults.style_layers


def test_every_problem_is_reported_with_its_line(job):
    _, write = job
    path = write("content,style,style_weights,output,end_scale,gpus\n"      # 1
                 "photos/a.jpg,missing.jpg,,,,\n"                            # 2 missing style
                 "photos/a.jpg,broken.jpg,,x.png,,\n"                        # 3 unreadable style
                 "photos/b.png,starry.jpg,,,big,\n"                          # 4 bad number
                 "photos/b.png,starry.jpg;wave.png,1;2;3,y.png,,\n"          # 5 weight count
                 "photos/c.PNG,starry.jpg,,z.png,,3\n"                       # 6 gpus
                 "photos/a.jpg,wave.png,,x.png,,\n"                          # 7 same output as 3
                 "photos/a.jpg,wave.png,,../escape.png,,\n"                  # 8 leaves outdir
                 "photos/a.jpg,wave.png,,/abs/path.png,,\n"                  # 9 absolute
                 "nothere.jpg,wave.png,,n.png,,\n"                           # 10 missing content
                 "empty_dir/*.jpg,wave.png,,,,\n"                            # 11 glob matches nothing
                 "photos/a.jpg,wave.png,,{foo}.png,,\n"                      # 12 unknown placeholder
                 "photos/a.jpg,wave.png,,a.gif,,\n"                          # 13 unsupported output
                 ",wave.png,,,,\n")                                          # 14 empty content
    lines = problems(path)
    expected = [
        (2, "style image 'missing.jpg' does not exist"),
        (3, "style image 'broken.jpg' cannot be read"),
        (4, "end_scale must be a whole number of pixels or N+"),
        (5, "3 style weights for 2 style image(s)"),
        (6, "gpus must be 1 or 2, not '3'"),
        (7, "output 'x.png' is also written by line 3"),
        (8, "output path '../escape.png' would leave the output directory"),
        (9, "output path '/abs/path.png' would leave the output directory"),
        (10, "content image 'nothere.jpg' does not exist"),
        (11, "content pattern 'empty_dir/*.jpg' matches no image"),
        (12, "unknown placeholder(s) foo"),
        (13, "output 'a.gif' has an unsupported extension"),
        (14, "content is empty"),
    ]
    for line, text in expected:
        assert any(l.startswith(f"{path}:{line}: ") and text in l for l in lines), (line, text, lines)
    assert len(lines) == len(expected)


def test_unknown_columns_and_a_missing_style_column_are_header_problems(job):
    _, write = job
    lines = problems(write("content,colour,end_scale\nphotos/a.jpg,red,128\n"))
    assert any(":1: unknown column 'colour'" in l for l in lines)
    assert any(":1: the header has no 'style' column" in l for l in lines)


def test_a_folder_row_whose_outputs_collide(job):
    _, write = job
    lines = problems(write("content,style,output\nphotos,starry.jpg,same.png\n"))
    assert lines == [f"{job[0] / 'manifest.csv'}:2: output 'same.png' is also written by this row (a.jpg); "
                     f"a folder or pattern row needs {{content}} (or {{n}}) in its output, e.g. same_{{content}}.png"] * 2


def test_outputs_differing_only_by_case_collide(job):
    _, write = job
    lines = problems(write("content,style,output\nphotos/a.jpg,starry.jpg,Out.png\n"
                           "photos/b.png,starry.jpg,out.png\n"))
    assert len(lines) == 1 and ":3: output 'out.png' is also written by line 2" in lines[0]


def test_bad_settings_combinations_and_unreadable_content(job):
    _, write = job
    lines = problems(write("content,style,style_layers,init,content\n"
                           "broken.jpg,starry.jpg,relu9_9:1,noise,x\n"))
    assert lines[0].endswith(":1: column 'content' appears twice")
    lines = problems(write("content,style,init\nbroken.jpg,starry.jpg,noise\n"))
    assert any("init must be one of" in l for l in lines)
    assert any("content image 'broken.jpg' cannot be read" in l for l in lines)
    lines = problems(write("content,style,style_layers\nphotos/a.jpg,starry.jpg,relu9_9:1\n"))
    assert lines == [f"{job[0] / 'manifest.csv'}:2: unknown VGG-19 layer 'relu9_9'; layers are named like "
                     f"conv1_1, relu4_2, pool3 (from conv1_1 to pool5)"]


def test_empty_and_missing_manifests(job):
    root, write = job
    assert "the manifest is empty" in problems(write("# nothing\n\n"))[0]
    assert "lists no images" in problems(write("content,style\n"))[0]
    assert "does not exist" in problems(root / "nope.csv")[0]


def test_quoted_cells_with_commas(job):
    _, write = job
    items = read_manifest(write('content,style,style_layers\nphotos/a.jpg,starry.jpg,"relu1_1:2,relu3_1:1"\n'))
    assert items[0].settings.style_layers == ("relu1_1", "relu3_1")


def test_a_tile_column_sets_how_an_image_runs_not_which_image_it_is(job, tmp_path):
    from batchstyle.batch.outdir import open_output_dir
    from batchstyle.batch.plan import make_plan

    _, write = job
    items = read_manifest(write("content,style,tile\nphotos/a.jpg,starry.jpg,512px\nphotos/b.png,starry.jpg,\n"))
    assert [i.tile for i in items] == [512, None]  # None: the command line's --tile
    plain = read_manifest(write("content,style\nphotos/a.jpg,starry.jpg\n", "plain.csv"))
    ids = [make_plan(rows, open_output_dir(tmp_path / f"out{k}"), "w").todo[0].id
           for k, rows in enumerate((items, plain))]
    assert ids[0] == ids[1]  # tiles do not change the image: a done image is not made again
    (problem,) = problems(write("content,style,tile\nphotos/a.jpg,starry.jpg,32\n"))
    assert problem.endswith("manifest.csv:2: tile must be auto, off or a tile size in pixels of at least 64, not '32'")


# --- files that are not regular files, and folders that loop -----------------------------------------

QUICK = pytest.mark.timeout(10)  # a read blocked on a pipe, or a walk around a loop, fails instead of hanging


@QUICK
def test_a_named_pipe_in_a_cell_is_refused_without_opening_it(job):
    root, write = job
    os.mkfifo(root / "pipe.jpg")  # opening it for reading would wait for a writer forever
    lines = problems(write("content,style\npipe.jpg,starry.jpg\nphotos/a.jpg,pipe.jpg\n"))
    assert lines == [
        f"{root / 'manifest.csv'}:2: content image 'pipe.jpg' is a named pipe (FIFO), not a regular file; "
        f"copy the image into a regular file and name that",
        f"{root / 'manifest.csv'}:3: style image 'pipe.jpg' is a named pipe (FIFO), not a regular file; "
        f"copy the image into a regular file and name that"]


@QUICK
def test_devices_sockets_and_folders_where_an_image_belongs_name_what_they_are(job):
    root, write = job
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "listening.png"))
        lines = problems(write("content,style\n/dev/zero,starry.jpg\nphotos/a.jpg,/dev/null\n"
                               "photos/a.jpg,listening.png\nphotos/b.png,photos\n"))
    assert [line.split(": ", 1)[1] for line in lines] == [
        "content image '/dev/zero' is a character device, not a regular file; copy the image into a regular file "
        "and name that",
        "style image '/dev/null' is a character device, not a regular file; copy the image into a regular file "
        "and name that",
        "style image 'listening.png' is a socket, not a regular file; copy the image into a regular file and "
        "name that",
        "style image 'photos' is a folder, not a regular file; name an image file in it"]


@QUICK
def test_a_manifest_that_is_a_named_pipe_or_a_device_is_refused_without_reading_it(job):
    root, _ = job
    os.mkfifo(root / "jobs.csv")
    assert problems(root / "jobs.csv") == [
        f"{root / 'jobs.csv'}: the manifest is a named pipe (FIFO), not a regular file; save the manifest "
        f"to a file and name that"]
    assert "the manifest is a character device" in problems("/dev/zero")[0]


@QUICK
def test_a_named_pipe_in_a_folder_fails_as_an_image_and_planning_never_opens_it(job, tmp_path):
    from batchstyle.batch.outdir import open_output_dir
    from batchstyle.batch.plan import make_plan

    root, write = job
    os.mkfifo(root / "photos" / "pipe.png")
    (root / "photos" / "gone.jpg").symlink_to("moved.jpg")
    (root / "photos" / "album.jpg").mkdir()  # a folder whose name looks like an image is no file: left out
    items = read_manifest(write("content,style\nphotos,starry.jpg\n"))
    assert [(i.content.name, i.problem) for i in items] == [
        ("a.jpg", ""), ("b.png", ""), ("c.PNG", ""), ("gone.jpg", "gone.jpg is a symbolic link to nothing"),
        ("pipe.png", "pipe.png is a named pipe (FIFO), not a regular file; copy the image into a regular file and "
                     "name that")]
    plan = make_plan(items, open_output_dir(tmp_path / "out"), "w")  # ids hash the inputs' bytes
    assert len({i.id for i in plan.todo}) == 5


@QUICK
def test_a_symlink_loop_under_a_recursive_glob_yields_each_file_once(job):
    root, write = job
    year = root / "photos" / "2020"
    year.mkdir()
    (root / "photos" / "a.jpg").rename(year / "d.jpg")
    (year / "loop").symlink_to("..", target_is_directory=True)
    items = read_manifest(write("content,style\nphotos/**/*.jpg,starry.jpg\n"))  # no "differ only by extension"
    assert [i.content.relative_to(root).as_posix() for i in items] == ["photos/2020/d.jpg"]
    (year / "again").symlink_to("..", target_is_directory=True)  # two loops: 2^40 paths to follow
    (year / "itself").symlink_to(".", target_is_directory=True)
    items = read_manifest(write("content,style\nphotos/**/*.*,starry.jpg\nphotos/**,wave.png\n"))
    assert [(i.line, i.content.relative_to(root).as_posix()) for i in items] == [
        (2, "photos/2020/d.jpg"), (2, "photos/b.png"), (2, "photos/c.PNG"),
        (3, "photos/2020/d.jpg"), (3, "photos/b.png"), (3, "photos/c.PNG")]


def test_symlinked_folders_and_files_that_do_not_loop_are_followed(job, photo):
    root, write = job
    archive = root / "elsewhere" / "archive"
    archive.mkdir(parents=True)
    photo(40, 30, 6).save(archive / "old.jpg")
    (root / "photos" / "archive").symlink_to(archive, target_is_directory=True)
    (root / "linked").symlink_to(root / "photos", target_is_directory=True)
    (root / "painting.jpg").symlink_to(root / "starry.jpg")
    (root / "photos" / "empty").mkdir()
    items = read_manifest(write("content,style,output\nphotos/**/*.jpg,painting.jpg,r/{content}.png\n"
                                "linked,starry.jpg,f/{content}.png\nphotos/archive/*.jpg,wave.png,g/{content}.png\n"
                                "photos/*/old.jpg,wave.png,h/{content}.png\n"))
    assert [(i.line, i.content.relative_to(root).as_posix()) for i in items] == [
        (2, "photos/a.jpg"), (2, "photos/archive/old.jpg"),
        (3, "linked/a.jpg"), (3, "linked/b.png"), (3, "linked/c.PNG"), (4, "photos/archive/old.jpg"),
        (5, "photos/archive/old.jpg")]
    assert items[0].styles == (root / "painting.jpg",) and items[1].content_size == (40, 30)


def test_one_file_reached_twice_is_one_image_and_no_extension_hint(job):
    root, write = job
    (root / "photos" / "again").symlink_to(root / "photos", target_is_directory=True)
    (root / "photos" / "same.jpg").symlink_to("a.jpg")
    items = read_manifest(write("content,style\nphotos/*/*.jpg,starry.jpg\nphotos,wave.png\n"))
    assert [(i.line, i.content.name) for i in items] == [(2, "a.jpg"), (3, "a.jpg"), (3, "b.png"), (3, "c.PNG")]
    (root / "photos" / "2020").mkdir()
    (root / "photos" / "2020" / "b.png").write_bytes((root / "wave.png").read_bytes())  # another file, same name
    lines = problems(write("content,style\nphotos/**/b.png,starry.jpg\n"))
    assert lines == [f"{root / 'manifest.csv'}:2: output 'b__starry.png' is also written by this row (b.png); "
                     f"this row finds b.png in two folders: use an output such as "
                     f"{{content}}_{{n}}__{{style}}.png"]


def test_an_output_name_longer_than_the_file_system_allows_is_a_problem_of_its_line(job):
    _, write = job
    longest = "x" * 251 + ".png"  # 255 bytes: the most a name may have
    too_long = "é" * 126 + ".png"  # 256 bytes (é is two), though 130 characters
    folder = "d" * 256 + "/{content}.png"
    path = write(f"content,style,output\nphotos/a.jpg,starry.jpg,{longest}\nphotos/b.png,starry.jpg,{too_long}\n"
                 f"photos,wave.png,{folder}\n")
    lines = problems(path)
    assert lines[0].startswith(f"{path}:3: output ") and "its file name is 256 bytes long" in lines[0]
    assert "allows at most 255 bytes in a name; give this row a shorter output (e.g. {line}_{n}.png)" in lines[0]
    assert len(lines) == 4 and all(l.startswith(f"{path}:4: ") and "its folder name is 256 bytes" in l
                                   for l in lines[1:])  # each image of the folder row, none of line 2
    items = read_manifest(write(f"content,style,output\nphotos/a.jpg,starry.jpg,{longest}\n", "longest.csv"))
    assert [i.output for i in items] == [longest]
    assert len(read_manifest(path, name_max=None)) == 5  # on object storage a name has no such limit
