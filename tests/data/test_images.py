"""A task's images packed into images.zip: what ingest writes and every reader (training, evaluation, validation,
serving tests) reads through `mllmcl.data.images`, byte for byte as the loose files were."""

from __future__ import annotations

import os
import zipfile

import pytest

from mllmcl.config import DataConfig
from mllmcl.data.benchmark import generate_task
from mllmcl.data.images import PACK, image_exists, pack_images, read_image_bytes
from mllmcl.data.ingest import ingest_task
from mllmcl.data.records import read_records
from mllmcl.errors import DataError
from mllmcl.model.batching import open_image


def _loose_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted((folder / "images").rglob("*.png"))}


def test_packing_keeps_every_image_byte_for_byte_and_is_deterministic(tmp_path):
    for name in ("a", "b"):
        generate_task("sci", tmp_path / name, train_size=12, test_size=6, seed=1)
    before = _loose_bytes(tmp_path / "a")
    assert pack_images(tmp_path / "a") == len(before) == 18 and pack_images(tmp_path / "b") == 18
    assert (tmp_path / "a" / PACK).read_bytes() == (tmp_path / "b" / PACK).read_bytes()  # same content, same pack
    assert not (tmp_path / "a" / "images").exists()
    with zipfile.ZipFile(tmp_path / "a" / PACK) as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    for rel, data in before.items():
        assert image_exists(tmp_path / "a" / rel) and read_image_bytes(tmp_path / "a" / rel) == data
    rec = read_records(tmp_path / "a" / "test.jsonl")[0]
    assert open_image(tmp_path / "a" / rec["image"]).size == (64, 64)


def test_a_missing_member_is_a_clear_error_naming_the_path(tmp_path):
    generate_task("sci", tmp_path, train_size=4, test_size=2, seed=1)
    pack_images(tmp_path)
    missing = tmp_path / "images" / "train_09999.png"
    assert not image_exists(missing)
    with pytest.raises(FileNotFoundError, match="train_09999.png"):
        read_image_bytes(missing)
    with pytest.raises(DataError, match=r"train_09999.png: image not found"):
        open_image(missing, where="record x")


def test_a_folder_with_a_symlink_stays_loose_for_validation_to_name(tmp_path):
    generate_task("sci", tmp_path, train_size=4, test_size=2, seed=1)
    os.symlink("/etc/hostname", tmp_path / "images" / "escape.png")
    assert pack_images(tmp_path) == 0
    assert (tmp_path / "images" / "escape.png").is_symlink() and not (tmp_path / PACK).exists()


def test_ingest_writes_a_handful_of_files_per_task(tmp_path):
    """What DVC hashes for a task: its manifests and one pack, not one file per image."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "spec.yaml").write_text("generator: med\n")
    cfg = DataConfig(train_size=40, test_size=20)
    ingest_task("med", cfg, raw_dir=raw, out_dir=tmp_path / "med")
    assert sorted(p.name for p in (tmp_path / "med").iterdir()) == [
        "images.zip",
        "meta.json",
        "test.jsonl",
        "train.jsonl",
    ]
    rec = read_records(tmp_path / "med" / "train.jsonl")[0]
    assert open_image(tmp_path / "med" / rec["image"]).mode == "RGB"


def test_an_images_folder_inside_images_reads_from_the_task_pack(tmp_path):
    """An imported production batch keeps its own images/ folder: records say images/images/x.png."""
    from PIL import Image

    (tmp_path / "images" / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "images" / "images" / "x.png")
    data = (tmp_path / "images" / "images" / "x.png").read_bytes()
    assert pack_images(tmp_path) == 1
    assert image_exists(tmp_path / "images/images/x.png") and read_image_bytes(tmp_path / "images/images/x.png") == data
