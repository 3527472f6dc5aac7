"""Network, loss, sampling, augmentation and inference pieces on tiny arrays."""

import numpy as np
import pytest
import torch

from trainer.training.augment import AugmentPlan, augment, region_extent, spatial_matrix
from trainer.inference.sliding_window import predict_probabilities
from trainer.training.loader import PatchBatches, epoch_loader, oversampled
from trainer.training.loss import dice_ce, soft_dice
from trainer.training.network import build_network, deep_supervision_weights
from trainer.planning.plans import Plan
from trainer.training.sampling import sample_patch
from train_fixture import write_experiment

torch.set_num_threads(1)


def _plan(tmp_path, dim=3) -> tuple[Plan, object]:
    exp = write_experiment(tmp_path, dim=dim)
    name = "2d" if dim == 2 else "3d_fullres"
    root = exp.parent / "results/tiny"
    return Plan.load(root / "plans" / f"{name}.json"), root / "preprocessed" / name


def test_deep_supervision_weights_follow_nnunet():
    w = deep_supervision_weights(4)
    assert w[-1] == 0 and abs(sum(w) - 1) < 1e-9
    assert w[0] == pytest.approx(2 * w[1]) and w[1] == pytest.approx(2 * w[2])
    assert deep_supervision_weights(1) == [1.0]


def test_dice_ignores_background_and_is_perfect_for_a_perfect_prediction():
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:5, 2:5] = 1
    logits = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 50
    assert soft_dice(logits, target) == pytest.approx(1.0, abs=1e-4)
    assert dice_ce(logits, target) < 1e-3
    assert soft_dice(-logits, target) < 0.01


@pytest.mark.parametrize("dim", [2, 3])
def test_network_outputs_and_inference_shapes(tmp_path, dim):
    plan, folder = _plan(tmp_path, dim)
    net = build_network(plan, deep_supervision=True).train()
    x = torch.zeros(2, 1, *plan.patch_size)
    out = net(x)
    assert out.shape[:3] == (2, len(plan.strides) - 1, 3)
    data = np.random.default_rng(0).normal(size=(1, 12, 20, 40)).astype(np.float32)
    probs = predict_probabilities([net, net], data, plan, mirror=True, overlap=0.5)
    assert probs.shape == (3, 12, 20, 40) and probs.dtype == np.float32
    assert np.allclose(probs.sum(0), 1, atol=1e-4)


def test_mirroring_makes_prediction_flip_equivariant(tmp_path):
    plan, _ = _plan(tmp_path, 3)
    net = build_network(plan, deep_supervision=False).eval()
    data = np.random.default_rng(1).normal(size=(1, 16, 32, 32)).astype(np.float32)
    a = predict_probabilities([net], data, plan, mirror=True)
    b = predict_probabilities([net], np.ascontiguousarray(data[:, :, ::-1]), plan, mirror=True)
    assert np.allclose(a[:, :, ::-1], b, atol=1e-5)


def test_foreground_oversampling_and_padding(tmp_path):
    plan, folder = _plan(tmp_path, 3)
    data = np.load(folder / "case_000_data.npy")
    seg = np.load(folder / "case_000_seg.npy")
    import json
    props = json.loads((folder / "case_000.json").read_text())
    rng = np.random.default_rng(0)
    for _ in range(20):
        img, lab = sample_patch(data, seg, props, [8, 16, 16], [1, 2], True, rng)
        assert img.shape == (1, 8, 16, 16) and (lab > 0).any()
    img, lab = sample_patch(data, seg, props, [24, 40, 40], [1, 2], False, rng)
    assert img.shape == (1, 24, 40, 40) and lab.shape == (24, 40, 40)
    assert (img[:, :4] == 0).all()  # padded outside the volume
    assert [oversampled(j, 2, 0.33) for j in range(2)] == [False, True]
    assert [oversampled(j, 3, 0.33) for j in range(3)] == [False, False, True]


def test_augment_keeps_shapes_and_labels(tmp_path):
    rng = np.random.default_rng(3)
    aug = AugmentPlan.for_patch([8, 16, 16])
    seg = (rng.random((8, 16, 16)) > 0.5).astype(np.uint8)
    for _ in range(20):
        matrix = spatial_matrix(rng, aug)
        ext = region_extent(matrix, [8, 16, 16])
        img = rng.normal(size=(1, *ext)).astype(np.float32)
        region = (rng.random(ext) > 0.5).astype(np.uint8)
        a, s = augment(img, region, rng, aug, matrix, [8, 16, 16])
        assert a.shape == (1, 8, 16, 16) and s.shape == seg.shape and a.dtype == np.float32
        assert set(np.unique(s)) <= {0, 1}


def test_batches_do_not_depend_on_worker_count_or_start(tmp_path):
    plan, folder = _plan(tmp_path, 3)
    cases = [f"case_{i:03d}" for i in range(6)]
    src = PatchBatches(folder, cases, plan.patch_size, [1, 2], 2, 0.33, seed=5)
    inline = [b["image"] for b in epoch_loader(src, 3, 0, 4, 0)]
    workers = [b["image"] for b in epoch_loader(src, 3, 2, 4, 2)]
    assert torch.equal(inline[2], workers[0]) and torch.equal(inline[3], workers[1])
    other_epoch = next(iter(epoch_loader(src, 4, 0, 1, 0)))["image"]
    assert not torch.equal(other_epoch, inline[0])


@pytest.mark.gpu
def test_amp_training_step_on_cuda(tmp_path):
    from contracts.experiment import load_experiment
    from trainer.runtime.runlog import RunLog
    from trainer.training.loop import FoldTrainer
    exp = load_experiment(write_experiment(tmp_path, epochs=1, ipe=2))
    cfg = exp.configurations["3d_fullres"]
    plan, folder = _plan(tmp_path / "p", 3)
    with RunLog(tmp_path / "run", configuration="3d_fullres", fold=0) as log:
        t = FoldTrainer(plan=plan, cfg=cfg, folder=folder, train_cases=["case_000", "case_001"],
                        val_cases=["case_002"], fold_dir=tmp_path / "run", log=log,
                        device=torch.device("cuda"), batch_size=2, grad_accumulation=1)
        assert t.amp and t.scaler.is_enabled()
        losses = [t.step(t.train_data[i]) for i in range(3)]
        assert all(np.isfinite(losses))
        assert t.checkpoint_state()["scaler"]["scale"] > 0


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    plan, _ = _plan(tmp_path, 3)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        net = build_network(plan, grad_checkpointing=ckpt).train()
        x = torch.randn(2, 1, *plan.patch_size, generator=torch.Generator().manual_seed(1))
        net(x).square().mean().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_data_workers_auto_is_inline_on_the_cpu_and_a_number_is_kept(monkeypatch):
    from trainer.runtime.device import data_workers
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)))
    assert data_workers("auto", torch.device("cpu")) == 0
    assert data_workers("auto", torch.device("cuda")) == 8
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert data_workers("auto", torch.device("cuda")) == 1
    assert data_workers(3, torch.device("cpu")) == 3
