#!/usr/bin/env python3
"""Export the golden conformance fixtures for pteron.

Run:  conformance/.venv/bin/python conformance/export_fixtures.py [--only CASE ...] [--list]

Every case is exported with the stock ExecuTorch flow and no partitioner:

    torch.export.export -> executorch.exir.to_edge_transform_and_lower -> .to_executorch()

so the resulting program only uses portable ATen kernels. For each case the
script writes into fixtures/<case>/:

    program.pte        the program (or a relative path to another case's .pte in meta.json)
    *.ptd              external tensor data, for cases exported with external constants
    in_<i>.npy         inputs of run 0 (logical C-order arrays, even for channels-last inputs)
    ref_<i>.npy        outputs of the ExecuTorch runtime (executorch.runtime) for run 0
    eager_<i>.npy      outputs of eager PyTorch for run 0
    run<r>/...         the same three kinds of files for run r >= 1 (meta.json "runs" > 1)
    meta.json          method, program, ptd, atol, rtol, runs, ops, input_dim_orders, notes

and regenerates fixtures/INDEX.md, fixtures/ops_union.txt and fixtures/SKIPPED.md
from whatever is on disk. The whole fixture set must stay under 15 MB.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.export import Dim
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SIZE_LIMIT = 15 * 1024 * 1024
GENERATED = {"INDEX.md", "ops_union.txt", "SKIPPED.md"}


# --------------------------------------------------------------------------
# Case description
# --------------------------------------------------------------------------


@dataclass
class MethodSpec:
    model: nn.Module
    runs: List[tuple]  # one tuple of inputs per run; run 0 is also the export example
    dynamic_shapes: Any = None


@dataclass
class Spec:
    methods: Dict[str, MethodSpec]
    atol: Optional[float] = 1e-4  # None: max(1e-5, 1e-3 * max |ref output| of run 0)
    rtol: float = 1e-4
    notes: str = ""
    external_constants: bool = False
    # names of mutable buffers whose initial value must be serialized (InitializedMutableBufferPass)
    init_buffers: Optional[List[str]] = None
    # per-method notes appended to `notes` (multi-method programs)
    method_notes: Dict[str, str] = field(default_factory=dict)


CASES: Dict[str, Callable[[], Spec]] = {}


def case(name: str):
    def deco(fn):
        assert name not in CASES, name
        CASES[name] = fn
        return fn

    return deco


def single(model, *runs, dynamic_shapes=None, **kw) -> Spec:
    return Spec(methods={"forward": MethodSpec(model, list(runs), dynamic_shapes)}, **kw)


def bit_exact(model, x, notes: str) -> Spec:
    """One forward run on `x`, compared with atol = rtol = 0 (ops whose ExecuTorch arithmetic pteron reproduces)."""
    return single(model, (x,), atol=0.0, rtol=0.0, notes=notes)


def seed_for(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def randomize_norms(model: nn.Module) -> nn.Module:
    """Give normalisation layers non-trivial statistics/affine params so the
    fixtures actually exercise them (fresh layers are identity-like)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.1)
                    m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand_like(m.weight) + 0.5)
                    m.bias.copy_(torch.randn_like(m.bias) * 0.1)
            elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(1.0 + 0.1 * torch.randn_like(m.weight))
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(0.1 * torch.randn_like(m.bias))
    return model


def rn(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


# --------------------------------------------------------------------------
# Basics
# --------------------------------------------------------------------------


class Add(nn.Module):
    def forward(self, x, y):
        return x + y


@case("add")
def _():
    return single(Add(), (rn(2, 3, 4), rn(2, 3, 4)), notes="elementwise add of two f32 tensors")


class AddBroadcast(nn.Module):
    def forward(self, x, y):
        return x + y * 2.5, x - y, x * y, x / (y.abs() + 1.0)


@case("add_broadcast")
def _():
    return single(
        AddBroadcast(),
        (rn(2, 3, 4), rn(3, 1)),
        notes="broadcasting add/sub/mul/div with a scalar alpha and a [3,1] rhs",
    )


@case("mlp")
def _():
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    return single(m, (rn(4, 16),), notes="Linear+ReLU MLP 16->32->32->10, batch 4")


class Softmaxes(nn.Module):
    def forward(self, x):
        return F.softmax(x, dim=-1), F.log_softmax(x, dim=1), F.softmax(x, dim=0)


@case("softmax")
def _():
    return single(Softmaxes(), (rn(3, 5, 7) * 3,), notes="softmax over last/first dim, log_softmax over a middle dim")


class Matmuls(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(6))

    def forward(self, a, b, c, v):
        mm = a @ b  # [4,5]@[5,6]
        bmm = torch.bmm(c, c.transpose(1, 2))  # [2,3,4]x[2,4,3]
        addmm = torch.addmm(self.bias, a, b, beta=0.5, alpha=2.0)
        mv = a @ v  # matrix-vector
        bcast = c @ a  # [2,3,4]@[4,5] -> broadcast matmul
        return mm, bmm, addmm, mv, bcast


@case("matmul")
def _():
    return single(
        Matmuls(),
        (rn(4, 5), rn(5, 6), rn(2, 3, 4), rn(5)),
        notes="mm, bmm, addmm(beta=0.5, alpha=2), matrix-vector and broadcast batched matmul",
    )


# --------------------------------------------------------------------------
# torchvision classifiers (small configs, num_classes=10)
# --------------------------------------------------------------------------

IMG = (1, 3, 64, 64)
DEEP = dict(atol=None, rtol=1e-3)
DEEP_NOTE = (
    " Tolerance: rtol 1e-3 and atol = max(1e-5, 1e-3 * max|ref|) (deep net: kernels sum in different orders; "
    "atol scaled to the output because these randomly initialised heads give small logits)."
)


@case("mobilenet_v2")
def _():
    from torchvision.models import mobilenet_v2

    m = randomize_norms(mobilenet_v2(weights=None, width_mult=0.25, num_classes=10))
    return single(m, (rn(*IMG),), notes="torchvision mobilenet_v2(width_mult=0.25, num_classes=10), 1x3x64x64." + DEEP_NOTE, **DEEP)


@case("mobilenet_v3_small")
def _():
    from torchvision.models import mobilenet_v3_small

    m = randomize_norms(mobilenet_v3_small(weights=None, width_mult=0.25, num_classes=10))
    return single(
        m, (rn(*IMG),), notes="torchvision mobilenet_v3_small(width_mult=0.25, num_classes=10): hardswish, SE blocks." + DEEP_NOTE, **DEEP
    )


@case("efficientnet")
def _():
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig

    setting = [
        MBConvConfig(1, 3, 1, 16, 8, 1),
        MBConvConfig(4, 3, 2, 8, 16, 2),
        MBConvConfig(4, 5, 2, 16, 24, 1),
        MBConvConfig(4, 3, 2, 24, 32, 1),
    ]
    m = randomize_norms(EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=64))
    return single(
        m, (rn(*IMG),), notes="torchvision EfficientNet with a tiny custom MBConv setting (SiLU, SE, stochastic depth in eval)." + DEEP_NOTE, **DEEP
    )


class MiniSqueezeNet(nn.Module):
    """SqueezeNet 1.1 topology (torchvision Fire modules, ceil-mode max pools,
    final conv classifier + adaptive avg pool) with 1/4 of the channels; the
    stock squeezenet1_1 is ~3 MB even with 10 classes."""

    def __init__(self, num_classes=10):
        super().__init__()
        from torchvision.models.squeezenet import Fire

        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(16, 4, 16, 16),
            Fire(32, 4, 16, 16),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(32, 8, 32, 32),
            Fire(64, 8, 32, 32),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(64, 12, 48, 48),
            Fire(96, 16, 64, 64),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Conv2d(128, num_classes, kernel_size=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


@case("squeezenet1_1")
def _():
    return single(
        MiniSqueezeNet(),
        (rn(*IMG),),
        notes="SqueezeNet 1.1 topology built from torchvision Fire modules with 1/4 channels (stock squeezenet1_1 would be ~3 MB): "
        "cat, ceil_mode max_pool2d, adaptive avg pool." + DEEP_NOTE,
        **DEEP,
    )


@case("shufflenet_v2")
def _():
    from torchvision.models.shufflenetv2 import ShuffleNetV2

    m = randomize_norms(ShuffleNetV2([2, 2, 2], [24, 24, 48, 96, 256], num_classes=10))
    return single(
        m,
        (rn(*IMG),),
        notes="torchvision ShuffleNetV2 class (channel shuffle, chunk, depthwise convs) with stages_out_channels "
        "[24,24,48,96,256] (x0_5 is [24,48,96,192,1024]; reduced to keep the fixture small)." + DEEP_NOTE,
        **DEEP,
    )


@case("regnet")
def _():
    from torchvision.models.regnet import BlockParams, RegNet

    bp = BlockParams.from_init_params(depth=4, w_0=16, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25)
    m = randomize_norms(RegNet(bp, num_classes=10, stem_width=16))
    return single(m, (rn(*IMG),), notes="torchvision RegNet class with tiny BlockParams (depth 4, w_0 16, group width 8, SE 0.25)." + DEEP_NOTE, **DEEP)


@case("vit")
def _():
    from torchvision.models.vision_transformer import VisionTransformer

    m = randomize_norms(
        VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10)
    )
    with torch.no_grad():  # zero-init head would make the output constant
        m.heads.head.weight.normal_(0, 0.2)
        m.heads.head.bias.normal_(0, 0.1)
        m.class_token.normal_(0, 0.2)
    return single(
        m,
        (rn(1, 3, 32, 32),),
        notes="torchvision VisionTransformer(image_size=32, patch_size=8, 2 layers, 2 heads, hidden 32, mlp 64); head and "
        "class token re-initialised randomly (torchvision zero-inits them)." + DEEP_NOTE,
        **DEEP,
    )


