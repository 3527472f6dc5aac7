"""Training batches from DataLoader worker processes, reproducible for exact resume.

Every sample is drawn from its own generator seeded by (seed, epoch, iteration, index in
the batch), so the data of an iteration does not depend on which worker made it, on the
number of workers, nor on where a resumed run starts inside an epoch.
"""

from __future__ import annotations

import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from trainer.inference.cascade import load_previous, one_hot
from trainer.training.augment import AugmentPlan, augment, region_extent, spatial_matrix
from trainer.training.cascade_augment import augment_previous_stage
from trainer.planning.preprocessed import load_case
from trainer.training.sampling import sample_patch

VALIDATION_STREAM = 1_000_003  # keeps validation draws apart from training iterations


def oversampled(index: int, batch: int, fraction: float) -> bool:
    """nnU-Net: the last `fraction` of each batch must contain foreground."""
    return index >= round(batch * (1 - fraction))


class PatchBatches(Dataset):
    """Item i = the whole effective batch of iteration i of `epoch`."""

    def __init__(self, folder, cases: list[str], patch_size: list[int], labels: list[int],
                 batch: int, oversample: float, seed: int, augment_data: bool = True,
                 previous=None) -> None:
        self.folder, self.cases = folder, list(cases)
        self.previous = previous          # cascade: folder of the previous stage's label maps
        self.patch_size, self.labels = list(patch_size), list(labels)
        self.batch, self.oversample, self.seed = batch, oversample, seed
        self.augment_data = augment_data
        self.aug = AugmentPlan.for_patch(patch_size)
        self.epoch, self.length = 0, 0
        self._cache: dict[str, tuple] = {}

    def __len__(self) -> int:
        return self.length

    def _case(self, case: str):
        if case not in self._cache:
            data, seg, props = load_case(self.folder, case, mmap=True)
            prev = load_previous(self.previous, case) if self.previous is not None else None
            self._cache[case] = (data, seg, props, prev)
        return self._cache[case]

    def sample(self, iteration: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, iteration, index])
        case = self.cases[int(rng.integers(len(self.cases)))]
        data, seg, props, prev = self._case(case)
        force = oversampled(index, self.batch, self.oversample)
        if prev is not None:
            return self._cascade_sample(data, seg, props, prev, force, rng)
        if not self.augment_data:
            return sample_patch(data, seg, props, self.patch_size, self.labels, force, rng)
        # the spatial transform is drawn first: it decides how large a region to cut
        matrix = spatial_matrix(rng, self.aug)
        extent = region_extent(matrix, self.patch_size)
        img, lab = sample_patch(data, seg, props, self.patch_size, self.labels, force, rng, extent)
        return augment(img, lab, rng, self.aug, matrix, self.patch_size)

    def _cascade_sample(self, data, seg, props, prev, force, rng):
        """A patch with the previous stage appended one-hot (nnU-Net's cascade)."""
        if not self.augment_data:
            img, lab, prv = sample_patch(data, seg, props, self.patch_size, self.labels, force,
                                         rng, extra=prev)
            return np.concatenate([img, one_hot(prv, self.labels)]), lab
        matrix = spatial_matrix(rng, self.aug)
        extent = region_extent(matrix, self.patch_size)
        img, lab, prv = sample_patch(data, seg, props, self.patch_size, self.labels, force, rng,
                                     extent, extra=prev)
        # The previous stage takes the label map's spatial transform and mirroring, warped as
        # a label map of its own (nnU-Net's SpatialTransform treats each segmentation channel
        # on its own).
        img, lab, prv = augment(img, lab, rng, self.aug, matrix, self.patch_size, extra=prv)
        onehot = augment_previous_stage(one_hot(prv, self.labels), rng)
        return np.concatenate([img, onehot]), lab

    def __getitem__(self, iteration: int) -> dict:
        pairs = [self.sample(iteration, j) for j in range(self.batch)]
        return {"image": torch.from_numpy(np.stack([p[0] for p in pairs])),
                "label": torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))}


def _worker_init(_: int) -> None:
    # Stopping is the main process's job: it finishes the iteration and shuts workers down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    torch.set_num_threads(1)


def epoch_loader(source: PatchBatches, epoch: int, start: int, stop: int,
                 num_workers: int) -> DataLoader:
    """Batches start..stop-1 of `epoch`, made ahead by `num_workers` processes (0: inline)."""
    source.epoch, source.length = epoch, stop
    return DataLoader(source, batch_size=None, sampler=range(start, stop),
                      num_workers=num_workers, worker_init_fn=_worker_init if num_workers else None,
                      prefetch_factor=2 if num_workers else None, persistent_workers=False)
