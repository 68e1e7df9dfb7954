"""EfficientNet-Lite0 (Tan & Le 2019, "EfficientNet"; TensorFlow's "Lite" variant) in Paddle.

The Lite changes to EfficientNet-B0: ReLU6 instead of swish, no squeeze-and-excitation, and the stem (32)
and head (1280) channels are not rescaled. The network is B0's 16 MBConv blocks in 7 stages:

    stage  kernel  stride  expand  out  repeats     stage  kernel  stride  expand  out  repeats
      1      3       1       1      16     1          5      5       1       6    112     3
      2      3       2       6      24     2          6      5       2       6    192     4
      3      5       2       6      40     2          7      3       1       6    320     1
      4      3       2       6      80     3

What an ImageNet checkpoint converted from TensorFlow needs to reproduce its answers exactly:
- TF "SAME" padding, which is asymmetric: a stride-2 3x3 conv on an even-sized input pads 0 before and 1
  after, a stride-2 5x5 pads 1 before and 2 after (stride 1 pads k//2 on both sides). The amounts depend on
  the input size, so the network is built for one image size (`image_size`) and gives each conv its
  [top, bottom, left, right] padding; `same_padding()` lists every amount (the tests pin them).
- BatchNorm epsilon 1e-3 (TF's), and momentum 0.99 (torch's 0.01: Paddle counts the other way).

Parameter names follow the converted checkpoint's structure (stem, blocks.N.{expand,depthwise,project}, head,
fc) so `models/pretrained.py` maps every key of the TF-derived torch file explicitly. The layer returns
logits; `features(x, upto)` exposes the cut points the fine-tuning regimes cache.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import paddle
from paddle import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.99
# (kernel, stride, expand ratio, output channels, repeats) per stage: EfficientNet-B0 = Lite0.
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
STEM, HEAD = 32, 1280
NUM_BLOCKS = sum(s[4] for s in STAGES)  # 16


def tf_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's "SAME" convolution along one axis of length `size`."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBN(nn.Layer):
    """TF-"SAME" padded conv (no bias) + BatchNorm(eps 1e-3) + optional ReLU6, for one input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1, act: bool = True):
        super().__init__()
        before, after = tf_same_pad(size, kernel, stride)
        self.padding = (before, after)
        # [top, bottom, left, right]: the conv pads asymmetrically itself, so ONNX gets one Conv with pads
        # (a separate Pad op ran 4x slower in ONNX Runtime: it breaks its fused NCHWc conv chains)
        self.conv = nn.Conv2D(cin, cout, kernel, stride=stride, padding=[before, after, before, after], groups=groups,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(cout, momentum=BN_MOMENTUM, epsilon=BN_EPS)
        self.act = nn.ReLU6() if act else None
        self.out_size = math.ceil(size / stride)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class MBConv(nn.Layer):
    """Inverted residual: 1x1 expand (ReLU6) -> kxk depthwise (ReLU6) -> 1x1 project (linear), plus the
    identity when the shape is kept. No squeeze-excite (Lite); no drop-connect (training keeps it simple)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1, 1, size) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, size, groups=mid)
        self.project = ConvBN(mid, cout, 1, 1, self.depthwise.out_size, act=False)
        self.residual = stride == 1 and cin == cout
        self.out_size = self.depthwise.out_size

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Layer):
    def __init__(self, num_classes: int = 1000, image_size: int = 224, dropout: float = 0.2):
        super().__init__()
        self.image_size = image_size
        self.stem = ConvBN(3, STEM, 3, 2, image_size)
        size, cin, blocks = self.stem.out_size, STEM, []
        for kernel, stride, expand, cout, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand, size))
                size, cin = blocks[-1].out_size, cout
        self.blocks = nn.LayerList(blocks)
        self.head = ConvBN(cin, HEAD, 1, 1, size)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(HEAD, num_classes)

    def features(self, x, upto: int):
        """Activations entering block `upto` (0..15); upto=16: the pooled 1280-d features before dropout + fc."""
        x = self.stem(x)
        for block in self.blocks[:upto]:
            x = block(x)
        if upto < len(self.blocks):
            return x
        return paddle.flatten(self.pool(self.head(x)), 1)

    def top(self, x, start: int):
        """The rest of the network from the input of block `start` (a `features(x, start)` output) to logits."""
        if start < len(self.blocks):
            for block in self.blocks[start:]:
                x = block(x)
            x = paddle.flatten(self.pool(self.head(x)), 1)
        return self.fc(self.dropout(x))

    def forward(self, x):
        return self.top(self.features(x, NUM_BLOCKS), NUM_BLOCKS)

    def same_padding(self) -> dict[str, tuple[int, int]]:
        """(before, after) padding of every conv, by layer name: what the tests pin."""
        return {name: layer.padding for name, layer in self.named_sublayers() if isinstance(layer, ConvBN)}


def frozen_sha(net: EfficientNetLite0, upto: int) -> str:
    """Hash of the weights below block `upto` (every parameter and BN statistic by name; upto=16: all but fc):
    equal hashes, equal `features(x, upto)`."""
    prefixes = ("stem.", *(f"blocks.{i}." for i in range(upto)), *(("head.",) if upto == NUM_BLOCKS else ()))
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        if k.startswith(prefixes):
            h.update(k.encode())
            h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return h.hexdigest()[:16]


class Frozen(nn.Layer):
    """The part of `net` below block `upto`: image -> `net.features(x, upto)`; what the feature cache runs once."""

    def __init__(self, net: EfficientNetLite0, upto: int):
        super().__init__()
        self.net, self.upto = net, upto

    def forward(self, x):
        return self.net.features(x, self.upto)


class Top(nn.Layer):
    """The trainable rest of `net` from the input of block `start` to logits, sharing `net`'s parameters.

    Only the parts it runs are its sublayers, so `parameters()` is what an optimizer should update and
    `train()`/`eval()` switch exactly their BatchNorm and dropout; the frozen part stays in eval mode."""

    def __init__(self, net: EfficientNetLite0, start: int):
        super().__init__()
        self.start = start
        self.parts = nn.LayerList([*net.blocks[start:], *([net.head] if start < NUM_BLOCKS else []), net.dropout, net.fc])
        self._net = [net]  # not a sublayer: its frozen parameters are not this layer's

    def forward(self, x):
        return self._net[0].top(x, self.start)
