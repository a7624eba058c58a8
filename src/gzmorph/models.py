"""Model registry (timm-style): ``create_model(name, num_classes, image_size, pretrained=None, **kw)``.

Every model is a ``Classifier``: ``features(x)`` gives the penultimate
embedding (N × ``num_features``; the representation stage uses it) and
``forward(x) = head(features(x))``.  Besides the registered models, any timm
architecture is a backbone as ``timm/<architecture>`` (``timm/convnext_nano``).
Every backbone is built with random weights (torchvision ``weights=None``, timm
``pretrained=False``); pretrained weights come only from a local encoder the
user names (``pretrained=``: a Hugging Face/timm folder, a safetensors file, a
torch checkpoint or a gzmorph model file, see :mod:`gzmorph.pretrained`) —
never a download.  :func:`load_encoder` builds a model from such an encoder alone.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from .io import InputError, one_line
from .pretrained import (
    TIMM_NAMES,
    TIMM_PREFIX,
    check_encoder_path,
    encoder_model_args,
    gzmorph_format,
    gzmorph_only_error,
    load_encoder,  # noqa: F401 - gzmorph.models.load_encoder
    load_weights,
)

_REGISTRY: dict[str, Callable] = {}
DEFAULT_IMAGE_SIZE: dict[str, int] = {}


def register_model(name: str, image_size: int = 224):
    def deco(fn):
        _REGISTRY[name] = fn
        DEFAULT_IMAGE_SIZE[name] = image_size
        return fn
    return deco


def list_models() -> list[str]:
    """The registered models, then ``timm/<any timm architecture>``."""
    return [*sorted(_REGISTRY), TIMM_NAMES]


class Classifier(nn.Module):
    """``backbone`` maps N×3×H×W to N×``num_features``; ``head`` to logits."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.num_features = num_features
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_classes)) \
            if num_classes else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def create_model(name: str, num_classes: int, image_size: int | None = None, pretrained: str | None = None,
                 **kwargs) -> Classifier:
    """Build a registered model or ``timm/<architecture>``, its backbone's weights from the local
    encoder ``pretrained`` when given (the classifier of the file dropped).

    ``model.config`` holds what is needed to build it again, never the ``pretrained`` path (a trained
    model does not depend on its encoder file); ``model.pretrained_from`` records that path."""
    if name.startswith(TIMM_PREFIX):
        from .pretrained import timm_image_size

        builder, default_size = partial(_timm, name[len(TIMM_PREFIX):]), timm_image_size(name[len(TIMM_PREFIX):])
    elif name in _REGISTRY:
        builder, default_size = _REGISTRY[name], DEFAULT_IMAGE_SIZE[name]
    else:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    if pretrained is not None:
        pretrained = str(check_encoder_path(pretrained))
    image_size = int(image_size or default_size)
    from_gzmorph = pretrained is not None and gzmorph_format(pretrained) is not None
    if pretrained is not None and not from_gzmorph and name.startswith(TIMM_PREFIX):
        # the architecture's options the encoder was saved with (model_kwargs override them), in
        # model.config so that the trained model rebuilds without the encoder
        kwargs = {**encoder_model_args(pretrained), **kwargs}
    else:
        check_model_kwargs(name, kwargs)
    model = builder(num_classes=num_classes, image_size=image_size,
                    pretrained=None if from_gzmorph else pretrained, **kwargs)
    if from_gzmorph:
        from .pretrained import load_gzmorph_backbone

        load_gzmorph_backbone(model, pretrained, name)
    model.config = {"name": name, "num_classes": num_classes, "image_size": image_size, **kwargs}
    model.pretrained_from = pretrained
    return model


def check_model_kwargs(name: str, kwargs: dict, where: str = "model_kwargs") -> None:
    """The options ``kwargs`` of the registered model ``name`` are ones its factory takes, else one
    :class:`InputError` starting with ``where`` (timm backbones: :func:`gzmorph.pretrained.timm_backbone`)."""
    import inspect

    builder = _REGISTRY.get(name)
    if builder is None:
        return
    fixed = ("num_classes", "image_size", "pretrained")
    sig = inspect.signature(builder)
    takes = ", ".join(p for p in sig.parameters if p not in fixed) or "no option"
    given = sorted(set(kwargs) & set(fixed))
    if given:
        raise InputError(f"{where}: {', '.join(given)} cannot be a setting of model {name!r} (it takes {takes})")
    try:
        sig.bind(num_classes=0, image_size=1, pretrained=None, **kwargs)
    except TypeError as err:
        raise InputError(f"{where}: {one_line(err)} for model {name!r} (it takes {takes})") from None


