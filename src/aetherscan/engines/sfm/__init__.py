"""The sparse half of the COLMAP engine, by subject. ``aetherscan.engines.colmap_sfm`` runs these
steps in a child process, top-down; each module here is one step or one check:

- ``job``: the state a run carries from step to step (folders, dropped photos, statistics).
- ``loading``: decode, downscale, masks, cameras and the database.
- ``features``: SIFT, with the upsampled octave where a photo has little detail.
- ``matching``: which pairs to match, geometric verification, guided re-matching.
- ``mapping``: incremental and global SfM, and seeding from the best pair of photos.
- ``joining``: bringing the photos of smaller models into the largest one.
- ``quality``: how far a model agrees with itself and with the verified pairs; the verdict.
- ``result``: the npz file the parent process reads.
"""
