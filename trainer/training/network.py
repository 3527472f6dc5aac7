"""The segmentation network of a plan: MONAI DynUNet with nnU-Net's deep-supervision weights."""

from __future__ import annotations

import torch
from monai.networks.nets import DynUNet
from torch.utils.checkpoint import checkpoint

from trainer.planning.plans import Plan


def deep_supervision_heads(plan: Plan) -> int:
    """Extra decoder outputs below full resolution (nnU-Net supervises every decoder level)."""
    return max(0, len(plan.strides) - 2)


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """nnU-Net: weight 1/2^i per resolution, the lowest one 0, normalised to sum 1."""
    w = [1.0 / (2 ** i) for i in range(n_outputs)]
    if n_outputs > 1:
        w[-1] = 0.0
    total = sum(w)
    return [x / total for x in w]


class _Checkpointed(torch.nn.Module):
    """Recompute a block's activations in backward (saves memory for large patches)."""

    def __init__(self, block: torch.nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            return checkpoint(self.block, x, use_reentrant=False)
        return self.block(x)


def build_network(plan: Plan, *, deep_supervision: bool = True,
                  grad_checkpointing: bool = False) -> torch.nn.Module:
    """The plan's network (DynUNet, or ResEncUNet for the ResEnc presets), 2d or 3d."""
    dim = plan.dim
    kernels = [k[-dim:] for k in plan.kernel_sizes]
    strides = [s[-dim:] for s in plan.strides]
    heads = deep_supervision_heads(plan) if deep_supervision else 0
    if plan.network == "resenc":
        from trainer.training.resenc import ResEncUNet
        net = ResEncUNet(dim, plan.in_channels, plan.num_classes, kernels, strides,
                         list(plan.filters), list(plan.encoder_blocks), list(plan.decoder_convs),
                         deep_supr_num=heads)
        if grad_checkpointing:
            net.stages = torch.nn.ModuleList(_Checkpointed(b) for b in net.stages)
        return net
    net = DynUNet(
        spatial_dims=dim,
        in_channels=plan.in_channels,
        out_channels=plan.num_classes,
        kernel_size=kernels,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=list(plan.filters),
        norm_name=("INSTANCE", {"affine": True}),
        act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
        deep_supervision=heads > 0,
        deep_supr_num=max(heads, 1),
    )
    if grad_checkpointing:
        net.input_block = _Checkpointed(net.input_block)
        net.downsamples = torch.nn.ModuleList(_Checkpointed(b) for b in net.downsamples)
    return net


def split_outputs(out: torch.Tensor) -> list[torch.Tensor]:
    """DynUNet stacks deep-supervision outputs on dim 1 in training; list them, full res first."""
    if out.dim() == 0:
        return [out]
    return [out[:, i] for i in range(out.shape[1])]
