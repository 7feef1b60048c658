import pytest
import torch

from trainer.quantize import QUANTIZERS, quantize_pt2e


class FixedBatch(torch.nn.Module):
    """Reshapes with a literal batch of 1, so it cannot be exported with a symbolic batch."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).reshape(1, -1))


class AnyBatch(FixedBatch):
    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("model_cls", [AnyBatch, FixedBatch])
@pytest.mark.parametrize("quantizer", QUANTIZERS.keys())
def test_quantized_graph_tracks_float_model(model_cls, quantizer):
    torch.manual_seed(0)
    model = model_cls().eval()
    example = (torch.randn(1, 3, 8, 8),)
    calib = [(torch.randn(1, 3, 8, 8),) for _ in range(40)]  # two batches: 32 + 8
    q = quantize_pt2e(model, example, calib, QUANTIZERS.get(quantizer)())
    assert any("quantize_per" in str(n.target) for n in q.graph.nodes)
    assert not any(m.training for m in q.modules())
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 1e-3
