"""Labels of client filenames, the data folder's index and its recovery after a crash."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aetherscan.server.storage import RESTARTED, SCRATCH_PREFIX, Storage, is_job_id
from aetherscan.server.uploads import MAX_LABEL_CHARS, make_label


@given(st.text(max_size=400), st.sets(st.text(max_size=20), max_size=5))
def test_labels_are_printable_short_unique_and_never_paths(filename, taken):
    label = make_label(filename, taken, len(taken))
    assert label and label not in taken
    assert len(label) <= MAX_LABEL_CHARS + 8  # room for " (n)"
    assert "/" not in label and "\\" not in label and label not in (".", "..")
    assert label.isprintable()


def test_labels_examples():
    assert make_label("IMG_0001.JPG", set(), 0) == "IMG_0001.JPG"
    assert make_label("a.jpg", {"a.jpg", "a (2).jpg"}, 2) == "a (3).jpg"
    assert make_label("no-extension", {"no-extension"}, 1) == "no-extension (2)"
    long = make_label("y" * 5000 + ".jpeg", set(), 0)
    assert len(long) == MAX_LABEL_CHARS and long.endswith(".jpeg")
    assert make_label("\x00\x01", set(), 4) == "photo-5.jpg"


def test_job_ids_never_reach_the_filesystem_unchecked(tmp_path):
    storage = Storage(tmp_path)
    for bad in ("../x", "a/b", "", "x" * 100, "abc\x00def" * 3, ".." * 10):
        assert not is_job_id(bad)
        assert storage.get(bad) is None and not storage.delete(bad)
    storage.close()


def test_recovery_fails_unfinished_jobs_and_keeps_finished_ones(tmp_path):
    storage = Storage(tmp_path)
    ids = {state: f"job-{state:0<20}" for state in ("done", "queued", "running", "cancelled")}
    for state, job_id in ids.items():
        storage.create_job(job_id, engine="e", client="c", source="rest")
        storage.add_photo(job_id, label="a.jpg", data=b"xx", extension=".jpg", width=20, height=20)
        if state == "done":
            storage.finish(job_id, num_points=3, views=[], dropped=[])
        else:
            storage.set_state(job_id, state)
    storage.close()

    again = Storage(tmp_path)
    assert again.get(ids["done"]).state == "done"
    assert again.get(ids["cancelled"]).state == "cancelled"
    for state in ("queued", "running"):
        record = again.get(ids[state])
        assert record.state == "failed" and record.error == RESTARTED
        assert record.finished_at is not None
        assert not again.photos_dir(ids[state]).exists()
    assert [p.label for p in again.photos(ids["done"])] == ["a.jpg"]
    assert again.photos(ids["done"])[0].path.name == "0000.jpg"
    again.close()


def test_expired_lists_jobs_finished_before_a_time(tmp_path):
    storage = Storage(tmp_path)
    storage.create_job("finished-0000000000000", engine="e", client="c", source="ws")
    storage.create_job("unfinished-000000000000", engine="e", client="c", source="ws")
    storage.set_state("finished-0000000000000", "failed", error="x")
    import time

    assert storage.expired(time.time() + 1) == ["finished-0000000000000"]
    assert storage.expired(time.time() - 100) == []
    storage.close()


def test_recovery_removes_half_written_results_and_exports(tmp_path):
    """A process killed while writing a job's results, or while making an export of a done job,
    leaves partial files; the next start removes them and keeps the finished results."""
    storage = Storage(tmp_path)
    for job_id in ("running-000000000000000", "finished-00000000000000"):
        storage.create_job(job_id, engine="e", client="c", source="ws")
        storage.result_dir(job_id).mkdir()
        (storage.result_dir(job_id) / "scene.ply").write_bytes(b"ply\n")
    storage.set_state("running-000000000000000", "running")
    storage.finish("finished-00000000000000", num_points=1, views=[], dropped=[])
    scratch = storage.result_dir("finished-00000000000000") / f"{SCRATCH_PREFIX}abc"
    scratch.mkdir()
    (scratch / "scene.glb").write_bytes(b"half")
    storage.close()

    again = Storage(tmp_path)
    assert not again.job_dir("running-000000000000000").joinpath("result").exists()
    assert again.get("running-000000000000000").state == "failed"
    kept = again.result_dir("finished-00000000000000")
    assert [p.name for p in kept.iterdir()] == ["scene.ply"]
    again.close()
