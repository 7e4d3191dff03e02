"""Photos and results in S3-compatible object storage (moto's standalone server on loopback):
a worker that shares no disk with the server runs a job end to end."""

from __future__ import annotations

import pytest
from queue_kit import S3Server, cluster, post_job, wait_until
from server_kit import photo_bytes

from aetherscan.server.storage import StorageError
from aetherscan.workers.blobs import S3Blobs, open_blobs

pytestmark = pytest.mark.slow

PHOTOS = {f"p{i}.jpg": photo_bytes((50 * i, 90, 200 - 50 * i)) for i in range(3)}


@pytest.fixture
def s3(tmp_path):
    server = S3Server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_a_worker_without_the_servers_disk_runs_a_job_through_object_storage(tmp_path, s3):
    with cluster(tmp_path / "cluster", s3.env("scans")) as running:
        worker_disk = tmp_path / "worker-disk"  # not the server's data folder
        running.worker("a", data_dir=worker_disk)
        http = running.serve()
        running.wait_ready("a")
        job_id = post_job(http, PHOTOS)
        status = running.wait_for(job_id, ("done", "failed"))
        assert status["state"] == "done", status
        results = s3.keys(f"scans/jobs/{job_id}/result/")
        assert f"scans/jobs/{job_id}/result/reconstruction.npz" in results
        assert f"scans/jobs/{job_id}/result/scene.ply" in results
        # The photos leave the bucket with the job's inputs; the server serves the result.
        wait_until(lambda: not s3.keys(f"scans/jobs/{job_id}/photos/"), 10, "the photos to go")
        ply = http.get(f"/api/jobs/{job_id}/files/scene.ply")
        assert ply.status_code == 200
        assert (
            ply.content
            == s3.client.get_object(Bucket="scans", Key=f"scans/jobs/{job_id}/result/scene.ply")[
                "Body"
            ].read()
        )
        assert not list(worker_disk.glob("jobs/*"))  # the worker kept nothing of its own
        # A delete empties the bucket of the job.
        assert http.delete(f"/api/jobs/{job_id}").status_code in (202, 204)
        wait_until(lambda: not s3.keys(f"scans/jobs/{job_id}/"), 10, "the job to leave the bucket")


def test_an_object_store_that_cannot_be_reached_is_a_sentence_not_a_hang(tmp_path, monkeypatch):
    from queue_kit import free_port

    for name, value in S3Server.credentials().items():
        monkeypatch.setenv(name, value)
    blobs = open_blobs("s3://scans/prefix", tmp_path, f"http://127.0.0.1:{free_port()}")
    assert isinstance(blobs, S3Blobs)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTOS["p0.jpg"])
    with pytest.raises(StorageError, match=r"object storage.*could not be reached") as caught:
        blobs.upload(photo, "jobs/x/photos/0000.jpg")
    assert caught.value.status == 503
    assert "127.0.0.1" not in str(caught.value)


def test_a_storage_url_that_is_not_s3_is_refused_with_the_setting_named(tmp_path):
    with pytest.raises(ValueError, match=r"s3://bucket/prefix.*storage_url"):
        open_blobs("gs://bucket", tmp_path)
