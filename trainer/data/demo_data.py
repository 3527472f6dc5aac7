"""A synthetic CT dataset in the nnU-Net v2 raw layout, generated (never downloaded).

It behaves like abdominal CT where it matters to the pipeline: anisotropic voxels (thick
slices), a rotated, non-axis-aligned affine with flipped in-plane axes (as DICOM-derived
NIfTI files have), HU intensities with noise, a body in air, an organ (label 1, large) and
a lesion inside it (label 2, small, hyperdense), and case-to-case variation of shape, size,
position and spacing. Intensities are kept well apart (learnable in minutes). Small enough that a fold trains on 2 CPU cores in about a minute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS = {"background": 0, "organ": 1, "lesion": 2}
DATASET_NAME = "Dataset900_Demo"


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation mostly about the body axis, plus a small gantry-like tilt."""
    a = np.deg2rad(rng.uniform(12, 30)) * rng.choice([-1, 1])
    t = np.deg2rad(rng.uniform(3, 8))
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return rz @ rx


def make_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image int16 HU, label uint8, affine) of one case; arrays indexed (i, j, k) = (x, y, slice)."""
    nk = int(rng.integers(24, 31))                 # slices
    ni, nj = int(rng.integers(64, 77)), int(rng.integers(64, 77))
    inplane = rng.uniform(0.75, 0.95)
    thick = rng.uniform(2.5, 3.5)
    spacing = np.array([inplane, inplane, thick])

    i, j, k = np.meshgrid(np.arange(ni), np.arange(nj), np.arange(nk), indexing="ij")
    x, y, z = i * spacing[0], j * spacing[1], k * spacing[2]      # mm
    cx, cy = ni * spacing[0] / 2, nj * spacing[1] / 2
    cz = nk * spacing[2] / 2

    # body: an elliptic cylinder filling most of the field of view
    bx, by = rng.uniform(0.40, 0.46) * ni * spacing[0], rng.uniform(0.36, 0.44) * nj * spacing[1]
    body = ((x - cx) / bx) ** 2 + ((y - cy) / by) ** 2 <= 1

    # organ: a rotated ellipsoid on one side of the body
    ox = cx + rng.uniform(-0.15, 0.15) * bx
    oy = cy + rng.uniform(-0.15, 0.1) * by
    oz = cz + rng.uniform(-0.1, 0.1) * nk * spacing[2]
    rox, roy = rng.uniform(0.50, 0.65) * bx, rng.uniform(0.50, 0.65) * by
    roz = rng.uniform(0.32, 0.44) * nk * spacing[2]
    phi = rng.uniform(0, np.pi)
    u = (x - ox) * np.cos(phi) + (y - oy) * np.sin(phi)
    v = -(x - ox) * np.sin(phi) + (y - oy) * np.cos(phi)
    organ = (u / rox) ** 2 + (v / roy) ** 2 + ((z - oz) / roz) ** 2 <= 1
    organ &= body

    # lesion(s): small spheres inside the organ, radius >= ~8 voxels in-plane
    lesion = np.zeros_like(organ)
    inside = np.argwhere(organ)
    for _ in range(int(rng.integers(1, 3))):
        r = rng.uniform(7.5, 10.0)                                   # mm
        c = inside[int(rng.integers(len(inside)))] * spacing
        lesion |= (((x - c[0]) ** 2 + (y - c[1]) ** 2) / r ** 2
                   + (z - c[2]) ** 2 / max(r, 2.0 * thick) ** 2) <= 1
    lesion &= organ

    label = np.zeros((ni, nj, nk), np.uint8)
    label[organ] = 1
    label[lesion] = 2

    hu = np.full((ni, nj, nk), -1000.0)
    hu[body] = rng.uniform(20, 50)                                   # soft tissue / fat mix
    hu[body & (((x - cx) / bx) ** 2 + ((y - cy) / by) ** 2 > 0.8)] = rng.uniform(-110, -80)  # fat rim
    hu[organ] = rng.uniform(110, 150)                                # enhanced parenchyma
    hu[lesion] = rng.uniform(230, 260)                               # hyperdense lesion
    hu += rng.normal(0, rng.uniform(10, 16), hu.shape)               # quantum noise
    image = np.clip(np.round(hu), -1024, 3071).astype(np.int16)

    # world = R @ diag(flip * spacing) @ ijk + t: LPS-like flipped in-plane axes, rotated
    rot = _rotation(rng)
    direction = rot @ np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(spacing)
    affine[:3, 3] = rng.uniform(-200, 200, 3)
    return image, label, affine


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def write_demo_dataset(out: str | Path, seed: int = 0, n_train: int = 24, n_test: int = 6) -> Path:
    """Write the dataset into `out` (the dataset folder itself); returns it."""
    out = Path(out)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for n in range(n_train + n_test):
        # one generator per case: the same seed gives the same case whatever the counts
        rng = np.random.default_rng([seed, n])
        image, label, affine = make_case(rng)
        split = ("Tr", n) if n < n_train else ("Ts", n)
        case = f"Demo_{n:03d}"
        _save(image, affine, out / f"images{split[0]}" / f"{case}_0000.nii.gz")
        _save(label, affine, out / f"labels{split[0]}" / f"{case}.nii.gz")
    meta = {
        "name": DATASET_NAME,
        "description": "foldwatch synthetic CT demo (organ + lesion), generated by "
                       "`python -m trainer make-demo-data`",
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": n_train,
        "file_ending": ".nii.gz",
        "seed": seed,
    }
    from contracts.jsonio import atomic_write_json
    atomic_write_json(out / "dataset.json", meta)
    return out
