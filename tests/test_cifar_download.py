"""The official CIFAR-10 archive as the zoo's fallback data (data/cifar_download.py, data/export_data.py).

Every test serves a small archive of the official layout, made here, from a local HTTP server on 127.0.0.1 and
stands it in for the pinned one (CIFAR10_ARCHIVE's sha256 and size); the cache is always under tmp_path.
"""

import hashlib
import io
import json
import pickle
import shutil
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest

from flexround_mcu.data import cifar_download as CD
from flexround_mcu.data import export_data as ED
from flexround_mcu.data import load_dataset
from flexround_mcu.data.cifar_batches import load_cifar10_batches
from helpers import LocalHTTPServer, cli_fails_cleanly, user_error

TRAIN_BATCH = 40  # images per data_batch_k
TEST_IMAGES = 40


def fake_batch(n: int, seed: int) -> dict:
    """A batch in the official format: channel-major uint8 rows and a list of labels."""
    rng = np.random.default_rng(seed)
    return {b"batch_label": f"batch {seed}".encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)]}


def official_batches() -> dict[str, dict]:
    batches = {f"data_batch_{k}": fake_batch(TRAIN_BATCH, seed=k) for k in range(1, 6)}
    batches["test_batch"] = fake_batch(TEST_IMAGES, seed=0)
    return batches


def _file(name: str, body: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(body)
    return info, body


def _link(name: str, target: str, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def archive_members(batches: dict[str, dict]) -> list:
    """The official archive's members: the folder, the batch pickles (protocol 2, as the Python 2 originals),
    batches.meta and readme.html."""
    folder = tarfile.TarInfo("cifar-10-batches-py")
    folder.type = tarfile.DIRTYPE
    members = [(folder, None)]
    members += [_file(f"cifar-10-batches-py/{name}", pickle.dumps(b, protocol=2)) for name, b in batches.items()]
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                             b"ship", b"truck"], b"num_cases_per_batch": TRAIN_BATCH, b"num_vis": 3072}
    members.append(_file("cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2)))
    members.append(_file("cifar-10-batches-py/readme.html", b"<html>not extracted</html>"))
    return members


def tar_gz(members: list) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, body in members:
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    return buf.getvalue()


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}/nothing-here"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty data folder, cache under tmp_path, and no download ever leaving 127.0.0.1."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(data))
    monkeypatch.setenv("FLEXROUND_MCU_CACHE", str(cache))
    monkeypatch.setenv("FLEXROUND_MCU_CIFAR10_URL", closed_port_url())
    monkeypatch.setenv("FLEXROUND_MCU_WEIGHTS_URL", closed_port_url())
    return data, cache


@pytest.fixture
def server():
    s = LocalHTTPServer()
    try:
        yield s
    finally:
        s.close()


def serve_archive(server: LocalHTTPServer, monkeypatch, body: bytes, pinned: bytes | None = None) -> str:
    """Serve body as the archive and pin `pinned` (default: body itself) as the archive the code expects."""
    pinned = body if pinned is None else pinned
    monkeypatch.setattr(CD, "CIFAR10_ARCHIVE", CD.ArchiveSpec("cifar-10-python.tar.gz", "http://127.0.0.1:9/unused",
                                                            hashlib.sha256(pinned).hexdigest(), len(pinned)))
    server.files["/cifar-10-python.tar.gz"] = body
    url = server.url("/cifar-10-python.tar.gz")
    monkeypatch.setenv("FLEXROUND_MCU_CIFAR10_URL", url)
    return url