@case("convnext")
def _():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    setting = [CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, None, 1)]
    m = randomize_norms(ConvNeXt(setting, stochastic_depth_prob=0.1, layer_scale=0.5, num_classes=10))
    return single(
        m,
        (rn(*IMG),),
        notes="torchvision ConvNeXt class, block setting 16->32->64 with 1 block each, layer_scale 0.5: depthwise 7x7 conv, "
        "LayerNorm2d (permute + layer_norm), Linear on channels-last views." + DEEP_NOTE,
        **DEEP,
    )


class SmallResNet(nn.Module):
    """ResNet-18 topology with torchvision BasicBlocks (widths 8/16/32/64,
    one block per stage). torchvision's ResNet class hard-codes 64..512 widths,
    which would be ~20 MB, so the stem/layers are rebuilt here with the same ops."""

    def __init__(self, widths=(8, 16, 32, 64), num_classes=10):
        super().__init__()
        from torchvision.models.resnet import BasicBlock, conv1x1

        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        layers = []
        inp = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or inp != w:
                down = nn.Sequential(conv1x1(inp, w, stride), nn.BatchNorm2d(w))
            layers.append(nn.Sequential(BasicBlock(inp, w, stride, down), BasicBlock(w, w)))
            inp = w
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inp, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layers(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


@case("resnet")
def _():
    return single(
        randomize_norms(SmallResNet()),
        (rn(*IMG),),
        notes="ResNet-18 topology (2 torchvision BasicBlocks per stage, 1x1 downsample) with widths 8/16/32/64; "
        "torchvision's ResNet class hard-codes 64..512 channels." + DEEP_NOTE,
        **DEEP,
    )


# --------------------------------------------------------------------------
# Sequence models
# --------------------------------------------------------------------------


class EncoderPadMask(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

    def forward(self, x, pad_mask):
        return self.enc(x, src_key_padding_mask=pad_mask)


@case("transformer_encoder_padmask")
def _():
    m = randomize_norms(EncoderPadMask())
    x = rn(2, 6, 32)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 4:] = True
    mask[1, 5:] = True
    return single(
        m,
        (x, mask),
        notes="nn.TransformerEncoder(d_model 32, nhead 4, ff 64, 2 layers, batch_first) with a bool src_key_padding_mask "
        "input (True = padded). Output rows at padded positions are still defined (only keys are masked).",
        atol=1e-3,
        rtol=1e-3,
    )


class EncoderCausal(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=32, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True, norm_first=True, activation="gelu"
        )
        self.enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

    def forward(self, x):
        s = x.shape[1]
        mask = torch.triu(torch.full((s, s), float("-inf")), diagonal=1)
        # is_causal=True skips TransformerEncoder's data-dependent "is this mask causal?" check, which
        # torch.export cannot trace (GuardOnDataDependentSymNode).
        return self.enc(x, mask=mask, is_causal=True)


@case("transformer_encoder_causal")
def _():
    return single(
        randomize_norms(EncoderCausal()),
        (rn(2, 7, 32),),
        notes="nn.TransformerEncoder(d_model 32, nhead 4, 2 layers, batch_first, norm_first, gelu) with an additive causal "
        "mask built in-graph (full(-inf) + triu).",
        atol=1e-3,
        rtol=1e-3,
    )


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(input_size=8, hidden_size=12, num_layers=2, batch_first=True)
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        y, (h, c) = self.rnn(x)
        return self.head(y), h, c


@case("lstm")
def _():
    return single(LSTMNet(), (rn(2, 5, 8),), notes="nn.LSTM(8->12, 2 layers, batch_first) + Linear head; outputs y, h_n, c_n", atol=1e-4, rtol=1e-4)


class GRUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(input_size=8, hidden_size=12, num_layers=2, batch_first=True)

    def forward(self, x, h0):
        y, h = self.rnn(x, h0)
        return y, h


@case("gru")
def _():
    return single(GRUNet(), (rn(2, 5, 8), rn(2, 2, 12) * 0.5), notes="nn.GRU(8->12, 2 layers, batch_first) with explicit h0 input; outputs y, h_n")


# --------------------------------------------------------------------------
# Conv stacks
# --------------------------------------------------------------------------


class AudioNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv1d(1, 8, kernel_size=9, stride=2, padding=4),
            nn.BatchNorm1d(8),
            nn.GELU(),
            nn.Conv1d(8, 16, kernel_size=5, stride=2, padding=2, dilation=1),
            nn.ReLU(),
            nn.Conv1d(16, 16, kernel_size=3, padding=2, dilation=2, groups=4),
            nn.Tanh(),
        )
        self.dec = nn.Sequential(
            nn.ConvTranspose1d(16, 8, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.1),
            nn.ConvTranspose1d(8, 1, kernel_size=5, stride=2, padding=2, output_padding=1),
        )

    def forward(self, x):
        z = self.enc(x)
        return self.dec(z), z.mean(dim=-1)


@case("audio_conv1d")
def _():
    return single(
        randomize_norms(AudioNet()),
        (rn(2, 1, 128),),
        notes="Conv1d encoder (stride, dilation, groups, BatchNorm1d, GELU) + ConvTranspose1d decoder (output_padding)",
    )


class SegNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.ln = nn.LayerNorm(16)
        self.up = nn.ConvTranspose2d(16, 8, kernel_size=2, stride=2)
        self.c3 = nn.Conv2d(8 * 4, 4, 1)

    def forward(self, x):
        a = F.relu(self.gn(self.c1(x)))  # [N,8,H,W]
        b = self.c2(F.pad(a, (0, 0, 0, 0), mode="constant"))  # [N,16,H/2,W/2]
        # .contiguous(): without it the permuted result keeps channels-last strides, ExecuTorch gives it dim
        # order [0,2,3,1] and the portable slice_copy kernel below rejects mixed dim orders.
        b = self.ln(b.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
        u = self.up(F.silu(b))  # [N,8,H,W]
        h, w = x.shape[-2:]
        bl = F.interpolate(b[:, :8], size=(h, w), mode="bilinear", align_corners=False)
        bt = F.interpolate(b[:, 8:], scale_factor=2.0, mode="bilinear", align_corners=True)
        nn_ = F.interpolate(b[:, :8], scale_factor=2, mode="nearest")
        cat = torch.cat([u, bl, bt, nn_], dim=1)
        pc = F.pad(cat, (1, 2, 0, 1), mode="constant", value=0.25)
        pr = F.pad(cat, (2, 1, 1, 2), mode="reflect")
        pp = F.pad(cat, (1, 1, 2, 0), mode="replicate")
        y = self.c3(pc[..., :h, :w] + pr[..., 1 : h + 1, 1 : w + 1] + pp[..., :h, :w])
        return y


@case("segnet")
def _():
    return single(
        randomize_norms(SegNet()),
        (rn(1, 3, 16, 20),),
        notes="segmentation-like net: GroupNorm, LayerNorm over channels (permute), ConvTranspose2d, F.interpolate "
        "(bilinear align_corners False/True, nearest), F.pad constant/reflect/replicate. The permute back after the "
        "LayerNorm is followed by .contiguous(): without it the tensor keeps channels-last strides, ExecuTorch assigns "
        "it dim order [0,2,3,1] and the reference's slice_copy fails ('2 input tensors have different dim orders').",
        atol=1e-4,
        rtol=1e-4,
    )


# --------------------------------------------------------------------------
# Op zoo
# --------------------------------------------------------------------------


class ZooIndex(nn.Module):
    def forward(self, x, idx, mask):
        # x [4,6,5] f32, idx [4,3] int64 in [0,4), mask [4,6,5] bool
        w = torch.where(mask, x, -x)
        w2 = torch.where(x > 0, x, torch.zeros_like(x))
        g = torch.gather(x, 1, idx.unsqueeze(-1).expand(4, 3, 5))
        adv1 = x[:, idx[0]]  # index.Tensor with a leading slice
        adv2 = x[idx[:, 0], idx[:, 1]]  # two index tensors
        isel = torch.index_select(x, 2, idx[1] % 5)
        tv, ti = torch.topk(x, 3, dim=-1)
        tv2, ti2 = torch.topk(x, 2, dim=1, largest=False)
        amax = x.argmax(dim=1)
        amin = x.argmin(dim=-1, keepdim=True)
        mf = x.masked_fill(mask, 0.5)
        sl = x[1:3, ::2, 1]
        sel = x[:, -1]
        nar = x.narrow(2, 1, 3)
        return w, w2, g, adv1, adv2, isel, tv, ti, tv2, ti2, amax, amin, mf, sl, sel, nar


@case("zoo_index")
def _():
    x = rn(4, 6, 5)
    idx = torch.randint(0, 4, (4, 3), dtype=torch.int64)
    mask = torch.rand(4, 6, 5) > 0.5
    return single(
        ZooIndex(),
        (x, idx, mask),
        notes="where, gather, advanced indexing (index.Tensor), index_select, topk (largest/smallest), argmax/argmin, "
        "masked_fill, slice with step, select, narrow; int64 index input and bool mask input",
    )


class ZooReduce(nn.Module):
    def forward(self, x, e):
        # x [3,4,5], e [3,4,5] (exponent)
        outs = [
            torch.cumsum(x, dim=1),
            torch.cumsum(x, dim=-1),
            torch.clamp(x, -0.5, 0.7),
            torch.clamp(x, min=0.1),
            x.clamp(max=-0.2),
            torch.pow(x.abs() + 0.5, e),
            torch.pow(x, 2),
            torch.pow(x.abs(), 0.5),
            torch.pow(2.0, e),
            torch.logsumexp(x, dim=1),
            torch.logsumexp(x, dim=(0, 2), keepdim=True),
            x.var(dim=1),
            x.var(dim=(0, 2), keepdim=True, unbiased=False),
            x.std(dim=-1),
            x.std(dim=0, keepdim=True, correction=0),
            x.mean(dim=(1, 2)),
            x.mean(dim=-1, keepdim=True),
            x.mean(),
            x.sum(dim=0),
            x.sum(dim=(0, 1), keepdim=True),
            x.sum(),
            x.amax(dim=1),
            x.amax(dim=(0, 2), keepdim=True),
            x.amin(dim=-1),
            x.max(dim=2).values,
            x.max(dim=2).indices,
            x.min(dim=0, keepdim=True).values,
            torch.max(x),
            torch.min(x),
            x.prod(dim=1),
            torch.linalg.vector_norm(x, dim=-1),
        ]
        return tuple(outs)


@case("zoo_reduce")
def _():
    return single(
        ZooReduce(),
        (rn(3, 4, 5), rn(3, 4, 5) * 0.5),
        notes="cumsum, clamp (both/min/max), pow tensor^tensor, tensor^scalar, scalar^tensor, logsumexp, var/std "
        "(unbiased and correction=0), mean/sum/amax/amin with dims and keepdim, full reductions (0-d outputs), "
        "max/min with indices, prod, vector_norm",
    )


class ZooShape(nn.Module):
    def forward(self, x, y):
        # x [2,3,4], y [2,3,4]
        c0 = torch.cat([x, y], dim=0)
        c2 = torch.cat([x, y, x], dim=-1)
        st = torch.stack([x, y], dim=1)
        s1, s2 = torch.split(x, [1, 3], dim=2)
        ch = torch.chunk(y, 3, dim=1)
        ub = torch.unbind(x, dim=0)
        pm = x.permute(2, 0, 1)
        tr = x.transpose(0, 2)
        ex = x[:, :1, :].expand(2, 5, 4)
        rp = x.repeat(2, 1, 3)
        fl = torch.flip(x, dims=[0, 2])
        ro = torch.roll(x, shifts=1, dims=2)
        ro2 = torch.roll(x, shifts=(-1, 2), dims=(0, 1))
        vw = x.reshape(6, 4).t()
        fl2 = x.flatten(1)
        us = x.unsqueeze(1).squeeze(1).unsqueeze(-1)
        pc = F.pad(x, (1, 2, 0, 1), value=-1.0)
        pr = F.pad(x.unsqueeze(0), (1, 1, 2, 1), mode="reflect")
        pe = F.pad(x.unsqueeze(0), (2, 0, 0, 1), mode="replicate")
        p1 = F.pad(x, (2, 1), mode="reflect")
        return (c0, c2, st, s1, s2) + tuple(ch) + tuple(ub) + (pm, tr, ex, rp, fl, ro, ro2, vw, fl2, us, pc, pr, pe, p1)


@case("zoo_shape")
def _():
    return single(
        ZooShape(),
        (rn(2, 3, 4), rn(2, 3, 4)),
        notes="cat/stack/split/chunk/unbind, permute/transpose/expand/repeat/flip/roll, reshape+t, flatten, "
        "unsqueeze/squeeze, pad constant (value -1)/reflect/replicate (2-d and 1-d). Some outputs are views in eager.",
    )


class ZooUnary(nn.Module):
    def forward(self, x):
        p = x.abs() + 0.1
        outs = [
            torch.abs(x),
            torch.neg(x),
            torch.exp(x),
            torch.log(p),
            torch.sqrt(p),
            torch.rsqrt(p),
            torch.sin(x),
            torch.cos(x),
            torch.tanh(x),
            torch.sigmoid(x),
            F.gelu(x),
            F.gelu(x, approximate="tanh"),
            torch.erf(x),
            F.hardswish(x),
            F.hardsigmoid(x),
            F.silu(x),
            F.elu(x),
            F.elu(x, alpha=0.5),
            F.leaky_relu(x, 0.05),
            F.relu(x),
            F.relu6(x * 4),
            F.hardtanh(x, -0.5, 0.5),
            F.softplus(x),
            torch.floor(x * 3),
            torch.ceil(x * 3),
            torch.round(x * 3),
            torch.trunc(x * 3),
            torch.sign(x),
            torch.reciprocal(p),
            torch.log1p(p),
            torch.expm1(x),
            torch.log2(p),
            torch.atan(x),
            torch.asin(x.clamp(-0.9, 0.9)),
            x.square(),
        ]
        return tuple(outs)


@case("zoo_unary")
def _():
    return single(
        ZooUnary(),
        (rn(4, 7) * 2,),
        notes="unary elementwise: abs/neg/exp/log/sqrt/rsqrt/sin/cos/tanh/sigmoid/gelu(none,tanh)/erf/hardswish/"
        "hardsigmoid/silu/elu/leaky_relu/relu/relu6/hardtanh/softplus/floor/ceil/round/trunc/sign/reciprocal/"
        "log1p/expm1/log2/atan/asin/square (log-like ops on |x|+0.1)",
    )


class ZooBinary(nn.Module):
    def forward(self, a, b):
        d = b.abs() + 0.5
        m1 = a > 0
        m2 = b < 0.3
        outs = [
            torch.remainder(a * 4, d),
            torch.fmod(a * 4, d),
            torch.floor_divide(a * 4, d),
            torch.div(a, d, rounding_mode="trunc"),
            torch.div(a, d, rounding_mode="floor"),
            torch.remainder(a, 0.75),
            torch.maximum(a, b),
            torch.minimum(a, b),
            torch.atan2(a, b),
            a > b,
            a >= 0.25,
            a < b,
            a <= b,
            a == torch.round(a),
            a != b,
            torch.logical_and(m1, m2),
            torch.logical_or(m1, m2),
            torch.logical_not(m1),
            torch.logical_xor(m1, m2),
            m1 & m2,
            m1 | m2,
            torch.where(m1 & ~m2, a, b),
            torch.isnan(a / d),
            (m1.float() * 2 + m2.float()),
            torch.lerp(a, b, 0.3),
        ]
        return tuple(outs)


@case("zoo_binary")
def _():
    return single(
        ZooBinary(),
        (rn(4, 6), rn(4, 6)),
        notes="remainder/fmod/floor_divide/div rounding modes (divisor |b|+0.5), maximum/minimum/atan2, comparisons "
        "producing bool outputs, logical and/or/not/xor, bitwise &/| on bool, isnan, bool->float casts, lerp",
    )


class ZooCreate(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)

    def forward(self, x, ids):
        # x [2,8,4,4] f32, ids [2,5] int64
        n = x.shape[-1]
        ar = torch.arange(n, dtype=torch.float32)
        ar2 = torch.arange(1, 2 * n, 2)
        fu = torch.full((2, n), 1.5)
        z = torch.zeros(3, n) + x[0, 0, 0]
        o = torch.ones(n, 2, dtype=torch.int64) * ids[0, :1]
        zl = torch.zeros_like(x[0]) + 2
        ol = torch.ones_like(ids)
        e = self.emb(ids)
        tl = torch.tril(x[0, 0])
        tu = torch.triu(x[0, 0], diagonal=1)
        ps = F.pixel_shuffle(x, 2)
        pu = F.pixel_unshuffle(ps, 2)
        ey = torch.eye(3) * 2
        return ar + x[0, 0, 0], ar2, fu, z, o, zl, ol, e, tl, tu, ps, pu, ey


@case("zoo_create")
def _():
    return single(
        ZooCreate(),
        (rn(2, 8, 4, 4), torch.randint(0, 10, (2, 5))),
        notes="in-graph arange/full/zeros/ones/zeros_like/ones_like/eye (may be constant-folded by the exporter: "
        "see ops), embedding, tril/triu, pixel_shuffle/pixel_unshuffle",
    )


class ZooPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.ln = nn.LayerNorm([5, 7])
        self.gn = nn.GroupNorm(1, 3)
        self.inorm = nn.InstanceNorm2d(3, affine=True)

    def forward(self, x):
        # x [2,3,10,11]
        mp, mi = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
        mpc = F.max_pool2d(x, 2, stride=2, ceil_mode=True)
        mpd = F.max_pool2d(x, 3, stride=1, dilation=2)
        ap = F.avg_pool2d(x, 3, stride=2, padding=1)
        apc = F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        apd = F.avg_pool2d(x, 2, divisor_override=3)
        aap = F.adaptive_avg_pool2d(x, (1, 1))
        aap2 = F.adaptive_avg_pool2d(x, (5, 5))
        aap3 = F.adaptive_avg_pool2d(x, (3, 4))
        mp1 = F.max_pool1d(x[:, :, 0], 2)
        ap1 = F.avg_pool1d(x[:, :, 0], 3, stride=2)
        bn = self.bn(x)
        ln = self.ln(x[..., :5, :7])
        lnf = F.layer_norm(x, (11,), eps=1e-3)
        gn = self.gn(x)
        gn2 = F.group_norm(x.repeat(1, 2, 1, 1), 3)
        ins = self.inorm(x)
        return mp, mi, mpc, mpd, ap, apc, apd, aap, aap2, aap3, mp1, ap1, bn, ln, lnf, gn, gn2, ins


@case("zoo_pool_norm")
def _():
    return single(
        randomize_norms(ZooPool()),
        (rn(2, 3, 10, 11),),
        notes="max_pool2d with indices (padding), ceil_mode, dilation; avg_pool2d padding/ceil_mode/count_include_pad=False/"
        "divisor_override; adaptive_avg_pool2d (1x1, non-divisible 3x4, 5x5), 1-d pools; "
        "batch norm (eval, random running stats), layer_norm, group_norm, instance_norm. adaptive_max_pool2d was "
        "dropped: it is not in the Core ATen opset, so to_edge rejects it.",
    )


class ZooMisc(nn.Module):
    def forward(self, x, y):
        # x [3,8], y [3,8]
        return (
            x.to(torch.int64),  # truncation cast
            (x * 10).to(torch.int32),
            x.to(torch.float16).to(torch.float32),
            x.to(torch.bool),
            torch.clamp_min(x, 0.0) + torch.clamp_max(y, 0.0),
            torch.addcmul(x, x, y, value=0.5),
            torch.addcdiv(x, x, y.abs() + 1, value=0.5),
            x.contiguous(memory_format=torch.contiguous_format) * y,
            torch.einsum("ij,kj->ik", x, y),
            torch.nn.functional.normalize(x, dim=-1),
            torch.nn.functional.cosine_similarity(x, y, dim=-1),
            (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1),
            torch.nn.functional.one_hot(x.argmax(-1), 8),
            torch.any(x > 1.5, dim=1),
            torch.all(x > -2.0, dim=1),
            torch.count_nonzero(x > 0, dim=1),
        )


@case("zoo_misc")
def _():
    return single(
        ZooMisc(),
        (rn(3, 8), rn(3, 8)),
        notes="casts (f32->i64/i32/f16/bool), clamp_min/max, addcmul/addcdiv, einsum, normalize, "
        "cosine_similarity, pairwise squared distance, one_hot, any/all/count_nonzero. torch.sort was dropped: "
        "the reference runtime has no aten::sort.values kernel (method load fails with 'Missing operator').",
    )


class ZooConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.same = nn.Conv2d(4, 6, 3, padding="same", dilation=2)
        self.refl = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect", groups=2)
        self.circ = nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular", bias=False)
        self.rect = nn.Conv2d(4, 8, (1, 3), stride=(2, 1), padding=(0, 1))
        self.dw = nn.Conv2d(4, 8, 3, groups=4)
        self.t1 = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.t2 = nn.ConvTranspose2d(4, 2, (2, 3), stride=(1, 2), dilation=2, bias=False)
        self.c1 = nn.Conv1d(4, 3, 1)

    def forward(self, x):
        # x [2,4,9,10]
        return (
            self.same(x),
            self.refl(x),
            self.circ(x),
            self.rect(x),
            self.dw(x),
            self.t1(x),
            self.t2(x),
            self.c1(x.flatten(2)),
            F.conv2d(x, self.dw.weight, stride=3, padding=2, groups=4),
        )


@case("zoo_conv")
def _():
    return single(
        ZooConv(),
        (rn(2, 4, 9, 10),),
        notes="convolution variants: padding='same' with dilation, padding_mode reflect (groups 2) and circular (no bias), "
        "rectangular kernel/stride, depthwise with multiplier 2, conv_transpose2d with groups/output_padding and with "
        "dilation + rectangular stride, 1x1 conv1d, functional conv2d stride 3 padding 2",
    )


class ZooScatter(nn.Module):
    def forward(self, x, perm, src):
        # x [4,5] f32, perm [4,5] int64 (a permutation of 0..4 per row), src [4,5] f32
        s = x.scatter(1, perm[:, :2], src[:, :2])
        sv = x.scatter(1, perm[:, :3], 1.5)
        sa = x.scatter_add(1, perm[:, :3] % 2, src[:, :3])  # duplicate targets accumulate
        rows = perm[0, :2] % 4
        ip = x.index_put((rows,), src[0], accumulate=True)
        ip2 = x.index_put((perm[1, :2] % 4, perm[2, :2]), torch.tensor(7.0))
        ia = x.index_add(0, perm[:3, 0] % 4, src[:3], alpha=2.0)
        return s, sv, sa, ip, ip2, ia


@case("zoo_scatter")
def _():
    perm = torch.stack([torch.randperm(5) for _ in range(4)])
    return single(
        ZooScatter(),
        (rn(4, 5), perm, rn(4, 5)),
        notes="scatter (src and value), scatter_add with duplicate targets, index_put (accumulate, and two index tensors "
        "with a scalar value), index_add with alpha. Non-accumulating writes use unique indices "
        "(row permutations) so the result is well defined. scatter_reduce was dropped: the reference has no "
        "aten::scatter_reduce.two_out kernel.",
    )


class ZooAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, q, k, v, keep, kpm):
        # q [2,2,5,8], k/v [2,2,6,8]; keep [5,6] bool (True = attend); kpm [2,6] bool (True = ignore)
        a = F.scaled_dot_product_attention(q, k, v)
        b = F.scaled_dot_product_attention(q, k[:, :, :5], v[:, :, :5], is_causal=True)
        c = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        d = F.scaled_dot_product_attention(q, k, v, attn_mask=keep.float() * 0.5, scale=0.3)
        x = q.transpose(1, 2).reshape(2, 5, 16)
        mem = k.transpose(1, 2).reshape(2, 6, 16)
        e, w = self.mha(x, mem, mem, key_padding_mask=kpm, need_weights=True)
        return a, b, c, d, e, w


