"""Fully connected building blocks shared by the methods' modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Activation = Literal["relu", "leaky_relu", "elu", "gelu", "tanh", "none"]


def make_activation(name: Activation, negative_slope: float = 0.2) -> nn.Module:
    """Return the activation module called ``name``.

    ReLU and leaky ReLU work in place: in :class:`MLP` they follow a Linear or a normalisation,
    whose backward does not need its output, and it saves one activation-sized allocation and
    copy per layer and step.
    """
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope, inplace=True)
    if name == "elu":
        return nn.ELU()
    if name == "gelu":
        return nn.GELU()
    if name == "tanh":
        return nn.Tanh()
    if name == "none":
        return nn.Identity()
    raise ValueError(
        f"Unknown activation {name!r}; use 'relu', 'leaky_relu', 'elu', 'gelu', 'tanh' or 'none'."
    )


class MLP(nn.Module):
    """Stack of ``Linear → [norm] → activation → [dropout]`` blocks.

    With no hidden layers this is a single ``Linear`` (scJoint's encoder). The output layer is a
    plain ``Linear`` unless ``activate_output`` is set, in which case it gets the same
    normalisation and activation as the hidden layers (scDART's gene-activity module).

    Parameters
    ----------
    n_input, n_output
        Input and output widths.
    n_hidden
        Widths of the hidden layers.
    activation
        Hidden-layer activation.
    norm
        ``"batch"`` (BatchNorm1d), ``"layer"`` (LayerNorm) or ``None``.
    dropout
        Dropout after each hidden activation.
    bias
        Whether the Linear layers have a bias.
    activate_output
        Apply norm and activation after the output layer too.
    batch_norm_kwargs
        Extra arguments of ``BatchNorm1d`` (e.g. ``momentum``, ``eps``).
    negative_slope
        Slope of the leaky ReLU.
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_hidden: Sequence[int] = (),
        *,
        activation: Activation = "relu",
        norm: Literal["batch", "layer"] | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        activate_output: bool = False,
        batch_norm_kwargs: dict | None = None,
        negative_slope: float = 0.2,
    ):
        super().__init__()
        widths = [n_input, *n_hidden, n_output]
        layers: list[nn.Module] = []
        n_blocks = len(widths) - 1
        for i in range(n_blocks):
            layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias))
            is_output = i == n_blocks - 1
            if is_output and not activate_output:
                continue
            if norm == "batch":
                layers.append(nn.BatchNorm1d(widths[i + 1], **(batch_norm_kwargs or {})))
            elif norm == "layer":
                layers.append(nn.LayerNorm(widths[i + 1]))
            elif norm is not None:
                raise ValueError(f"Unknown norm {norm!r}; use 'batch', 'layer' or None.")
            layers.append(make_activation(activation, negative_slope))
            if dropout > 0 and not is_output:
                layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    @property
    def linear_layers(self) -> list[nn.Linear]:
        """The Linear layers, input to output."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the stack."""
        return self.layers(x)
