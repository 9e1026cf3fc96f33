"""3D-CNN backbones returning spatially pooled, temporally unpooled features (N, D, T').

All three share one interface: input (N, 3, T, H, W) float, output (N, D, T') with T' = T/4 for
the variants used in self-supervised training (T' = 4 for 16 frames). Random initialisation only;
nothing is downloaded. Models are returned in ``torch.channels_last_3d`` memory format.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["build_backbone", "BACKBONES", "TinyResNet3d", "R3D18", "SlowR50"]


class _SpatialPool(nn.Module):
    """(N, D, T, H, W) -> (N, D, T): mean over the spatial dims."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(3, 4))


# ---------------------------------------------------------------- tiny
class _Block(nn.Module):
    """3x3x3 basic residual block (two convs), optional strided 1x1x1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int]):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.short = None
        if cin != cout or stride != (1, 1, 1):
            self.short = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.short is None else self.short(x)), inplace=True)


class TinyResNet3d(nn.Module):
    """tbfast's small 3D-ResNet for CPU runs (~0.85M parameters, D=128).

    Stem stride (1,2,2), then four one-block stages with strides (1,1,1), (2,2,2), (2,2,2), (1,2,2):
    16 frames -> T'=4, 32x32 -> 2x2 before spatial pooling. Works at any H, W >= 16.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 128)):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(
            nn.Conv3d(3, w0, (3, 5, 5), (1, 2, 2), (1, 2, 2), bias=False), nn.BatchNorm3d(w0), nn.ReLU(inplace=True)
        )
        self.layer1 = _Block(w0, w0, (1, 1, 1))
        self.layer2 = _Block(w0, w1, (2, 2, 2))
        self.layer3 = _Block(w1, w2, (2, 2, 2))
        self.layer4 = _Block(w2, w3, (1, 2, 2))
        self.pool = _SpatialPool()
        self.feature_dim = w3
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.pool(x)


# ---------------------------------------------------------------- r3d18
class R3D18(nn.Module):
    """torchvision ``r3d_18`` (random init) without avgpool/fc; D=512.

    ``tclr=True`` keeps the temporal resolution of layer4 (METHOD.md §1): its first block's conv1
    gets stride (1,2,2), temporal dilation 2, padding (2,1,1), and its shortcut stride (1,2,2).
    Then 16 frames -> T'=4 (8 -> 2); without it 16 -> 2 (8 -> 1).
    """

    def __init__(self, tclr: bool = True):
        super().__init__()
        from torchvision.models.video import r3d_18

        net = r3d_18(weights=None)
        if tclr:
            block = net.layer4[0]
            old = block.conv1[0]
            block.conv1[0] = nn.Conv3d(
                old.in_channels,
                old.out_channels,
                3,
                stride=(1, 2, 2),
                padding=(2, 1, 1),
                dilation=(2, 1, 1),
                bias=False,
            )
            nn.init.kaiming_normal_(block.conv1[0].weight, mode="fan_out", nonlinearity="relu")
            block.downsample[0].stride = (1, 2, 2)
        self.stem, self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.stem,
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.pool = _SpatialPool()
        self.feature_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.pool(x)


# ---------------------------------------------------------------- r50
class SlowR50(nn.Module):
    """pytorchvideo Slow-R50 (``create_resnet``, depth 50, random init), head removed; D=2048.

    The network keeps full temporal resolution (T frames -> T steps); the output averages
    ``time_pool`` (=4) consecutive steps, so 16 frames -> T'=4.
    """

    def __init__(self, time_pool: int = 4):
        super().__init__()
        import warnings

        with warnings.catch_warnings():  # pytorchvideo 0.1.5 uses the deprecated torch.jit.script at import
            warnings.simplefilter("ignore", FutureWarning)
            from pytorchvideo.models.resnet import create_resnet  # models only: its transforms do not import

        net = create_resnet(
            input_channel=3,
            model_depth=50,
            model_num_class=400,
            norm=nn.BatchNorm3d,
            activation=nn.ReLU,
            stem_conv_kernel_size=(1, 7, 7),
        )
        self.blocks = nn.ModuleList(list(net.blocks)[:-1])  # drop ResNetBasicHead
        self.pool = _SpatialPool()
        self.time_pool = time_pool
        self.feature_dim = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        x = self.pool(x)
        k = self.time_pool
        if k > 1 and x.shape[-1] >= k:
            x = F.avg_pool1d(x, k, k)
        return x


BACKBONES = ("tiny", "r3d18", "r50")


def build_backbone(name: str, *, tclr: bool = True, channels_last: bool = True, width: int = 0) -> nn.Module:
    """Build a backbone by name (``tiny | r3d18 | r50``); it has attribute ``feature_dim``.
    ``width``: the tiny backbone's first stage width w (stages w, 2w, 4w, 8w); 0 = 16.

    forward: (N, 3, T, H, W) -> (N, feature_dim, T'), T'=4 for T=16 (r3d18 needs ``tclr=True``
    for that; ``tclr`` only affects r3d18). Weights are converted to ``channels_last_3d`` unless
    ``channels_last=False``.
    """
    if name == "tiny":
        w = width or 16
        model: nn.Module = TinyResNet3d((w, 2 * w, 4 * w, 8 * w))
    elif name == "r3d18":
        model = R3D18(tclr=tclr)
    elif name == "r50":
        model = SlowR50()
    else:
        from tbfast.errors import UserError

        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return model