@case("zoo_attention")
def _():
    keep = torch.rand(5, 6) > 0.3
    keep[:, 0] = True
    kpm = torch.zeros(2, 6, dtype=torch.bool)
    kpm[0, 4:] = True
    return single(
        ZooAttention(),
        (rn(2, 2, 5, 8), rn(2, 2, 6, 8), rn(2, 2, 6, 8), keep, kpm),
        notes="F.scaled_dot_product_attention plain, is_causal, bool attn_mask, float additive mask with custom scale; "
        "nn.MultiheadAttention cross-attention with key_padding_mask and need_weights (head-averaged weights output)",
    )


class ZooUpsample(nn.Module):
    def forward(self, x):
        # x [1,2,5,6]
        return (
            F.interpolate(x, size=(7, 9), mode="nearest"),
            F.interpolate(x, scale_factor=1.5, mode="bilinear", align_corners=False),
            F.interpolate(x, size=(3, 4), mode="bilinear", align_corners=False),
            F.interpolate(x, size=(8, 11), mode="bilinear", align_corners=True),
            F.interpolate(x, size=(10, 12), mode="nearest-exact"),
            F.interpolate(x, size=(9, 9), mode="bicubic", align_corners=False),
            F.interpolate(x[:, :, 0], size=13, mode="linear", align_corners=False),
            F.interpolate(x[:, :, 0], scale_factor=2, mode="nearest"),
        )


@case("zoo_upsample")
def _():
    return single(
        ZooUpsample(),
        (rn(1, 2, 5, 6),),
        notes="interpolate: nearest to a non-integer ratio, bilinear scale 1.5 / downscale / align_corners, nearest-exact, "
        "bicubic, 1-d linear and nearest",
    )


# --------------------------------------------------------------------------
# dtype cases
# --------------------------------------------------------------------------


class Int64Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.fc = nn.Linear(8, 5)

    def forward(self, ids):
        logits = self.fc(self.emb(ids))  # [2,6,5]
        am = logits.argmax(dim=-1)  # int64
        arith = ids * 3 + 7 - ids // 2
        rem = ids % 5
        s = ids.sum(dim=1)
        mx = torch.maximum(ids, am)
        cmp = ids > am
        return logits, am, arith, rem, s, mx, cmp, ids.float().mean(dim=1)


@case("dtype_int64")
def _():
    return single(
        Int64Net(),
        (torch.randint(0, 20, (2, 6), dtype=torch.int64),),
        notes="int64 input ids -> embedding -> linear -> argmax (int64 out); int64 arithmetic (mul/add/sub/floor_divide/"
        "remainder/sum/maximum/compare) and int64->float cast",
    )


class Int32Net(nn.Module):
    def forward(self, a, b):
        c = a * 2 + b
        d = torch.bitwise_and(a, b) | 1
        e = a.to(torch.float32) / 3.0
        f = torch.where(a > b, a, b)
        g = (a - b).abs()
        h = a.sum(dim=-1, dtype=torch.int32)
        i = torch.clamp(a, -5, 5)
        j = a // 3
        return c, d, e, f, g, h, i, j, a.to(torch.int64)


