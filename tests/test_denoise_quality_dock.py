"""The Denoise dock's quality readout: an independent frame, or frame against next frame."""

import numpy as np
import pytest
from scipy import ndimage

from napari_lowdose.analysis.denoise_quality import quality_readout
from napari_lowdose.io.layers import LOWDOSE_KEY
from napari_lowdose.models.checkpoint import save_checkpoint
from napari_lowdose.models.denoiser import DenoiserUNet
from napari_lowdose.widgets.denoise import FILE_CHOICE, DenoiseWidget
from napari_lowdose.widgets.denoise_quality import NO_QUALITY

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = DenoiserUNet(base_channels=4, levels=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_checkpoint(path, model, arch="denoiser", metadata={})


def _exposures(n: int) -> np.ndarray:
    """``n`` independent exposures (≈ 8 e⁻/px) of one smooth field."""
    rng = np.random.default_rng(2)
    field = 4.0 + 8.0 * ndimage.gaussian_filter(rng.random((64, 64)), 3.0)
    return np.stack([rng.poisson(field) for _ in range(n)]).astype(np.float32)


@pytest.fixture
def dock(make_napari_viewer, model_file):
    viewer = make_napari_viewer()
    widget = DenoiseWidget(viewer, use_thread=False)
    widget.model.value = FILE_CHOICE
    widget.model_file.value = model_file
    widget.device.value = "cpu"
    yield viewer, widget
    widget.shutdown()


def test_an_independent_frame_gives_the_readout(dock):
    viewer, widget = dock
    a, b = _exposures(2)
    layer_a = viewer.add_image(a, name="a")
    layer_b = viewer.add_image(b, name="b")
    widget.layer_combo.value = layer_a
    assert layer_b in widget.reference_combo.choices
    assert layer_a not in widget.reference_combo.choices
    widget.reference_combo.value = layer_b
    widget.run()
    assert widget.quality.value.startswith("against the reference exposure: unbiased MSE")
    out = viewer.layers["tiny · a"]
    quality = out.metadata[LOWDOSE_KEY]["denoised"]["quality"]
    expected = quality_readout(a, out.data, b)
    assert quality["denoised"]["mse"] == pytest.approx(expected.denoised.mse)
    assert quality["gaussian"]["sigma_px"] == expected.gaussian.sigma_px
    np.testing.assert_array_equal(layer_a.data, a)  # inputs never modified
    np.testing.assert_array_equal(layer_b.data, b)


def test_a_series_is_judged_frame_against_next_and_one_frame_needs_a_second(dock):
    viewer, widget = dock
    series = viewer.add_image(_exposures(3), name="series")
    widget.layer_combo.value = series
    widget.reference_combo.value = None
    widget.scope.value = "all"
    widget.run()
    assert widget.quality.value.startswith("against the next frame")
    assert "2 frame pairs" in widget.quality.value
    widget.scope.value = "current"
    widget.run()
    assert widget.quality.value == NO_QUALITY
