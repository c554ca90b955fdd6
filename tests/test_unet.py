"""Madsen-style U-net (Larsen et al. 2023): shapes, configuration, and that it learns."""

import numpy as np
import pytest
import torch

from napari_lowdose.models.unet import UNet, UNetBlock


@pytest.mark.parametrize("shape", [(32, 32), (37, 50), (21, 64), (9, 13)])
def test_output_keeps_the_frame_shape(shape):
    torch.manual_seed(0)
    net = UNet(base_channels=4, levels=2)
    out = net(torch.randn(2, 1, *shape))
    assert out.shape == (2, 1, *shape)
    assert torch.isfinite(out).all()


def test_config_round_trip_rebuilds_the_same_network():
    torch.manual_seed(1)
    net = UNet(base_channels=4, levels=2, kernel_size=3)
    twin = UNet.from_config(dict(net.config))
    twin.load_state_dict(net.state_dict())
    x = torch.randn(1, 1, 24, 24)
    assert torch.equal(net(x), twin(x))
    assert net.config["kernel_size"] == 3 and net.config["levels"] == 2


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="odd"):
        UNet(kernel_size=4)
    with pytest.raises(ValueError, match="unknown"):
        UNet(depth=50)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        UNet()(torch.zeros(8, 8))


def test_block_adds_the_first_layer_output_to_the_fifth_input():
    torch.manual_seed(2)
    block = UNetBlock(1, 3, kernel_size=3).eval()
    x = torch.randn(1, 1, 10, 10)
    with torch.no_grad():
        first = block.layers[0](x)
        y = first
        for i in range(1, 4):
            y = block.layers[i](y)
        expected = block.layers[4](y + first)
        without_skip = block.layers[4](y)
        assert torch.allclose(block(x), expected)
        assert not torch.allclose(block(x), without_skip)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in block.modules()) == 5
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in block.modules()) == 5
    plain = UNetBlock(1, 3, kernel_size=3, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())


def _discs(n: int, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        cy, cx = rng.uniform(8, size - 8, 2)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(16, 36)
        images.append(mask * 1.0 + rng.normal(0, 0.4, (size, size)))
        masks.append(mask)
    as_tensor = lambda a: torch.tensor(np.array(a)[:, None], dtype=torch.float32)  # noqa: E731
    return as_tensor(images), as_tensor(masks)


def test_a_small_unet_learns_to_segment_discs_in_noise():
    torch.manual_seed(3)
    images, masks = _discs(8, 32, np.random.default_rng(3))
    net = UNet(base_channels=4, levels=2, kernel_size=3)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2, amsgrad=True)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(80):
        optimiser.zero_grad()
        loss = loss_fn(net(images), masks)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    predicted = net.predict_proba(images) >= 0.5
    truth = masks.bool()
    tp = (predicted & truth).sum().item()
    f1 = 2 * tp / (predicted.sum().item() + truth.sum().item())
    assert f1 > 0.8