@case("dtype_int32")
def _():
    return single(
        Int32Net(),
        (torch.randint(-20, 20, (3, 5), dtype=torch.int32), torch.randint(-20, 20, (3, 5), dtype=torch.int32)),
        notes="int32 inputs/outputs: mul/add, bitwise_and/or, cast to f32 and i64, where, abs, sum with dtype=int32, "
        "clamp, floor_divide (negative operands)",
    )


class BoolMaskNet(nn.Module):
    def forward(self, x, m):
        a = x.masked_fill(~m, -1e4)
        s = F.softmax(a, dim=-1)
        cnt = m.sum(dim=-1)
        mm = m & (x > 0)
        any_ = m.any(dim=1)
        return s, cnt, mm, any_, torch.where(m, x, 0.0), m.float()


@case("dtype_bool")
def _():
    m = torch.rand(3, 6) > 0.4
    m[:, 0] = True
    return single(
        BoolMaskNet(),
        (rn(3, 6), m),
        notes="bool mask input: masked_fill(~mask), masked softmax, sum of bool (int64), bool and, any, where with a "
        "scalar, bool->float",
    )


class HalfNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        y = F.relu(self.conv(x))
        y = y.mean(dim=(2, 3))
        y = torch.tanh(self.fc1(y))
        return F.softmax(self.fc2(y), dim=-1), y


@case("dtype_f16")
def _():
    m = HalfNet().half()
    return single(
        m,
        (rn(2, 3, 8, 8, dtype=torch.float16),),
        notes="float16 model (.half()), f16 in and out: conv, relu, mean, linear, tanh, softmax. Tolerance 1e-2: "
        "half precision accumulation differs between kernels (eager CPU upcasts internally in some ops).",
        atol=1e-2,
        rtol=1e-2,
    )


class HalfZoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 6)

    def forward(self, x, y):
        # x, y [3,4,8] f16
        p = x.abs() + 0.25
        return (
            x + y,
            x * y - y,
            x / (y.abs() + 1),
            torch.exp(x * 0.5),
            torch.log(p),
            torch.sqrt(p),
            torch.tanh(x),
            torch.sigmoid(x),
            F.gelu(x),
            F.silu(x),
            F.relu(x),
            x.sum(dim=-1),
            x.mean(dim=1, keepdim=True),
            x.amax(dim=-1),
            x.argmax(dim=-1),
            F.softmax(x, dim=-1),
            F.log_softmax(x, dim=-1),
            self.ln(x),
            self.fc(x),
            x @ y.transpose(1, 2),
            torch.cat([x, y], dim=1),
            x.permute(2, 0, 1),
            torch.where(x > y, x, y),
            x > 0,
            x.to(torch.float32),
            torch.clamp(x, -0.5, 0.5),
            torch.cumsum(x, dim=-1),
        )


@case("dtype_f16_zoo")
def _():
    m = randomize_norms(HalfZoo()).half()
    return single(
        m,
        (rn(3, 4, 8, dtype=torch.float16), rn(3, 4, 8, dtype=torch.float16)),
        notes="common ops in float16 (inputs, weights and outputs f16): arithmetic, exp/log/sqrt/tanh/sigmoid/gelu/silu/"
        "relu, sum/mean/amax/argmax, softmax/log_softmax, layer_norm, linear, bmm, cat/permute, where, compare, "
        "cast to f32, clamp, cumsum. Tolerance 1e-2 (f16 has ~3 significant digits; kernels may accumulate in f32).",
        atol=1e-2,
        rtol=1e-2,
    )


class IntZoo(nn.Module):
    def forward(self, a, b):
        # a, b int64 [3,6] in [-9, 9]; b nonzero
        return (
            a + b,
            a - 2 * b,
            a * b,
            torch.div(a, b, rounding_mode="floor"),
            torch.div(a, b, rounding_mode="trunc"),
            torch.remainder(a.abs(), b.abs()),  # negative operands: see quirk_int_remainder
            torch.fmod(a, b),
            a / b,  # true division -> float32
            a.abs(),
            -a,
            torch.sign(a),
            torch.clamp(a, -3, 4),
            torch.maximum(a, b),
            a.sum(dim=0),
            a.prod(dim=1),
            a.cumsum(dim=1),
            a.amax(dim=1),
            a.argmin(dim=1),
            torch.topk(a * 10 + torch.arange(6), 2, dim=1).values,
            a == b,
            a >= 0,
            torch.where(a > 0, a, b),
            a.pow(2),
            torch.bitwise_xor(a, b),
            a.to(torch.int32) * 3,
            a.to(torch.uint8),
            a.float().mean(dim=1),
            torch.gather(a, 1, (b.abs() % 6)),
        )


@case("dtype_int_zoo")
def _():
    a = torch.randint(-9, 10, (3, 6), dtype=torch.int64)
    b = torch.randint(1, 10, (3, 6), dtype=torch.int64) * (torch.randint(0, 2, (3, 6)) * 2 - 1)
    return single(
        IntZoo(),
        (a, b),
        notes="int64 ops: add/sub/mul, floor and trunc division and fmod with negative operands, remainder on "
        "non-negative operands (the reference's integer remainder with negative operands differs from PyTorch: see "
        "quirk_int_remainder), true division to f32, abs/neg/sign, "
        "clamp, maximum, sum/prod/cumsum/amax/argmin, topk on ints, compare, where, pow, bitwise_xor, casts to "
        "int32 and uint8 (wrapping negative values), mean of a float cast, gather",
    )


class ExactFloatOps(nn.Module):
    def forward(self, x):
        ms = x.pow(2).mean(-1, keepdim=True)
        return (
            torch.exp(x - 3.0),
            torch.sigmoid(x),
            F.silu(x),
            torch.tanh(x),
            torch.softmax(x, -1),
            x.mean(-1, keepdim=True),
            x.mean(0, keepdim=True),
            F.hardswish(x),
            x / 6.0,
            x * torch.rsqrt(ms + 1e-5),
        )


@case("exact_float_ops")
def _():
    return bit_exact(
        ExactFloatOps(),
        rn(16, 288) * 3,
        "float32 portable ops whose ExecuTorch results pteron reproduces bit for bit (atol = rtol = 0): exp and "
        "sigmoid/silu (glibc's expf arithmetic), tanh (the platform tanhf), softmax (exp, sum in element order, "
        "division), mean (sum in element order), hardswish and division by a constant (a multiply by the f32 "
        "reciprocal, as ExecuTorch's div does for a one-element divisor), pow(x, 2) (powf), RMSNorm",
    )


