"""The mesh as the REST API and the CLI give it: listed with a finished job's downloads, made
once for its three formats, in metres once the job has a scale, and --mesh on the command line."""

from __future__ import annotations

import numpy as np
import trimesh
from mesh_kit import SphereEngine
from server_kit import RunningServer, make_settings, photo_bytes

import aetherscan.server.results as results
from aetherscan.cli import main

PHOTOS = {f"p{i}.jpg": photo_bytes((30 * i, 120, 90)) for i in range(8)}


def finished_job(server: RunningServer) -> str:
    files = [("files", (name, data, "image/jpeg")) for name, data in PHOTOS.items()]
    job_id = server.http.post("/api/jobs", files=files).json()["job_id"]
    assert server.wait_for_state(job_id)["state"] == "done"
    return job_id


def test_a_finished_job_lists_its_mesh_and_makes_it_once(tmp_path, monkeypatch):
    made = []

    def counting(reconstruction, **options):
        made.append(reconstruction.num_points)
        return make_mesh(reconstruction, **options)

    make_mesh = results.make_mesh
    monkeypatch.setattr(results, "make_mesh", counting)
    with RunningServer(make_settings(tmp_path), SphereEngine()) as server:
        job_id = finished_job(server)
        downloads = server.http.get(f"/api/jobs/{job_id}").json()["downloads"]
        assert downloads["mesh_ply"].endswith("/files/mesh.ply")
        assert downloads["mesh_glb"].endswith("/files/mesh.glb")
        glb = server.http.get(downloads["mesh_glb"])
        assert glb.status_code == 200 and glb.content[:4] == b"glTF"
        ply = server.http.get(downloads["mesh_ply"])
        assert ply.status_code == 200 and "mesh" in ply.headers["content-disposition"]
        (tmp_path / "mesh.ply").write_bytes(ply.content)
        mesh = trimesh.load(tmp_path / "mesh.ply", force="mesh", process=False)
        assert made == [20_000]  # one mesh for both files
        radius = np.linalg.norm(mesh.vertices, axis=1)
        assert np.median(np.abs(radius - 1)) < 0.01
        # In metres once the job has a scale: the same mesh, bigger.
        answer = server.http.put(f"/api/jobs/{job_id}/scale", json={"metres_per_unit": 0.25})
        assert answer.status_code == 200, answer.text
        (tmp_path / "metres.ply").write_bytes(server.http.get(downloads["mesh_ply"]).content)
        metres = trimesh.load(tmp_path / "metres.ply", force="mesh", process=False)
        assert np.median(np.abs(np.linalg.norm(metres.vertices, axis=1) - 0.25)) < 0.0025
        assert len(made) == 2


def test_a_mesh_that_cannot_be_made_is_a_sentence_not_an_error(tmp_path, monkeypatch):
    from aetherscan.mesh import MeshError

    def refuse(reconstruction, **options):
        raise MeshError("no surface is left after trimming: the points are too sparse for a mesh")

    monkeypatch.setattr(results, "make_mesh", refuse)
    with RunningServer(make_settings(tmp_path), SphereEngine()) as server:
        job_id = finished_job(server)
        answer = server.http.get(f"/api/jobs/{job_id}/files/mesh.glb")
        assert answer.status_code == 409
        assert "too sparse for a mesh" in answer.json()["detail"]
        assert server.http.get(f"/api/jobs/{job_id}/files/scene.ply").status_code == 200


def test_reconstruct_writes_the_mesh_it_is_asked_for(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, data in PHOTOS.items():
        (photos / name).write_bytes(data)
    out = tmp_path / "out"
    code = main(
        [
            *("reconstruct", str(photos), "-o", str(out / "scene.ply")),
            *("--mesh", str(out / "mesh.glb"), "--engine", "mesh_kit:SphereEngine"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    (mesh,) = trimesh.load(out / "mesh.glb", process=False).geometry.values()
    assert len(mesh.faces) > 1000
    assert "mesh.glb" in capsys.readouterr().err
    # A format that is no mesh is refused before any work is done.
    code = main(["reconstruct", str(photos), "--mesh", str(out / "mesh.stl")])
    assert code == 2
    assert ".ply, .glb or .obj" in capsys.readouterr().err
