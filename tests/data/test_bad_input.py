"""Bad input refused cleanly before it costs memory or time: oversized images are refused from their header, a
batch request names its line and cannot read outside its folder, an over-long question is refused, and `task add`
does not follow a symlink out of --images."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from mllmcl.continual.inference import MAX_QUESTION_CHARS, load_request
from mllmcl.errors import DataError
from mllmcl.model.batching import open_image


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that only claims its size (header + an empty image chunk): opening it must not decode anything."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("size", [(20000, 20000), (1, 400000), (4097, 10)])
def test_an_oversized_image_is_refused_from_its_header(tmp_path, size):
    path = png_header(tmp_path / "big.png", *size)
    # Pillow itself refuses 400 M pixels as a decompression bomb at open; the side limit catches the rest
    refused = (
        rf"^line 3: .*big.png: (image is {size[0]}x{size[1]} pixels; the largest side|refused as a decompression bomb)"
    )
    with pytest.raises(DataError, match=refused):
        open_image(path, where="line 3")


def test_a_normal_image_still_opens(tmp_path):
    Image.new("RGB", (64, 32), (10, 20, 30)).save(tmp_path / "ok.png")
    assert open_image(tmp_path / "ok.png").size == (64, 32)


def test_a_batch_request_names_its_line_and_stays_in_its_folder(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match=r"^line 7: .*bad.png: not a readable image"):
        load_request({"question": "what colour?", "image": "bad.png"}, tmp_path, 7)
    with pytest.raises(DataError, match=r"line 2: image '../../etc/passwd' is outside the requests' folder"):
        load_request({"question": "q", "image": "../../etc/passwd"}, tmp_path, 2)
    with pytest.raises(DataError, match=rf"line 4: question is 100000 characters; at most {MAX_QUESTION_CHARS}"):
        load_request({"question": "x" * 100_000}, tmp_path, 4)


def test_predict_refuses_bad_batches_with_exit_2_and_one_line(tmp_path, capsys):
    from mllmcl.cli.main import main

    (tmp_path / "params.yaml").write_text("tasks: [rs]\n")
    batch = tmp_path / "requests.jsonl"
    png_header(tmp_path / "huge.png", 20000, 20000)
    for lines, expected in [
        ([{"question": "ok?"}, "{not json"], "line 2"),
        ([{"question": "ok?"}, {"question": "q", "image": "huge.png"}], "line 2: "),
        ([{"question": "y" * 100_000}], "line 1: question is 100000 characters"),
    ]:
        batch.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
        assert main(["predict", "--root", str(tmp_path), "--input", str(batch)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and expected in err and "Traceback" not in err


def test_task_add_does_not_follow_a_symlink_out_of_images(tmp_path):
    from mllmcl.data.tasks import add_llava
    from tests.data.test_task_add import make_llava_fixture

    (tmp_path / "proj").mkdir()
    params = tmp_path / "proj/params.yaml"
    params.write_text("tasks: [rs]\n")
    train, test, images = make_llava_fixture(tmp_path / "src")
    (images / "escape.png").symlink_to("/etc/hostname")
    with pytest.raises(DataError, match="escape.png: a symlink to /etc/hostname, outside"):
        add_llava("pets", train, test, images, root=tmp_path / "proj", params_path=params)
    assert not (tmp_path / "proj/data/raw/pets").exists()
    assert params.read_text() == "tasks: [rs]\n"