class ExactNormOps(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.w = nn.Parameter(torch.randn(288, generator=g))
        self.b = nn.Parameter(torch.randn(288, generator=g))

    def forward(self, x):
        s = x[:, :100] + 0.7
        return (
            F.layer_norm(x + 0.7, (288,), self.w, self.b, 1e-5),
            F.layer_norm(x, (288,)),
            F.layer_norm(s, (100,), self.w[:100], self.b[:100], 1e-5),
            F.layer_norm(s, (100,)),
            F.gelu(x),
            F.gelu(x, approximate="tanh"),
            torch.erf(x),
            F.log_softmax(x, -1),
            F.log_softmax(x[:, :13], -1),
            F.log_softmax(x[:, :5], -1),
            F.log_softmax(x, 0),
        )


@case("exact_norm_ops")
def _():
    return bit_exact(
        ExactNormOps(),
        rn(16, 288) * 3,
        "float32 ops whose ExecuTorch 1.5.1 results pteron reproduces bit for bit (atol = rtol = 0): layer_norm "
        "below 256 elements (plain sums, x^2 mean minus squared mean, divide by the std) and from 256 on (the "
        "8-lane Welford cascade of ExecuTorch's optimized kernel, then x*rstd - rstd*mean), with and without weight "
        "and bias; exact gelu and erf (glibc 2.36's erff arithmetic); tanh gelu (the platform tanhf); log_softmax over the last dim (exp(x - max) "
        "summed in 8 lanes, lanes in order, then (x - max) - log(sum)) and over another dim (element order)",
    )


class ExactSumOps(nn.Module):
    def forward(self, x):
        return (
            x.sum(-1),
            x[:, :103].sum(-1, keepdim=True),
            x.sum(0),
            x.sum(),
            x.sum((0, 1)),
            x.reshape(16, 2, 144).sum(1),
            x.var(-1),
            x.var(0, unbiased=False),
            x.var((0, 1), correction=2),
            x[:1, :1].var(-1),
        )


@case("exact_sum_ops")
def _():
    return bit_exact(
        ExactSumOps(),
        rn(16, 288) * 3 + 1.0,
        "float32 sum as ExecuTorch 1.5.1 adds (atol = rtol = 0): over one innermost dim in 8 lanes, lanes "
        "added in order, then the tail (its optimized sum); over a strided dim, all dims or several dims, in "
        "element order (its portable sum); var as its portable kernel computes it (two passes in element order, "
        "the division by n - correction in double; NaN when that is not positive)",
    )


class IntRemainder(nn.Module):
    def forward(self, a, b):
        return torch.remainder(a, b), torch.remainder(a, 4), torch.remainder(a.float(), b.float())


@case("quirk_int_remainder")
def _():
    a = torch.tensor([[7, -7, 7, -7, 0, 3, -3, 9]], dtype=torch.int64)
    b = torch.tensor([[3, 3, -3, -3, 5, -2, 2, 9]], dtype=torch.int64)
    return single(
        IntRemainder(),
        (a, b),
        notes="KNOWN DIVERGENCE of the reference: the portable aten::remainder kernels on int64 with negative operands "
        "return the C truncated remainder (sign of the dividend, like fmod): ref_0 = [1,-1,1,-1,0,1,-1,0] where "
        "PyTorch gives the floored remainder (sign of the divisor) eager_0 = [1,2,-2,-1,0,-1,1,0]; same for the "
        "Scalar overload (ref_1 vs eager_1). The float path (ref_2) agrees with PyTorch. ref_*.npy records what "
        "ExecuTorch does; eager_*.npy what PyTorch specifies. A runtime must pick one: the harness may want to "
        "compare this case against eager_*.npy instead.",
    )


class DoubleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.fc2 = nn.Linear(12, 3)

    def forward(self, x):
        h = torch.sigmoid(self.fc1(x))
        return self.fc2(h), torch.exp(x).sum(dim=-1), torch.tanh(h) * x.mean(dim=-1, keepdim=True)


@case("dtype_f64")
def _():
    return single(
        DoubleNet().double(),
        (rn(4, 6, dtype=torch.float64),),
        notes="float64 MLP with sigmoid, exp+sum, tanh, mean; f64 in/out. Tolerance 1e-6: the reference's exp on "
        "Double is not double-accurate (exp(x).sum differs from eager by ~4e-7 relative, while the linear/sigmoid "
        "outputs agree to 1e-16). log_softmax was dropped: the portable _log_softmax.out kernel rejects Double "
        "(execute fails with 0x12).",
        atol=1e-6,
        rtol=1e-6,
    )


class U8I8Net(nn.Module):
    def forward(self, u, v, s):
        # u, v uint8 [4,8]; s int8 [4,8]
        add = u + v  # wraps modulo 256
        mul = u * 2
        band = u & v
        bor = u | v
        bxor = u ^ v
        mx = torch.maximum(u, v)
        cmp = u > v
        f = u.to(torch.float32) / 255.0
        sa = s + s  # int8 wraps
        sn = -s
        sab = s.abs()
        sf = s.to(torch.float32) * 0.5
        mixed = u.to(torch.int32) - s.to(torch.int32)
        return add, mul, band, bor, bxor, mx, cmp, f, sa, sn, sab, sf, mixed


@case("dtype_u8_i8")
def _():
    u = torch.randint(0, 256, (4, 8), dtype=torch.uint8)
    v = torch.randint(0, 256, (4, 8), dtype=torch.uint8)
    s = torch.randint(-128, 128, (4, 8), dtype=torch.int8)
    return single(
        U8I8Net(),
        (u, v, s),
        notes="uint8/int8 arithmetic: add and mul that overflow (wrap modulo 2^8 in PyTorch), bitwise and/or/xor, "
        "maximum, compare, casts to f32/i32, int8 neg/abs (abs(-128) wraps to -128)",
    )


# --------------------------------------------------------------------------
# Dynamic shapes
# --------------------------------------------------------------------------


class DynMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 24), nn.GELU(), nn.Linear(24, 5))

    def forward(self, x):
        y = self.net(x)
        return F.softmax(y, dim=-1), y.sum(dim=0)


@case("dynamic_batch_mlp")
def _():
    batch = Dim("batch", min=1, max=16)
    return single(
        DynMLP(),
        (rn(4, 12),),
        (rn(11, 12),),
        dynamic_shapes=({0: batch},),
        notes="MLP exported with a dynamic batch dim (Dim min 1, max 16); run 0 batch 4 (export example), run 1 batch 11. "
        "Outputs resize with the input.",
    )


class DynSeq(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.conv = nn.Conv1d(16, 16, 3, padding=1)
        self.norm = nn.LayerNorm(16)

    def forward(self, x):
        # x [B, S, 8]
        s = x.shape[1]
        pos = torch.arange(s, dtype=torch.float32).unsqueeze(-1) / 64.0  # in-graph arange over a dynamic size
        h = self.proj(x) + pos
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)
        h = self.norm(F.relu(h))
        att = F.softmax(h @ h.transpose(1, 2) / 4.0, dim=-1)
        out = att @ h
        return out, out.mean(dim=1), torch.cumsum(h[..., 0], dim=1)


@case("dynamic_seq")
def _():
    b = Dim("batch", min=1, max=8)
    s = Dim("seq", min=2, max=64)
    return single(
        randomize_norms(DynSeq()),
        (rn(2, 10, 8),),
        (rn(3, 37, 8),),
        dynamic_shapes=({0: b, 1: s},),
        notes="dynamic batch (max 8) and sequence (2..64) dims: linear, in-graph arange(seq) position term, conv1d over "
        "seq, layer_norm, self-attention matmuls, cumsum; run 0 [2,10,8], run 1 [3,37,8]",
    )


class DynConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = F.relu(self.c1(x))
        y = F.max_pool2d(y, 2)
        y = F.hardswish(self.c2(y))
        return y, self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


@case("dynamic_conv_hw")
def _():
    h = Dim("h", min=4, max=64)
    w = Dim("w", min=4, max=64)
    return single(
        DynConv(),
        (rn(1, 3, 16, 12),),
        (rn(1, 3, 23, 40),),
        dynamic_shapes=({2: h, 3: w},),
        notes="conv net with dynamic image height and width (4..64): conv, relu, max_pool2d (floor of odd sizes), "
        "depthwise conv, hardswish, adaptive_avg_pool2d(1), linear; run 0 16x12, run 1 23x40",
    )


class DynEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 3)

    def forward(self, ids, pad):
        h = self.enc(self.emb(ids), src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        pooled = (h * keep).sum(dim=1) / keep.sum(dim=1)
        return self.head(pooled), ids.argmax(dim=1)


@case("dynamic_transformer")
def _():
    s = Dim("seq", min=2, max=32)

    def inputs(b, n, lens):
        ids = torch.randint(0, 50, (b, n))
        pad = torch.arange(n).unsqueeze(0) >= torch.tensor(lens).unsqueeze(1)
        return ids, pad

    return single(
        randomize_norms(DynEncoder()),
        inputs(2, 7, [7, 5]),
        inputs(2, 19, [12, 19]),
        dynamic_shapes=({1: s}, {1: s}),
        notes="int64 token ids -> embedding -> 2-layer nn.TransformerEncoder (d_model 32, 4 heads, batch_first) with a "
        "bool padding mask, masked mean pooling, linear head; sequence dim dynamic (2..32, shared by both inputs); "
        "run 0 seq 7, run 1 seq 19",
        atol=1e-3,
        rtol=1e-3,
    )


# --------------------------------------------------------------------------
# Program-level features
# --------------------------------------------------------------------------


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, z):
        return F.log_softmax(self.fc(z), dim=-1)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 16)

    def forward(self, img):
        return torch.tanh(self.fc(F.relu(self.conv(img)).flatten(1)))


@case("multi_method")
def _():
    return Spec(
        methods={
            "forward": MethodSpec(Classifier(), [(rn(3, 16),)]),
            "encode": MethodSpec(Encoder(), [(rn(3, 1, 8, 8),)]),
        },
        notes="multi-method program: one .pte with methods 'forward' (linear + log_softmax on a [3,16] code) and "
        "'encode' (conv+linear+tanh image encoder). One fixture directory per method; the .pte lives in "
        "multi_method_forward/ and the other case points to it.",
    )


class CLNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = F.relu(self.c1(x))
        y = self.c2(y)
        y = y * torch.sigmoid(y)
        return y, self.fc(y.mean(dim=(2, 3)))


@case("channels_last")
def _():
    m = CLNet()
    x = rn(2, 3, 8, 8).to(memory_format=torch.channels_last)
    return single(
        m,
        (x,),
        notes="input exported from a channels_last example (dim order [0,2,3,1]); the .npy holds the logical NCHW array, "
        "a runtime must feed it in the program's declared dim order (the reference silently accepts a contiguous "
        "tensor for this input and returns wrong values; it derives dim order from strides). conv, relu, depthwise conv, sigmoid/mul/add run "
        "in channels-last; the exporter inserts a _to_dim_order_copy to contiguous before the mean. Output 0 is "
        "channels-last in the program (ref_0.npy is still the logical NCHW array). "
        "Removed because the reference rejects them: BatchNorm (portable batch norm requires contiguous dim order) "
        "and adding avg_pool2d(y) to conv(y) (aten::add.out: '3 input tensors have different dim orders', the "
        "pool output is contiguous while the conv output is channels-last), and adding a python scalar (y + 0.5: the "
        "exporter lifts 0.5 to a 0-d constant tensor whose dim order [] is not channels-last, same error).",
    )


class ExtMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 3)
        self.register_buffer("scale", torch.rand(3) + 0.5)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x))) * self.scale


