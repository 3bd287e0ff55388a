"""Folding forward multipliers into init/LR under the Adam abc-symmetry."""

from __future__ import annotations

import dataclasses

import pytest

import scalec
from scalec.compiler.analysis import equivalence
from scalec.compiler.folding import FoldError, fold


def test_folding_mup_readout_gives_table3_form():
    folded, report = fold(scalec.load("mup").ir, sites=("output.mult",))
    assert report.folded == ["output.mult -> unembed (x 1/m_N)"]
    assert equivalence(scalec.load("mup_table3").ir, folded).equivalent


def test_folded_completedp_has_identity_sites_and_scaled_branch_ends():
    p = scalec.load("completedp", fold=True)
    shape = p.shape(n=512, L=8)
    orig = scalec.load("completedp")
    sites = p.sites(shape).as_dict()
    assert sites["residual.attn"] == sites["residual.mlp"] == 1.0
    assert sites["attn.scale"] == pytest.approx(shape.d_head**-0.5)
    r = orig.sites(shape).residual_attn
    assert p.role_hparams("attn.o", shape).init_std == pytest.approx(orig.role_hparams("attn.o", shape).init_std * r)
    assert p.role_hparams("attn.o", shape).lr == pytest.approx(orig.role_hparams("attn.o", shape).lr * r)
    assert p.role_hparams("attn.o", shape).eps == pytest.approx(orig.role_hparams("attn.o", shape).eps / r)
    v, v_orig = p.role_hparams("attn.v", shape), orig.role_hparams("attn.v", shape)
    assert dataclasses.astuple(v) == dataclasses.astuple(v_orig)  # not a branch end: folding leaves it as it was


def test_folding_attention_scale_with_qk_norm_is_refused_and_names_the_site():
    with pytest.raises(FoldError, match="cannot fold site 'attn.scale'"):
        fold(scalec.load("mup").ir, qk_norm=True)
    fold(scalec.load("sp").ir, qk_norm=True)  # SP's scale is the default: nothing to fold
