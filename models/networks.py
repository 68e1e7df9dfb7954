"""Network definitions shared by training and export. Every model returns logits (no softmax)."""
from __future__ import annotations

import paddle
from paddle import nn

MODELS = ("smallcnn", "mobilenet_v2", "resnet50")


class SmallCNN(nn.Layer):
    """Compact CNN, the CPU default: four conv-BN-ReLU-maxpool stages, global average pool, linear head.

    At width 16 it costs 9.1 MFLOPs per image forward at 48 px (the default profile) and 16.2 at 64 px,
    so a full optimizer sweep on the Kaggle dataset fits in about half an hour on two CPU cores.
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


def build_model(name: str, num_classes: int, pretrained: bool = False) -> nn.Layer:
    """Build a network by name. Parameter names are the same on every call (unique_name guard),
    so checkpoints and optimizer states saved by one process load in another."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    with paddle.utils.unique_name.guard():
        if name == "smallcnn":
            if pretrained:
                raise ValueError("smallcnn has no pretrained weights; drop --pretrained or pick mobilenet_v2/resnet50")
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
