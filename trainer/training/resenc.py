"""nnU-Net's residual-encoder U-Net (ResEnc M/L/XL) from MONAI blocks.

Encoder: a one-convolution stem, then per stage `encoder_blocks[s]` MONAI `UnetResBlock`s
(conv-norm-act-conv-norm plus the input, projected by a strided 1x1 convolution where the
shape or width changes; nnU-Net's BasicBlockD pools before that projection instead).
Decoder: plain, as in nnU-Net: a transposed convolution, the skip concatenated, then
`decoder_convs[s]` conv-norm-act layers. Deep supervision outputs are stacked on dim 1 at
full resolution during training, exactly like MONAI's DynUNet, so the training loop and
`split_outputs` treat both networks the same way.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, UnetOutBlock, UnetResBlock
from monai.networks.blocks.dynunet_block import get_conv_layer
from torch import nn
from torch.nn.functional import interpolate

NORM = ("INSTANCE", {"affine": True})
ACT = ("leakyrelu", {"inplace": True, "negative_slope": 0.01})


def _conv(dim: int, cin: int, cout: int, kernel) -> Convolution:
    return Convolution(dim, cin, cout, strides=1, kernel_size=kernel, act=ACT, norm=NORM,
                       adn_ordering="NA", bias=True)


class ResEncUNet(nn.Module):
    def __init__(self, dim: int, in_channels: int, out_channels: int, kernels: list, strides: list,
                 filters: list[int], encoder_blocks: list[int], decoder_convs: list[int],
                 deep_supr_num: int = 0) -> None:
        super().__init__()
        n = len(strides)
        self.deep_supervision = deep_supr_num > 0
        self.deep_supr_num = max(deep_supr_num, 1)
        self.stem = _conv(dim, in_channels, filters[0], kernels[0])
        stages, cin = [], filters[0]
        for s in range(n):
            blocks = [UnetResBlock(dim, cin, filters[s], kernels[s], strides[s], NORM, ACT)]
            blocks += [UnetResBlock(dim, filters[s], filters[s], kernels[s], 1, NORM, ACT)
                       for _ in range(encoder_blocks[s] - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = filters[s]
        self.stages = nn.ModuleList(stages)
        ups, decoders, heads = [], [], []
        for s in range(n - 1, 0, -1):                     # from the bottleneck upwards
            ups.append(get_conv_layer(dim, filters[s], filters[s - 1], kernel_size=strides[s],
                                      stride=strides[s], conv_only=True, is_transposed=True,
                                      bias=True))
            convs = [_conv(dim, 2 * filters[s - 1], filters[s - 1], kernels[s - 1])]
            convs += [_conv(dim, filters[s - 1], filters[s - 1], kernels[s - 1])
                      for _ in range(decoder_convs[n - 1 - s] - 1)]
            decoders.append(nn.Sequential(*convs))
            heads.append(UnetOutBlock(dim, filters[s - 1], out_channels))
        self.ups, self.decoders, self.heads = (nn.ModuleList(ups), nn.ModuleList(decoders),
                                               nn.ModuleList(heads))
        self.apply(_init)
        for stage in self.stages:                         # nnU-Net: each residual branch starts at 0
            for block in stage:
                nn.init.zeros_(block.norm2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        levels = []                                       # decoder outputs, lowest first
        for up, dec in zip(self.ups, self.decoders):
            x = dec(torch.cat([up(x), skips.pop()], 1))
            levels.append(x)
        full = self.heads[-1](levels[-1])
        if not (self.training and self.deep_supervision):
            return full
        lower = [self.heads[i](levels[i]) for i in range(len(levels) - 2, -1, -1)]
        lower = lower[: self.deep_supr_num]
        return torch.stack([full] + [interpolate(o, full.shape[2:]) for o in lower], dim=1)


def _init(module: nn.Module) -> None:
    # He initialisation with leaky-ReLU slope 1e-2, as nnU-Net (and MONAI's DynUNet) do
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
