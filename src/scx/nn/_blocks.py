"""Fully connected building blocks shared by the methods' modules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def apply_jointly(
    network: Callable[[torch.Tensor], torch.Tensor], *batches: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """``network`` applied to several batches in one pass, the outputs split back per batch.

    For a network without batch-coupled layers (no batch normalisation) this is the same as
    one call per batch, with one larger product per layer instead of several and, in the
    backward pass, one weight gradient instead of a sum of several (e.g. a generator decoding
    both domains' latents, a discriminator scoring real and translated cells).
    """
    sizes = [batch.shape[0] for batch in batches]
    return network(torch.cat(batches)).split(sizes)


class InputMajorLinear(nn.Module):
    """Linear map without bias whose weight is stored input-major (``n_input × n_output``).

    For wide sparse inputs (scDART's peaks): the weight gradient of ``x @ kernel`` for a
    sparse ``x`` is ``xᵀ g``, produced in this layout, and picking the rows of some inputs
    (``kernel[inputs]``) reads contiguous memory; with ``nn.Linear``'s output-major weight
    every step transposes and accumulates a gradient the size of the whole weight. Same
    distribution at initialisation as ``nn.Linear`` (uniform in ±1/√n_input).
    """

    def __init__(self, n_input: int, n_output: int):
        super().__init__()
        self.in_features, self.out_features = int(n_input), int(n_output)
        bound = 1.0 / self.in_features**0.5
        self.kernel = nn.Parameter(torch.empty(self.in_features, self.out_features))
        nn.init.uniform_(self.kernel, -bound, bound)

    @property
    def weight(self) -> torch.Tensor:
        """The weight in ``nn.Linear``'s layout (``n_output × n_input``), a view."""
        return self.kernel.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ kernel``; ``x`` dense or sparse CSR."""
        return x @ self.kernel

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # models saved when this layer was an ``nn.Linear`` store ``weight`` (out × in)
        old = state_dict.pop(prefix + "weight", None)
        if old is not None and prefix + "kernel" not in state_dict:
            state_dict[prefix + "kernel"] = old.T.contiguous()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias=False"


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
    input_major_first
        Make the first layer an :class:`InputMajorLinear` (no bias): for wide sparse inputs.
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
        input_major_first: bool = False,
    ):
        super().__init__()
        if input_major_first and bias:
            raise ValueError("`input_major_first=True` needs `bias=False`.")
        widths = [n_input, *n_hidden, n_output]
        layers: list[nn.Module] = []
        n_blocks = len(widths) - 1
        for i in range(n_blocks):
            if i == 0 and input_major_first:
                layers.append(InputMajorLinear(widths[0], widths[1]))
            else:
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
    def linear_layers(self) -> list[nn.Linear | InputMajorLinear]:
        """The Linear layers, input to output."""
        return [m for m in self.layers if isinstance(m, nn.Linear | InputMajorLinear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the stack."""
        return self.layers(x)
