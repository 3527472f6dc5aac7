"""Label sets wider than int8: 130 labels through preprocessing, the cache, sampling and the loss."""

import json

import numpy as np
import torch

from trainer.data.geometry import class_locations, preprocess_arrays
from trainer.data.geometry import seg_dtype
from trainer.data.labelmaps import to_label_map
from trainer.planning.plans import ChannelNorm, Plan
from trainer.training.loader import PatchBatches
from trainer.training.loss import dice_ce

N = 130


def test_cache_dtype_follows_the_label_count():
    assert seg_dtype(1) == np.uint8 and seg_dtype(255) == np.uint8
    assert seg_dtype(256) == np.int16 and seg_dtype(N) == np.uint8


def test_130_labels_survive_preprocessing_sampling_and_the_loss(tmp_path):
    rng = np.random.default_rng(0)
    shape = (24, 20, 12)                                    # file order (i, j, k)
    seg = np.zeros(shape, np.int16)
    seg.reshape(-1)[: N * 10] = np.repeat(np.arange(1, N + 1), 10)   # blocks of every label
    images = (rng.normal(size=shape) + seg / 10).astype(np.float32)[None]
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    labels = {"background": 0} | {f"l{i}": i for i in range(1, N + 1)}
    plan = Plan("3d_fullres", 3, [2.5, 1.0, 1.0], [8, 16, 16], 2, [1, 1, 1], [], [], [],
                [ChannelNorm("MR", "zscore")], labels, ["MR"])
    data, pseg, props = preprocess_arrays(images, affine, plan, seg)
    assert pseg.dtype == np.uint8 and set(np.unique(pseg)) == set(range(N + 1))
    np.save(tmp_path / "a_data.npy", data)
    np.save(tmp_path / "a_seg.npy", pseg)
    props["class_locations"] = class_locations(pseg, plan.foreground_labels, 0)
    (tmp_path / "a.json").write_text(json.dumps(props))
    batches = PatchBatches(tmp_path, ["a"], plan.patch_size, plan.foreground_labels, 2, 0.5, seed=1)
    batch = batches[0]
    assert batch["label"].dtype == torch.int64 and int(batch["label"].max()) > 0
    logits = torch.zeros((2, N + 1, 8, 16, 16), requires_grad=True)
    loss = dice_ce(logits, batch["label"])
    loss.backward()
    assert torch.isfinite(loss) and logits.grad.abs().sum() > 0
    # above 255 the cache widens to int16 and the values stay exact
    wide = np.array([0, 300, 1000], np.int16)
    assert seg_dtype(int(wide.max())) == np.int16
    probs = np.eye(3, dtype=np.float32)[[2, 0, 1]].T        # argmax -> classes 2, 0, 1 ... per voxel
    assert to_label_map(probs, [0, 300, 1000]).tolist() == [1000, 0, 300]
