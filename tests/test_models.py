"""Model construction: defaults, logits layout, parameter-free of cross-position mixing, clear errors."""
import pytest
import torch

from course_lib import CourseError, GatedPixelCNN, PixelCNN, build_model


@pytest.mark.parametrize("cls", [GatedPixelCNN, PixelCNN])
def test_defaults_are_for_binarized_28x28(cls):
    model = cls()
    assert model.image_shape == (1, 28, 28) and model.levels == 2 and model.num_classes is None
    x = torch.randint(0, 2, (3, 1, 28, 28))
    assert model(x).shape == (3, 1, 28, 28)
    assert model.log_prob(x).shape == (3,)


@pytest.mark.parametrize("cls", [GatedPixelCNN, PixelCNN])
def test_categorical_logits_keep_h_and_w_last(cls):
    model = cls(image_shape=(3, 8, 8), levels=256, channels=12)
    x = torch.randint(0, 256, (2, 3, 8, 8))
    assert model(x).shape == (2, 256, 3, 8, 8)


def test_build_model_by_name_and_unknown_names():
    assert isinstance(build_model("gated", channels=8), GatedPixelCNN)
    assert isinstance(build_model("PixelCNN", channels=8, n_blocks=1), PixelCNN)
    with pytest.raises(CourseError, match="Unknown model 'transformer'; choose one of: gated, pixelcnn"):
        build_model("transformer")
    with pytest.raises(CourseError, match="levels=1"):
        GatedPixelCNN(levels=1)


def test_no_batchnorm_or_other_position_mixing_layers():
    for model in (GatedPixelCNN(), PixelCNN(), GatedPixelCNN(num_classes=10)):
        kinds = {type(m).__name__ for m in model.modules()}
        assert not kinds & {"BatchNorm2d", "GroupNorm", "InstanceNorm2d", "LayerNorm", "Dropout"}


def test_conditional_model_needs_labels():
    model = GatedPixelCNN(channels=8, dilations=(1,), num_classes=10)
    with pytest.raises(CourseError, match="class-conditional"):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.long))
    a = model(torch.zeros(1, 1, 28, 28, dtype=torch.long), torch.tensor([1]))
    b = model(torch.zeros(1, 1, 28, 28, dtype=torch.long), torch.tensor([2]))
    assert not torch.allclose(a, b)
