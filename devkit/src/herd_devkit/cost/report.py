"""An environment's estimate from a repository tree, and the change between two trees."""

from __future__ import annotations

from pathlib import Path

from herd_devkit.cost import inventory, model, prices
from herd_devkit.cost.config import ConfigError
from herd_devkit.cost.inventory import InventoryError
from herd_devkit.cost.prices import PriceError
from herd_operator.gitops.render import RenderError

# What makes a tree impossible to estimate; each message says where and why.
ERRORS = (ConfigError, InventoryError, PriceError, RenderError)


def estimate(repo: Path, env: str, helm: Path) -> model.Estimate:
    environment = inventory.load(repo, env, helm)
    return model.estimate(environment, prices.load(environment.region))


def change(old: Path, new: Path, env: str, helm: Path) -> list[str]:
    """The cost lines of a promotion: the total before and after, then each line that moved.
    A tree that cannot be estimated is said so in the text rather than failing the caller."""
    try:
        after = estimate(new, env, helm)
    except ERRORS as err:
        return [f"Monthly cost of {env}: no estimate ({err})"]
    try:
        before = estimate(old, env, helm)
    except ERRORS as err:
        return [
            f"Monthly cost of {env}: {model.money(after.total)} "
            f"(no estimate before the change: {err})"
        ]
    return model.summary(before, after)
