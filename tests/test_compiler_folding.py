"""Folding forward multipliers into init/LR under the Adam abc-symmetry."""

from __future__ import annotations

import pytest

import scalec
from scalec.compiler.analysis import equivalence
from scalec.compiler.codegen import generate
from scalec.compiler.folding import FoldError, fold
from scalec.compiler.parameterisation import import_source


def test_folding_mup_readout_gives_table3_form():
    folded, report = fold(scalec.load("mup").ir, sites=("output.mult",))
    assert report.folded == ["output.mult -> unembed (x 1/m_N)"]
    assert equivalence(scalec.load("mup_table3").ir, folded).equivalent


@pytest.mark.slow
def test_folded_completedp_has_identity_sites_and_scaled_branch_ends():
    # n = 512 = 4 n0, L = 8 = 4 L0, alpha = 1, base B and D: hand-derived from design.md's Complete(d)P table.
    p = scalec.load("completedp", fold=True)
    assert p.fold and p.sites(p.shape(n=512, L=8)).residual_attn == 0.25  # load() keeps the module unfolded
    ir, report = fold(p.ir, sites=("residual.attn", "residual.mlp"))  # what `scalec compile --fold` emits
    module = import_source(generate(ir), ir.name)
    assert report.folded == ["residual.attn -> attn.o (x m_L**(-alpha))", "residual.mlp -> mlp.down (x m_L**(-alpha))"]
    shape = module.Shape(n=512, L=8, B=module.BASE.B, D=module.BASE.D, d_head=32)
    sites = module.sites(shape)
    assert sites.residual_attn == sites.residual_mlp == 1.0
    o, q = module.role_hparams("attn.o", shape), module.role_hparams("attn.q", shape)
    assert (o.init_std, o.lr, o.eps) == pytest.approx((0.02 * 0.5 * 0.25, 2**-8 / 4 / 4, 1e-8 / 4 / 4 * 4))
    assert (q.init_std, q.lr, q.eps) == pytest.approx((0.02 * 0.5, 2**-8 / 4, 1e-8 / 4 / 4))


def test_folding_attention_scale_with_qk_norm_is_refused_and_names_the_site():
    with pytest.raises(FoldError, match="cannot fold site 'attn.scale'"):
        fold(scalec.load("mup").ir, qk_norm=True)
    fold(scalec.load("sp").ir, qk_norm=True)  # SP's scale is the default: nothing to fold