@case("external_weights")
def _():
    return single(
        ExtMLP(),
        (rn(4, 10),),
        external_constants=True,
        notes="weights stored outside the .pte: exported with ExecutorchBackendConfig(external_constants=True) and "
        "written with write_tensor_data_to_file() as _default_external_constant.ptd; the reference loads it with "
        "Runtime.get().load_program(pte, data_path=ptd). In the .pte every weight tensor has "
        "extra_tensor_info.location = EXTERNAL and fully_qualified_name = the parameter name ('fc1.weight', "
        "'fc1.bias', 'fc2.weight', 'fc2.bias', 'scale'), which is the key in the .ptd.",
    )


class CondNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        def true_fn(t):
            return torch.sin(t) * 2.0

        def false_fn(t):
            return torch.cos(t) - 1.0

        y = torch.cond(x.sum() > 0, true_fn, false_fn, (self.fc(x),))
        return y + 1.0


@case("control_flow_cond")
def _():
    x0 = rn(2, 6).abs() + 0.1
    x1 = -(rn(2, 6).abs() + 0.1)
    return single(
        CondNet(),
        (x0,),
        (x1,),
        notes="torch.cond on x.sum() > 0 (sin branch vs cos branch); run 0 has x.sum() > 0, run 1 x.sum() < 0. "
        "No extra operator: the branches are inlined into the plan and selected with JumpFalseCall instructions "
        "(one on the predicate, one on an always-false constant to skip the other branch) plus MoveCall instructions "
        "that copy the branch result into the cond output.",
    )


