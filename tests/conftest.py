"""Shared fixtures: real bundles trained on real data (short budgets), once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MCUTEXT_QUIET", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# before any test starts TensorFlow: its thread counts and op determinism, as training sets
# them, so every model the suite trains is the same whatever the test order (docs/model.md)
from mcutext.common.determinism import pin_environment  # noqa: E402

pin_environment()

ROOT = Path(__file__).resolve().parents[1]


def seed_override(default: int | None = None) -> int | None:
    """MCUTEXT_TEST_SEED if set (the seed the suite's trainings use instead of their own),
    else `default`."""
    seed = os.environ.get("MCUTEXT_TEST_SEED")
    return int(seed) if seed else default


def _train(tmp_path_factory, recipe_name: str, ce_only: bool = False, **kw) -> Path:
    """Train a recipe (deterministic: the same bundle on every run on this machine).

    MCUTEXT_TEST_SEED=N trains with train.seed N instead of the recipe's (it also picks
    another --limit subset): how the bounds on trained models were measured over seeds (run
    with --junitxml: the tests record what they bound as properties)."""
    import dataclasses

    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    out = tmp_path_factory.mktemp(f"bundle_{recipe_name}") / "bundle"
    recipe = load_recipe(recipe_name)
    if seed_override() is not None:
        recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train,
                                                                       seed=seed_override()))
    if ce_only:
        recipe = dataclasses.replace(recipe, objective=dataclasses.replace(
            recipe.objective, kd_weight=0.0, map_weight=0.0, adv_weight=0.0))
    return train(recipe, out=out, **kw)


def _digest(path: Path) -> dict[str, str]:
    import hashlib
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def sst2_small_bundle(tmp_path_factory):
    """sst2 recipe on 2,000 real training sentences, 3 epochs, cross-entropy alone (a plain,
    non-robust student: the attack, personalization and runtime tests need one that attacks
    can break); test metrics on 300. Shared and read-only: firmware built from it early in
    the session must still match it at the end (a test that changes a bundle copies it
    first), which the teardown checks."""
    path = _train(tmp_path_factory, "sst2", ce_only=True, limit=2000, epochs=3, test_limit=300)
    before = _digest(path)
    yield path
    after = _digest(path)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a test changed the shared sst2_small_bundle: {changed}"


@pytest.fixture(scope="session")
def baseline_bundles(tmp_path_factory) -> dict[str, Path]:
    """sst2_fastgrnn and sst2_prado on 800 real training sentences, 2 epochs; test metrics
    on 150 (test_baselines, test_codegen_baselines: trained once for both)."""
    return {name: _train(tmp_path_factory, name, limit=800, epochs=2, test_limit=150)
            for name in ("sst2_fastgrnn", "sst2_prado")}


class _Builds(dict):
    """{board: build report} of the small sst2 bundle, built on first use: iterating builds
    every board of boards/ (default options: with personalization)."""

    def __init__(self, bundle: Path, out: Path):
        super().__init__()
        self.bundle, self.out = bundle, out

    def __missing__(self, board: str) -> dict:
        from mcutext.firmware.build import build
        self[board] = build(self.bundle, board, self.out / board)
        return self[board]

    def all(self) -> dict:
        from mcutext.firmware.boards import board_names
        return {name: self[name] for name in board_names()}


@pytest.fixture(scope="session")
def board_firmware(sst2_small_bundle, tmp_path_factory) -> _Builds:
    """The default firmware of the small sst2 bundle for each board, built once per session
    on first use (test_boards, test_stack, test_boards_qemu share it). Read-only: a test
    that changes a build copies it first."""
    return _Builds(sst2_small_bundle, tmp_path_factory.mktemp("fw_boards"))
