"""The exported vision heads (folded LayerNorm affines, shared normalisation, channels-last
cells) give what the trained modules give."""

import pytest
import torch

from edgevlm.export.graphs import VisionGraph
from edgevlm.export.vision_heads import FoldedConceptHead, FoldedProjector, channels_last_cells, normalise_cells
from edgevlm.model_io import load_model
from edgevlm.models.concept_head import ConceptHead
from edgevlm.models.projector import Projector


def _randomise(module):
    """LayerNorm affines away from (1, 0), so folding them is tested, not skipped."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return module.eval()


def test_the_vision_graph_gives_the_modules_outputs(tiny_model_master):
    model = load_model(tiny_model_master)
    model = (model[0] if isinstance(model, tuple) else model).eval()
    _randomise(model.projector)
    size = model.cfg.preprocess.image_size
    pixels = torch.rand(3, 3, size, size) * 2 - 1
    with torch.no_grad():
        features = model.encoder(pixels, model.cfg.vision.feature)
        tokens, pooled, *concepts = VisionGraph(model).eval()(pixels)
        torch.testing.assert_close(tokens, model.projector(features), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pooled, features.mean(dim=(2, 3)), atol=1e-6, rtol=1e-6)
        if model.concepts is not None:
            torch.testing.assert_close(concepts[0], torch.sigmoid(model.concepts(features)), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("hidden", [0, 16])
def test_a_folded_concept_head_scores_as_the_trained_one(hidden):
    channels, cells, side = 24, 9, 3
    head = _randomise(ConceptHead(channels, 5, hidden=hidden, sharpness=3.0))
    head.bias_shift.copy_(torch.linspace(-1, 1, 5))
    projector = _randomise(Projector(channels, 8, cells))
    features = torch.randn(2, channels, side, side) * 2 + 1
    normed = normalise_cells(channels_last_cells(features, channels), channels, head.norm.eps)
    with torch.no_grad():
        torch.testing.assert_close(FoldedConceptHead(head, cells)(normed), head(features), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(FoldedProjector(projector).eval()(normed), projector(features), atol=1e-5, rtol=1e-5)