class Accumulator(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("acc", torch.zeros(2, 3))
        self.register_buffer("count", torch.zeros(1))

    def forward(self, x):
        self.acc.add_(x)
        self.count.add_(1.0)
        return self.acc * 1.0, self.acc / self.count, self.count + 0.0


@case("mutable_buffer")
def _():
    return single(
        Accumulator(),
        (rn(2, 3),),
        (rn(2, 3),),
        notes="module with mutable buffers acc [2,3] and count [1], both registered as zeros, updated in place in "
        "forward (acc += x; count += 1); outputs acc, acc/count, count. Both runs execute the SAME loaded method one "
        "after the other, so run 1's outputs depend on the state left by run 0. Reference behaviour: the write-back "
        "is an aten::copy_ instruction into the buffer; the buffer lives in planned memory (memory_id 1), state "
        "persists across execute() calls and across load_method() of the same Program (methods are cached), and a "
        "fresh load_program starts over. The .pte does NOT store the buffers' initial values (the emitter warns "
        "'mutated buffers have a meaningless initial state'); the reference's planned arenas start zero-filled, so "
        "state starts at 0 == the registered zeros (a buffer registered as 0.5 would also start at 0 in the "
        "reference but not in eager). A runtime must zero-initialise planned memory to match. See "
        "mutable_buffer_init for serialized initial values.",
    )


class InitAccumulator(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("acc", torch.full((2, 3), 0.5))
        self.register_buffer("steps", torch.arange(3, dtype=torch.int64))

    def forward(self, x):
        self.acc.mul_(0.5).add_(x)
        self.steps.add_(1)
        return self.acc + 0.0, self.steps * 2


@case("mutable_buffer_init")
def _():
    return Spec(
        methods={"forward": MethodSpec(InitAccumulator(), [(rn(2, 3),), (rn(2, 3),)])},
        init_buffers=["acc", "steps"],
        notes="mutable buffers with NON-zero initial values (acc = full 0.5 f32 [2,3]; steps = arange(3) int64) "
        "exported with ExecutorchBackendConfig(passes=[InitializedMutableBufferPass(['acc', 'steps'])]) so the "
        "initial values are serialized in the .pte; forward does acc = acc*0.5 + x, steps += 1 and returns "
        "acc, steps*2. Two runs on the same loaded method: run 0 must start from the serialized initial values, "
        "run 1 from the state left by run 0. In the .pte the buffer tensors are memory-planned (allocation_info, "
        "memory_id 1) AND have data_buffer_idx > 0 indexing the offsets of Program.mutable_data_segments[0]; the "
        "reference copies those bytes into planned memory once, at load_method.",
    )


# --------------------------------------------------------------------------
# Export / reference machinery
# --------------------------------------------------------------------------


def to_np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:
            raise ValueError("bfloat16 tensors cannot be stored in .npy")
        a = t.contiguous().numpy()
    elif isinstance(t, (bool, int, float)):
        a = np.array(t)
    else:
        raise TypeError(f"unsupported output type {type(t)}")
    # not np.ascontiguousarray: it turns 0-d arrays into shape [1]
    return np.array(a, copy=True, order="C")


def flat(outputs) -> List[Any]:
    leaves, _ = tree_flatten(outputs)
    return leaves


def clone_inputs(inputs: tuple) -> list:
    out = []
    for t in inputs:
        if isinstance(t, torch.Tensor):
            mf = torch.channels_last if (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()) else torch.contiguous_format
            out.append(t.clone(memory_format=mf))
        else:
            out.append(t)
    return out


def dim_order_of(t) -> Optional[List[int]]:
    if not isinstance(t, torch.Tensor):
        return None
    order = list(t.dim_order())
    return None if order == list(range(t.dim())) else order


def compare(ref: np.ndarray, other: np.ndarray, atol: float, rtol: float):
    """Returns (ok, max_abs_diff)."""
    if ref.shape != other.shape:
        return False, float("inf")
    if ref.dtype != other.dtype:
        return False, float("inf")
    if ref.dtype.kind in "biu":
        ok = bool(np.array_equal(ref, other))
        diff = 0.0 if ok else float(np.max(np.abs(ref.astype(np.float64) - other.astype(np.float64))))
        return ok, diff
    r = ref.astype(np.float64)
    o = other.astype(np.float64)
    if r.size == 0:
        return True, 0.0
    ok = bool(np.allclose(r, o, atol=atol, rtol=rtol, equal_nan=True))
    d = np.abs(r - o)
    d = d[~np.isnan(d)]
    return ok, float(d.max()) if d.size else 0.0


def op_names(pte_bytes: bytes) -> Dict[str, List[str]]:
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = deserialize_pte_binary(pte_bytes)
    prog = getattr(pte, "program", pte)
    res = {}
    for plan in prog.execution_plan:
        names = set()
        for op in plan.operators:
            names.add(op.name + ("." + op.overload if op.overload else ""))
        res[plan.name] = sorted(names)
    return res


def save_run(d: Path, inputs, refs, eagers):
    d.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(inputs):
        np.save(d / f"in_{i}.npy", to_np(t))
    for i, t in enumerate(refs):
        np.save(d / f"ref_{i}.npy", to_np(t))
    for i, t in enumerate(eagers):
        np.save(d / f"eager_{i}.npy", to_np(t))


def export_case(name: str, spec: Spec) -> List[str]:
    """Exports one case; returns the list of fixture directories written.
    On failure the case's directories are removed so no partial fixture is left."""
    multi = len(spec.methods) > 1
    dirs = {m: FIXTURES / (f"{name}_{m}" if multi else name) for m in spec.methods}
    try:
        return _export_case(name, spec, dirs)
    except BaseException:
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)
        raise


def _export_case(name: str, spec: Spec, dirs: Dict[str, Path]) -> List[str]:
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.runtime import Runtime

    multi = len(spec.methods) > 1
    eps = {}
    eager = {}
    for mname, ms in spec.methods.items():
        model = ms.model.eval()
        # Eager outputs on a copy, runs in order (state carries over for mutable buffers).
        mcopy = copy.deepcopy(model)
        with torch.no_grad():
            eager[mname] = [[o.clone() if isinstance(o, torch.Tensor) else o for o in flat(mcopy(*clone_inputs(r)))] for r in ms.runs]
        eps[mname] = torch.export.export(model, tuple(ms.runs[0]), dynamic_shapes=ms.dynamic_shapes)

    edge = to_edge_transform_and_lower(eps if multi else eps["forward"])
    config = None
    if spec.external_constants or spec.init_buffers:
        kw = {}
        if spec.external_constants:
            kw["external_constants"] = True
        if spec.init_buffers:
            from executorch.exir.passes.init_mutable_pass import InitializedMutableBufferPass

            kw["passes"] = [InitializedMutableBufferPass(spec.init_buffers)]
        config = ExecutorchBackendConfig(**kw)
    et = edge.to_executorch(config) if config is not None else edge.to_executorch()
    pte_bytes = et.buffer

    first = next(iter(dirs.values()))
    for d in dirs.values():
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    pte_path = first / "program.pte"
    pte_path.write_bytes(pte_bytes)
    ptd_name = None
    if spec.external_constants:
        et.write_tensor_data_to_file(str(first))
        ptds = sorted(p.name for p in first.glob("*.ptd"))
        if len(ptds) != 1:
            raise RuntimeError(f"expected one .ptd, got {ptds}")
        ptd_name = ptds[0]

    ops = op_names(pte_bytes)

    rt = Runtime.get()
    if ptd_name:
        program = rt.load_program(str(pte_path), data_path=str(first / ptd_name))
    else:
        program = rt.load_program(str(pte_path))

    written = []
    for mname, ms in spec.methods.items():
        d = dirs[mname]
        method = program.load_method(mname)
        if method is None:
            raise RuntimeError(f"reference could not load method {mname}")
        notes = spec.notes + ((" " + spec.method_notes[mname]) if mname in spec.method_notes else "")
        extra = []
        all_refs = [flat(method.execute(clone_inputs(inputs))) for inputs in ms.runs]
        atol = spec.atol
        if atol is None:
            scale = max(float(np.abs(to_np(t).astype(np.float64)).max()) for t in all_refs[0] if to_np(t).size)
            atol = float(f"{max(1e-5, 1e-3 * scale):.2g}")
        for r, inputs in enumerate(ms.runs):
            refs = all_refs[r]
            eg = eager[mname][r]
            if len(refs) != len(eg):
                raise RuntimeError(f"run {r}: reference returned {len(refs)} outputs, eager {len(eg)}")
            worst = 0.0
            bad = []
            for i, (a, b) in enumerate(zip(refs, eg)):
                ra, eb = to_np(a), to_np(b)
                ok, diff = compare(ra, eb, atol, spec.rtol)
                if ra.dtype.kind == "f" and not np.all(np.isfinite(ra)):
                    print(f"  WARNING {name}/{mname} run {r} output {i}: non-finite values in reference output")
                worst = max(worst, diff)
                if not ok:
                    bad.append(f"out{i}(diff {diff:.3g}, ref {ra.dtype}{list(ra.shape)} vs eager {eb.dtype}{list(eb.shape)})")
            if bad:
                msg = f"run {r}: reference != eager within tolerance for " + ", ".join(bad)
                print(f"  WARNING {name}/{mname}: {msg}")
                extra.append(msg)
            print(f"  {d.name} run {r}: {len(refs)} outputs, max |ref - eager| = {worst:.3g}")
            save_run(d if r == 0 else d / f"run{r}", inputs, refs, eg)
        if extra:
            notes += " NOTE: the ExecuTorch reference differs from eager PyTorch: " + "; ".join(extra) + ". ref_*.npy is authoritative."
        meta = {
            "method": mname,
            "program": "program.pte" if d == first else os.path.relpath(pte_path, d),
            "ptd": ptd_name,
            "atol": atol,
            "rtol": spec.rtol,
            "runs": len(ms.runs),
            "ops": ops[mname],
            "input_dim_orders": [dim_order_of(t) for t in ms.runs[0]],
            "notes": notes.strip(),
        }
        (d / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        written.append(d.name)
    return written


# --------------------------------------------------------------------------
# Generated summaries
# --------------------------------------------------------------------------


def dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def describe_npys(d: Path, prefix: str) -> str:
    parts = []
    i = 0
    while (d / f"{prefix}_{i}.npy").exists():
        a = np.load(d / f"{prefix}_{i}.npy")
        parts.append(f"{a.dtype}{list(a.shape)}")
        i += 1
    return ", ".join(parts)


def load_skipped() -> Dict[str, str]:
    p = FIXTURES / "SKIPPED.md"
    res = {}
    if p.exists():
        for line in p.read_text().splitlines():
            if line.startswith("## "):
                break
            if line.startswith("| ") and not line.startswith("| case") and not line.startswith("| ---"):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if len(cells) >= 2:
                    res[cells[0].strip("`")] = cells[1]
    return res


# Ops/constructs removed from otherwise-exported cases because the exporter or the reference runtime
# rejects them (each case's notes say the same). Listed in SKIPPED.md.
DROPPED = {
    "zoo_pool_norm: F.adaptive_max_pool2d": "aten.adaptive_max_pool2d is not in the Core ATen opset; to_edge raises SpecViolationError",
    "zoo_misc: torch.sort": "the reference runtime has no aten::sort.values kernel (load_method: 'Missing operator', error 0x14)",
    "zoo_scatter: torch.scatter_reduce": "the reference runtime has no aten::scatter_reduce.two_out kernel (load_method: 'Missing operator', 0x14)",
    "dtype_f64: log_softmax on float64": "portable aten::_log_softmax.out rejects Double (execute error 0x12)",
    "channels_last: BatchNorm2d on a channels-last tensor": "portable _native_batch_norm_legit_no_training requires contiguous dim order (0x12)",
    "channels_last: conv(y) + avg_pool2d(y), y + 0.5": "aten::add.out requires equal dim orders; the pool output and the lifted 0-d scalar constant are contiguous while the conv output is channels-last (0x12)",
    "segnet: permute back to NCHW without .contiguous()": "the permuted tensor keeps channels-last dim order and the following slice_copy rejects mixed dim orders (0x12)",
    "transformer_encoder_causal: mask without is_causal=True": "TransformerEncoder's causal-mask detection is data-dependent; torch.export fails with GuardOnDataDependentSymNode",
}


def write_skipped(skipped: Dict[str, str]):
    lines = [
        "# Skipped fixture cases",
        "",
        "Generated by `conformance/export_fixtures.py`: cases that failed to export or that the ExecuTorch",
        "reference runtime could not run.",
        "",
    ]
    if not skipped:
        lines.append("None: every case exported and ran on the reference runtime.")
    else:
        lines += ["| case | reason |", "| --- | --- |"]
        for k in sorted(skipped):
            lines.append(f"| `{k}` | {skipped[k].replace('|', '/')} |")
    lines += [
        "",
        "## Parts dropped from exported cases",
        "",
        "These constructs were removed (or worked around) so the rest of the case could be kept:",
        "",
        "| case: construct | reason |",
        "| --- | --- |",
    ]
    for k, v in DROPPED.items():
        lines.append(f"| {k} | {v} |")
    (FIXTURES / "SKIPPED.md").write_text("\n".join(lines) + "\n")


def write_index():
    case_dirs = sorted(p.parent for p in FIXTURES.glob("*/meta.json"))
    union = set()
    rows = []
    for d in case_dirs:
        meta = json.loads((d / "meta.json").read_text())
        union.update(meta["ops"])
        rows.append((d, meta))
    (FIXTURES / "ops_union.txt").write_text("".join(o + "\n" for o in sorted(union)))

    total = sum(dir_size(d) for d, _ in rows)
    lines = [
        "# Fixture index",
        "",
        "Generated by `conformance/export_fixtures.py` (do not edit). Each case directory holds `program.pte` (or",
        "`meta.json` points at another case's), `in_<i>.npy`, `ref_<i>.npy` (ExecuTorch runtime outputs),",
        "`eager_<i>.npy` (eager PyTorch outputs), `meta.json`, and `run<r>/` for extra runs.",
        "",
        f"{len(rows)} cases, {total / 1024:.1f} KiB in case directories, {len(union)} distinct operators "
        "(see `ops_union.txt`).",
        "",
        "| case | size | pte | inputs (run 0) | outputs (run 0) | runs | atol/rtol | ops |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d, meta in rows:
        pte = (d / meta["program"]).resolve()
        pte_kb = pte.stat().st_size / 1024 if pte.exists() else float("nan")
        prog = meta["program"] + (f" + {meta['ptd']}" if meta["ptd"] else "")
        lines.append(
            f"| `{d.name}` | {dir_size(d) / 1024:.1f} KiB | {prog} ({pte_kb:.1f} KiB) | {describe_npys(d, 'in')} | "
            f"{describe_npys(d, 'ref')} | {meta['runs']} | {meta['atol']:g}/{meta['rtol']:g} | {len(meta['ops'])} |"
        )
    lines += ["", "## Details", ""]
    for d, meta in rows:
        lines.append(f"### `{d.name}`")
        lines.append("")
        lines.append(meta["notes"])
        lines.append("")
        if any(o is not None for o in meta["input_dim_orders"]):
            lines.append(f"Input dim orders: `{meta['input_dim_orders']}`")
            lines.append("")
        lines.append("Ops: " + ", ".join(f"`{o}`" for o in meta["ops"]))
        lines.append("")
    (FIXTURES / "INDEX.md").write_text("\n".join(lines))
    return total, union


def fixture_total() -> int:
    return dir_size(FIXTURES)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="case names to (re)export; default all")
    ap.add_argument("--list", action="store_true", help="list case names and exit")
    args = ap.parse_args(argv)

    if args.list:
        print("\n".join(CASES))
        return 0

    names = list(CASES) if not args.only else args.only
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown case(s): {unknown}; known: {list(CASES)}", file=sys.stderr)
        return 2

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    FIXTURES.mkdir(exist_ok=True)
    skipped = load_skipped() if args.only else {}
    done = []
    for name in names:
        t0 = time.time()
        print(f"[{name}]", flush=True)
        torch.manual_seed(seed_for(name))
        np.random.seed(seed_for(name))
        try:
            spec = CASES[name]()
            written = export_case(name, spec)
            done += written
            skipped.pop(name, None)
            print(f"  ok in {time.time() - t0:.1f}s -> {', '.join(written)}", flush=True)
        except Exception as e:  # noqa: BLE001 - any failure means "skip with a reason"
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
            print(f"  SKIPPED {name}: {reason}", flush=True)
            traceback.print_exc(limit=3)
            skipped[name] = reason

    write_skipped(skipped)
    _, union = write_index()
    total = fixture_total()
    print(f"\nexported {len(done)} fixture dirs; skipped {len(skipped)}: {sorted(skipped)}")
    print(f"ops union: {len(union)} operators -> fixtures/ops_union.txt")
    print(f"TOTAL fixture size: {total} bytes ({total / 1024 / 1024:.2f} MiB), limit {SIZE_LIMIT / 1024 / 1024:.0f} MiB")
    if total > SIZE_LIMIT:
        print("ERROR: fixture set exceeds the size limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