def listing(folder: Path) -> list[str]:
    """Everything under folder, hidden temporary files included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def images_of(batch: dict) -> np.ndarray:
    return batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


# --- (a) a good archive ----------------------------------------------------------------------------------------

def test_good_archive_is_downloaded_verified_extracted_once(isolated, server, monkeypatch, capsys):
    _, cache = isolated
    batches = official_batches()
    body = tar_gz(archive_members(batches))
    url = serve_archive(server, monkeypatch, body)

    got = CD.official_cifar10(progress=False)
    folder = cache / "datasets" / "cifar-10-batches-py"
    assert got.folder == folder.resolve() and server.hits == 1
    assert got.source == {"from": "downloaded archive", "archive": "cifar-10-python.tar.gz", "url": url,
                          "sha256": hashlib.sha256(body).hexdigest(), "path": str(folder.resolve()),
                          "downloaded_now": True}
    # only the seven members and our marker; the archive is gone, readme.html was not extracted, no temporaries
    assert listing(cache / "datasets") == ["cifar-10-batches-py", *sorted(
        f"cifar-10-batches-py/{n}" for n in (".flexround-mcu-archive.json", "batches.meta", "test_batch",
                                             *(f"data_batch_{k}" for k in range(1, 6))))]
    test = load_cifar10_batches(got.folder, "test")
    np.testing.assert_array_equal(test.x, images_of(batches["test_batch"]))
    assert test.y.tolist() == batches["test_batch"][b"labels"]
    train = load_cifar10_batches(got.folder, "train")
    np.testing.assert_array_equal(train.x, np.concatenate([images_of(batches[f"data_batch_{k}"]) for k in range(1, 6)]))
    assert "downloading the official cifar-10-python.tar.gz" in capsys.readouterr().err

    again = CD.official_cifar10(progress=False)  # from the cache: no second request
    assert server.hits == 1 and again.folder == got.folder and again.source["downloaded_now"] is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "using the official batches in" in err[0]

    (folder / "data_batch_3").write_bytes(b"damaged")  # a damaged extraction of ours is replaced by a new one
    CD.official_cifar10(progress=False)
    assert server.hits == 2 and (folder / "data_batch_3").read_bytes() == pickle.dumps(batches["data_batch_3"], 2)


def test_archive_saved_by_hand_is_used_without_download(isolated, server, monkeypatch):
    _, cache = isolated
    body = tar_gz(archive_members(official_batches()))
    serve_archive(server, monkeypatch, body)
    (cache / "datasets").mkdir(parents=True)
    (cache / "datasets" / "cifar-10-python.tar.gz").write_bytes(body)
    got = CD.official_cifar10(progress=False)
    assert server.hits == 0 and got.source["downloaded_now"] is False and got.source["url"] is None
    assert listing(cache / "datasets")[0] == "cifar-10-batches-py" and len(listing(cache / "datasets")) == 9


def test_data_folders_own_batches_come_first(isolated, server, monkeypatch):
    data, cache = isolated
    serve_archive(server, monkeypatch, tar_gz(archive_members(official_batches())))
    batches = official_batches()
    (data / "cifar-10-batches-py").mkdir()
    for name, b in batches.items():
        (data / "cifar-10-batches-py" / name).write_bytes(pickle.dumps(b, protocol=2))
    got = CD.official_cifar10(progress=False)
    assert got.source == {"from": "data folder", "path": str((data / "cifar-10-batches-py").resolve())}
    assert server.hits == 0 and listing(cache) == []
    # the same folder by name: the training split in data_batch order
    train = load_dataset("cifar10-train-full", limit=50)
    assert train.name == "cifar10-train-full" and len(train) == 50
    np.testing.assert_array_equal(train.x, np.concatenate([images_of(batches["data_batch_1"]),
                                                           images_of(batches["data_batch_2"])[:10]]))
    (data / "cifar-10-batches-py" / "data_batch_4").unlink()
    assert "data_batch_4" in user_error(load_dataset, "cifar10-train-full")


def test_a_foreign_folder_in_the_cache_is_left_alone(isolated, server, monkeypatch):
    _, cache = isolated
    serve_archive(server, monkeypatch, tar_gz(archive_members(official_batches())))
    mine = cache / "datasets" / "cifar-10-batches-py"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    msg = user_error(CD.official_cifar10, progress=False)
    assert str(mine) in msg and "FLEXROUND_MCU_CACHE" in msg
    assert (mine / "notes.txt").read_text() == "mine" and server.hits == 0


# --- (b), (c) a corrupt or truncated download --------------------------------------------------------------------

def test_corrupt_archive_is_refused_and_nothing_kept(isolated, server, monkeypatch):
    _, cache = isolated
    good = tar_gz(archive_members(official_batches()))
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # same size, one byte changed
    serve_archive(server, monkeypatch, bytes(bad), pinned=good)
    msg = user_error(CD.official_cifar10, progress=False)
    assert hashlib.sha256(good).hexdigest() in msg and hashlib.sha256(bytes(bad)).hexdigest() in msg
    assert "nothing was saved" in msg and "FLEXROUND_MCU_DATA" in msg
    assert listing(cache / "datasets") == []


def test_truncated_download_is_refused_and_nothing_kept(isolated, server, monkeypatch):
    _, cache = isolated
    body = tar_gz(archive_members(official_batches()))
    serve_archive(server, monkeypatch, body)
    server.cut["/cifar-10-python.tar.gz"] = len(body) // 3
    msg = user_error(CD.official_cifar10, progress=False)
    assert f"{len(body) // 3} bytes, expected {len(body)}" in msg and "nothing was saved" in msg
    assert listing(cache / "datasets") == []


def test_unreachable_host(isolated):
    _, cache = isolated  # FLEXROUND_MCU_CIFAR10_URL: a closed port
    msg = user_error(CD.official_cifar10, progress=False)
    assert "failed" in msg and "--dataset" in msg and listing(cache / "datasets") == []


# --- (d) hostile members -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["dotdot", "dotdot_inside", "absolute", "symlink", "hardlink", "extra", "twice",
                                  "missing", "not_gzip"])
def test_hostile_archive_is_refused_and_nothing_extracted(isolated, server, monkeypatch, tmp_path, case):
    _, cache = isolated
    members = archive_members(official_batches())
    outside = tmp_path / "evil"
    evil = {
        "dotdot": [_file("../evil", b"pwned")],
        "dotdot_inside": [_file("cifar-10-batches-py/../../../evil", b"pwned")],
        "absolute": [_file(str(outside), b"pwned")],
        "symlink": [_link("cifar-10-batches-py/evil", str(outside))],
        "hardlink": [_link("cifar-10-batches-py/evil", str(outside), hard=True)],
        "extra": [_file("cifar-10-batches-py/run_me.sh", b"#!/bin/sh\n")],
        "twice": [_file("cifar-10-batches-py/test_batch", b"other bytes")],
        "missing": [],
        "not_gzip": [],
    }[case]
    if case == "symlink":  # a batch replaced by a link, the member a careless extractor would follow
        members = [m for m in members if m[0].name != "cifar-10-batches-py/test_batch"]
        evil = [_link("cifar-10-batches-py/test_batch", str(outside))]
    if case == "missing":
        members = [m for m in members if m[0].name != "cifar-10-batches-py/data_batch_5"]
    body = b"plain bytes, not a gzip stream" if case == "not_gzip" else tar_gz(members + evil)  # evil last
    serve_archive(server, monkeypatch, body)
    msg = user_error(CD.official_cifar10, progress=False)
    assert "cifar-10-python.tar.gz" in msg and "nothing was extracted" in msg
    expect = {"dotdot": "outside", "dotdot_inside": "outside", "absolute": "outside", "symlink": "a link",
              "hardlink": "a link", "extra": "not one of the expected", "twice": "present twice",
              "missing": "data_batch_5", "not_gzip": "extraction failed"}[case]
    assert expect in msg, msg
    assert listing(cache / "datasets") == []  # no archive, no extracted folder, no temporary folder
    assert not outside.exists() and not (cache / "evil").exists() and not (tmp_path / "data" / "evil").exists()


# --- the export's datasets ---------------------------------------------------------------------------------------

def test_export_data_stands_in_official_sets_for_missing_defaults(isolated, server, monkeypatch):
    batches = official_batches()
    serve_archive(server, monkeypatch, tar_gz(archive_members(batches)))
    monkeypatch.setitem(ED.STAND_INS, "cifar10-calib", ("cifar10-train-full", 50))  # a cut inside data_batch_2
    d = ED.load_export_data("cifar10-test-5000", "cifar10-calib", 7, eval_is_default=True, calib_is_default=True,
                            progress=False)
    assert (d.eval.name, len(d.eval), d.calib.name, len(d.calib)) == ("cifar10-test-full", 7,
                                                                     "cifar10-train-full[:50]", 50)
    np.testing.assert_array_equal(d.eval.x, images_of(batches["test_batch"])[:7])
    np.testing.assert_array_equal(d.calib.x, np.concatenate([images_of(batches["data_batch_1"]),
                                                             images_of(batches["data_batch_2"])[:10]]))
    assert d.eval_source == d.calib_source and d.eval_source["from"] == "downloaded archive"
    assert ED.STAND_INS["cifar10-test-5000"] == ("cifar10-test-full", None) and ED.CALIB_IMAGES == 4000


def test_export_data_keeps_the_users_choice(isolated, server, monkeypatch):
    serve_archive(server, monkeypatch, tar_gz(archive_members(official_batches())))
    # named by the user, so never replaced: the data folder's missing file is the error, and nothing is fetched
    msg = user_error(ED.load_export_data, "cifar10-test-5000", "cifar10-calib", eval_is_default=False,
                     calib_is_default=True)
    assert "cifar10_test_part0.npz" in msg and server.hits == 0


def test_export_data_from_the_data_folder(shared_data):
    d = ED.load_export_data("cifar10-test-5000", "cifar10-calib", 10, eval_is_default=True, calib_is_default=True)
    assert (d.eval.name, len(d.eval), d.calib.name, len(d.calib)) == ("cifar10-test-5000", 10, "cifar10-calib", 4000)
    assert d.eval_source == d.calib_source == {"from": "data folder", "path": str(shared_data)}


# --- (e) end to end, (f) ds_cnn without its data ------------------------------------------------------------------

def test_export_resnet8_without_the_data_folder(shared_data, isolated, server, monkeypatch, tmp_path, capsys):
    from flexround_mcu.cli import main

    data, cache = isolated  # FLEXROUND_MCU_DATA is the empty folder from here on
    cache.mkdir()
    shutil.copy(shared_data / "mlperf_tiny/ic/pretrainedResnet.h5", cache / "pretrainedResnet.h5")
    body = tar_gz(archive_members(official_batches()))
    url = serve_archive(server, monkeypatch, body)
    out = tmp_path / "o"
    assert main(["export", "resnet8", "--target", "host", "--method", "rtn", "--calib-size", "16", "--eval-size",
                 "32", "--test-inputs", "4", "--out", str(out)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert err.count("CIFAR-10 not in the data folder") == 1 and str(data) in err
    r = json.loads((out / "report.json").read_text())
    assert r["model_source"]["weights_found_in"] == "cache"
    assert (r["accuracy"]["dataset"], r["accuracy"]["n"]) == ("cifar10-test-full[:32]", 32)
    assert r["calibration"] == {"dataset": f"cifar10-train-full[:{5 * TRAIN_BATCH}]", "images": 16,
                                "same_as_evaluation": False}
    source = {"from": "downloaded archive", "archive": "cifar-10-python.tar.gz", "url": url,
              "sha256": hashlib.sha256(body).hexdigest(), "path": str((cache / "datasets/cifar-10-batches-py")
                                                                      .resolve()), "downloaded_now": True}
    assert r["data_source"] == {"evaluation": source, "calibration": source}
    assert r["bitexact"]["host_c"] == {"inputs": 4, "mismatches": 0}
    assert server.hits == 1


def test_ds_cnn_without_its_data_says_what_to_pass(shared_data, isolated, capsys, tmp_path):
    data, cache = isolated
    weights = str(shared_data / "mlperf_tiny/kws/kws_ref_model_float32.tflite")
    line = cli_fails_cleanly(capsys, "export", "ds_cnn", "--weights", weights, "--out", str(tmp_path / "o"))
    assert "kws01" in line and str(data) in line and "FLEXROUND_MCU_DATA" in line
    assert "pass --dataset and --calib-dataset" in line and "'x'" in line
    folder = tmp_path / "mine"
    folder.mkdir()
    np.savez(folder / "a.npz", x=np.zeros((4, 49, 10, 1), np.int8), y=np.zeros(4, np.int64))
    line = cli_fails_cleanly(capsys, "export", "ds_cnn", "--weights", weights, "--dataset", str(folder),
                             "--out", str(tmp_path / "o"))
    assert "pass --calib-dataset (" in line and "kws01" in line
    assert listing(cache) == [] and not (tmp_path / "o").exists()


def test_training_images_are_not_an_evaluation_set(shared_data, capsys, tmp_path):
    line = cli_fails_cleanly(capsys, "export", "resnet8", "--dataset", "cifar10-train-full", "--out",
                             str(tmp_path / "o"))
    assert "cifar10-train-full" in line and "calibration only" in line
