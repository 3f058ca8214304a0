"""LoRA adapters on the Clay encoder's transformer (peft), and merging them for inference.

LoRA (Hu et al. 2021) replaces a frozen linear map ``y = W x`` by
``y = W x + (α / r) · B A dropout(x)`` with ``A ∈ R^{r×in}`` (random init) and
``B ∈ R^{out×r}`` (zero init), so training starts from the pretrained function. The method
adapts, in every transformer block, the attention's ``to_qkv`` and ``to_out`` and the
feed-forward ``net.1`` and ``net.3`` (the two ``nn.Linear`` of
``Sequential(LayerNorm, Linear, GELU, Linear)``), with ``r = 8``, ``α = 8``, dropout 0.1.

:func:`apply_lora` injects adapters with ``peft.inject_adapter_in_model`` into the encoder's
``transformer`` and freezes every other parameter of the encoder (patch embedding, CLS token,
norms, base weights); parts of the model outside Clay keep their ``requires_grad``.
:func:`merge_lora` folds ``W <- W + (α / r) B A`` and puts the plain ``nn.Linear`` back, so the
merged model has exactly the registry model's ``state_dict`` keys (save checkpoints *after*
merging).
"""

from __future__ import annotations

from collections.abc import Sequence

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from pipeline.models.clay import ClayEncoder

#: Target module names (suffixes) of the method, inside each transformer block.
LORA_TARGETS: tuple[str, ...] = ("to_qkv", "to_out", "net.1", "net.3")


def find_clay_encoder(model: nn.Module) -> ClayEncoder:
    """Return ``model`` if it is a :class:`ClayEncoder`, else its first ``ClayEncoder`` submodule.

    Raises:
        ValueError: If the model contains no Clay encoder.

    """
    for module in model.modules():
        if isinstance(module, ClayEncoder):
            return module
    raise ValueError(f"{type(model).__name__} has no Clay encoder to adapt")


def apply_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: int = 8,
    dropout: float = 0.1,
    targets: Sequence[str] = LORA_TARGETS,
) -> nn.Module:
    """Inject LoRA adapters into the Clay encoder of ``model`` (in place) and freeze the rest of it.

    Args:
        model: A :class:`ClayEncoder` or a model containing one (``clay``, ``hybrid``).
        rank: ``r``.
        alpha: ``α`` (scale ``α / r``).
        dropout: Dropout on the adapter input.
        targets: Module-name suffixes to adapt inside the encoder's transformer.

    Returns:
        ``model`` (modified in place).

    Raises:
        ValueError: No Clay encoder, adapters already present, or a target that matches nothing.

    """
    encoder = find_clay_encoder(model)
    if any(isinstance(m, LoraLayer) for m in encoder.modules()):
        raise ValueError("the Clay encoder already has LoRA adapters")
    names = [name for name, _ in encoder.transformer.named_modules()]
    unmatched = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unmatched:
        raise ValueError(f"LoRA targets {unmatched} match no module of the Clay transformer")
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none"
    )
    inject_adapter_in_model(config, encoder.transformer)
    for name, param in encoder.named_parameters():
        param.requires_grad = "lora_" in name
    return model


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Return the LoRA parameters of ``model`` (for their own optimiser group / learning rate)."""
    return [p for name, p in model.named_parameters() if "lora_" in name]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base layer and restore plain layers (in place).

    After merging, ``model.state_dict()`` has the keys of the model without adapters and the
    output equals the adapted model's (eval mode) up to float rounding.

    Returns:
        ``model``.

    """
    replacements: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, LoraLayer):
                child.merge()
                replacements.append((parent, child_name, child.get_base_layer()))
    for parent, child_name, base in replacements:
        setattr(parent, child_name, base)
    return model