def _timm(arch: str, num_classes: int, image_size: int, pretrained=None, dropout: float = 0.0, **kwargs):
    """``timm/<arch>``: the timm model without its classifier, then a head (``dropout``, linear)."""
    from .pretrained import timm_backbone

    net, num_features = timm_backbone(arch, image_size, pretrained, **kwargs)
    return Classifier(net, num_features, num_classes, dropout)


def _load_pretrained(net: nn.Module, path: str, skip_prefixes: tuple[str, ...], what: str = "") -> None:
    """The local encoder ``path`` into the torchvision ``net`` (its classifier ``skip_prefixes`` dropped)."""
    load_weights(net, path, skip_prefixes, what or type(net).__name__)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_model("cnn", image_size=64)
def cnn(num_classes: int, image_size: int, pretrained=None, widths=(32, 64, 128, 256), dropout: float = 0.2):
    """Compact CNN for laptops: a stride-2 stem, then per stage two conv-BN-ReLU (the first of each
    later stage with stride 2), global average pooling.  At 64 px: 32 -> 16 -> 8 -> 4 px maps."""
    if pretrained:
        raise InputError(gzmorph_only_error("cnn", pretrained))
    layers, cin = [conv_bn(3, widths[0], stride=2)], widths[0]
    for i, w in enumerate(widths):
        layers += [conv_bn(cin, w, stride=1 if i == 0 else 2), conv_bn(w, w)]
        cin = w
    backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Classifier(backbone, widths[-1], num_classes, dropout)


CONVNET_NORMS = ("instance", "layer", "none")


def _convnet_norm(kind: str, width: int) -> nn.Module:
    if kind == "instance":  # instance norm with affine parameters, as MTT's "instancenorm"
        return nn.GroupNorm(width, width, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, width, affine=True)
    if kind == "none":
        return nn.Identity()
    raise InputError(f"convnet_d3: norm must be one of {CONVNET_NORMS} (batch norm has running statistics "
                     f"that an unrolled functional student cannot carry), not {kind!r}")


@register_model("convnet_d3", image_size=32)
def convnet_d3(num_classes: int, image_size: int, pretrained=None, width: int = 128, depth: int = 3,
               norm: str = "instance") -> Classifier:
    """ConvNet-D``depth`` of MTT/STM (the distillation experts and students): ``depth`` × [conv3×3
    (``width``) → norm → ReLU → avg-pool 2] → linear.  No batch norm, so that it can be evaluated
    functionally from a flat parameter vector (:class:`gzmorph.student.Student`)."""
    if pretrained:
        raise InputError(gzmorph_only_error("convnet_d3", pretrained))
    if image_size % (2 ** depth):
        raise InputError(f"convnet_d3: image size {image_size} is not divisible by 2^depth = {2 ** depth}")
    layers, cin = [], 3
    for _ in range(depth):
        layers += [nn.Conv2d(cin, width, 3, padding=1), _convnet_norm(norm, width), nn.ReLU(),
                   nn.AvgPool2d(2, 2)]
        cin = width
    side = image_size // 2 ** depth
    return Classifier(nn.Sequential(*layers, nn.Flatten()), width * side * side, num_classes, dropout=0.0)


def build_convnet(num_classes: int, image_size: int, width: int = 128, depth: int = 3,
                  norm: str = "instance") -> Classifier:
    """``create_model("convnet_d3", ...)`` with the integer options of a saved ``model_config``."""
    return create_model("convnet_d3", num_classes, image_size, width=int(width), depth=int(depth), norm=norm)


def _efficientnet(variant: str, num_classes, pretrained, dropout):
    import torchvision

    net = getattr(torchvision.models, variant)(weights=None)
    if pretrained:
        _load_pretrained(net, pretrained, ("classifier.",), f"torchvision {variant}")
    num_features = net.classifier[-1].in_features
    backbone = nn.Sequential(net.features, net.avgpool, nn.Flatten())
    return Classifier(backbone, num_features, num_classes, dropout if dropout is not None else net.classifier[0].p)


@register_model("efficientnet_b0", image_size=224)
def efficientnet_b0(num_classes: int, image_size: int, pretrained=None, dropout: float | None = None):
    return _efficientnet("efficientnet_b0", num_classes, pretrained, dropout)


@register_model("efficientnet_b1", image_size=240)
def efficientnet_b1(num_classes: int, image_size: int, pretrained=None, dropout: float | None = None):
    return _efficientnet("efficientnet_b1", num_classes, pretrained, dropout)


@register_model("resnet18", image_size=224)
def resnet18(num_classes: int, image_size: int, pretrained=None, dropout: float = 0.0):
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    if pretrained:
        _load_pretrained(net, pretrained, ("fc.",), "torchvision resnet18")
    backbone = nn.Sequential(*(list(net.children())[:-1]), nn.Flatten())
    return Classifier(backbone, net.fc.in_features, num_classes, dropout)
