"""The default denoiser on a real low-dose pair (issue 16, item 4): no worse than the best
Gaussian filter, judged by the independent other frame (shared/data/real-oneview)."""

import numpy as np
import pytest
from scipy import ndimage

from napari_lowdose.io.readers import read_series
from napari_lowdose.models.denoising import denoise_frame
from napari_lowdose.models.registry import DEFAULT_DENOISER, load_denoiser

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_default_denoiser_beats_the_best_gaussian_on_the_real_pair(real_oneview):
    a, b = (read_series(real_oneview / name) for name in ("train_0001.tif", "train_0002.tif"))
    gain = a.dose_hints.counts_per_electron  # 44 counts/e⁻, as the file states
    a, b = (np.asarray(s.data, np.float64) for s in (a, b))
    noise_var = np.var(a - b) / 2  # of each frame; independent between the two

    def unbiased_mse(estimate, other):  # MSE against the clean image, unbiased
        return np.mean((estimate - other) ** 2) - noise_var

    model, _ = load_denoiser(DEFAULT_DENOISER)
    for x, y in ((a, b), (b, a)):
        gaussian = min(unbiased_mse(ndimage.gaussian_filter(x, s), y)
                       for s in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0))
        denoised = denoise_frame(model, x.astype(np.float32), counts_per_electron=gain,
                                 device="cpu")
        assert unbiased_mse(denoised, y) <= gaussian
        assert unbiased_mse(denoised, y) < 0.02 * noise_var  # far below the raw frame's
