"""The model registry: names, shapes, features, errors, local pretrained weights."""

import pytest
import torch

from gzmorph.io import InputError
from gzmorph.models import create_model, list_models, register_model

torch.set_num_threads(1)


def test_registry_lists_the_project_models():
    assert {"cnn", "efficientnet_b0", "efficientnet_b1", "resnet18"} <= set(list_models())


def test_every_model_is_registered_on_import():
    """timm-style: importing gzmorph.models alone registers every model (the distillation ConvNet too)."""
    import subprocess
    import sys

    code = "import gzmorph.models as m, sys; print(' '.join(m.list_models())); print('gzmorph.experts' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert "convnet_d3" in out[0].split() and out[1] == "False"


@pytest.mark.parametrize("name", ["cnn", "efficientnet_b0", "efficientnet_b1", "resnet18"])
def test_create_each_model_output_and_feature_shapes(name):
    torch.manual_seed(0)
    m = create_model(name, num_classes=5, image_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert m(x).shape == (2, 5)
        f = m.features(x)
    assert f.shape == (2, m.num_features)
    assert m.config["name"] == name and m.config["num_classes"] == 5 and m.config["image_size"] == 32


def test_default_image_size_and_kwargs_are_recorded():
    m = create_model("cnn", 3, widths=(4, 8))
    assert m.config == {"name": "cnn", "num_classes": 3, "image_size": 64, "widths": (4, 8)}
    assert m.num_features == 8
    assert create_model("efficientnet_b1", 2).config["image_size"] == 240


def test_unknown_name_lists_known_models():
    with pytest.raises(InputError, match="unknown model 'vit'.*cnn.*efficientnet_b1.*resnet18"):
        create_model("vit", 5)


def test_pretrained_file_missing_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="pretrained encoder not found.*never downloads"):
        create_model("resnet18", 5, pretrained=str(tmp_path / "resnet18-imagenet.pth"))


def test_pretrained_from_a_local_torchvision_file(tmp_path):
    import torchvision

    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    m = create_model("resnet18", 5, pretrained=str(path))
    assert torch.equal(m.backbone[0].weight, ref.conv1.weight)
    assert m.head[-1].out_features == 5
    torch.save({"junk": torch.zeros(1)}, path)
    with pytest.raises(InputError, match="does not fit"):
        create_model("resnet18", 5, pretrained=str(path))


def test_register_a_new_model():
    from gzmorph.models import Classifier

    @register_model("linear_test", image_size=8)
    def linear_test(num_classes, image_size, pretrained=None):
        return Classifier(torch.nn.Flatten(), 3 * image_size ** 2, num_classes)

    assert "linear_test" in list_models()
    assert create_model("linear_test", 2)(torch.zeros(1, 3, 8, 8)).shape == (1, 2)
