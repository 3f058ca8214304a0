"""The Clay v1.5 encoder, implemented in the project so that the official weights load strictly.

Clay v1.5 (Clay-foundation/model, ``claymodel``, Apache-2.0) is a ViT masked autoencoder whose
patch embedding is generated from the band wavelengths (the DOFA "dynamic embedding"). This
module reproduces its *encoder* with the same module and parameter names, so the official
Lightning checkpoint's ``model.encoder.*`` tensors load with ``strict=True``, and the same
arithmetic, so outputs equal the reference ``Encoder`` run with ``mask_ratio=0, shuffle=False``.

Forward pass for ``pixels x [B, C, H, W]``, wavelengths ``w [C]`` (micrometres), patch ``P``,
width ``D``, grid ``h = H / P``, ``w' = W / P``, ``L = h w'``:

1. Wavelength embedding: ``e = FCBlock(sincos_1d(w, 128))`` with
   ``sincos_1d(w)_k = [sin(w ω_k), cos(w ω_k)]``, ``ω_k = 10000^{-k / (64 - 1)}``, and
   ``FCBlock(e) = e + gelu(l2(gelu(l1(e))))``.
2. Weight generator: a one-layer post-norm transformer over
   ``[weight_tokens (128); e (C); bias_token (1)]``; the C wavelength outputs (plus their inputs)
   go through ``fc_weight`` to a ``[C, D P P]`` kernel, the bias token through ``fc_bias`` to
   ``[D]``. Patches: ``conv2d(x, 0.02 * kernel, bias, stride=P)`` -> ``[B, L, D]``.
3. Position/metadata encoding added to every patch: the GSD-scaled 2-D sin-cos code over
   ``D - 8`` channels, ``ω_k = 10000^{-2 k / ((D - 8) (n - 1))} · gsd`` for ``k < n = (D - 8) / 4``,
   code ``[sin(x ω), cos(x ω), sin(y ω), cos(y ω)]``, followed by the 8 values
   ``[time (4), latlon (4)]``.
4. ``[CLS; patches]`` through ``depth`` pre-norm blocks
   ``x += to_out(softmax(q k^T / sqrt(d_head)) v)`` (with ``q, k, v = to_qkv(LN(x))``) and
   ``x += net(x)`` (``net = LN, Linear(D, r D), GELU, Linear(r D, D)``), then a final LayerNorm.

Output: ``[B, 1 + L, D]``, CLS first. The only generalisation over the reference: a non-square
grid uses its own ``h x w'`` (the reference assumes ``h = w' = sqrt(L)``); square inputs are
unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Metadata channels appended to the position code: time (4) + latlon (4).
METADATA_CHANNELS = 8
#: Scale applied to the generated patch-embedding kernel (reference constant).
DYNAMIC_WEIGHT_SCALE = 0.02


@dataclass(frozen=True)
class ClayConfig:
    """Shape of a Clay encoder. Defaults are Clay v1.5 large (311 M parameters).

    Attributes:
        dim: Token width ``D``.
        depth: Number of transformer blocks.
        heads: Attention heads.
        dim_head: Width of one head (``heads * dim_head`` need not equal ``dim``).
        mlp_ratio: Feed-forward hidden width over ``dim``.
        patch_size: Patch side ``P`` in pixels.
        wave_dim: Width of the wavelength embedding and weight-generator transformer.
        num_latent_tokens: Learned tokens prepended in the weight generator.
        wave_heads: Heads of the weight-generator transformer (not recoverable from shapes).
        wave_ff: Feed-forward width of the weight-generator transformer.
        wave_layers: Layers of the weight-generator transformer.

    """

    dim: int = 1024
    depth: int = 24
    heads: int = 16
    dim_head: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 8
    wave_dim: int = 128
    num_latent_tokens: int = 128
    wave_heads: int = 4
    wave_ff: int = 2048
    wave_layers: int = 1

    def __post_init__(self) -> None:
        if (self.dim - METADATA_CHANNELS) % 4 or self.dim <= METADATA_CHANNELS + 4:
            raise ValueError(f"Clay dim {self.dim}: dim - 8 must be a positive multiple of 4")
        if self.wave_dim % 2 or self.wave_dim % self.wave_heads:
            raise ValueError(f"wave_dim {self.wave_dim} must be even and divisible by wave_heads")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (constructor keyword arguments)."""
        return asdict(self)


#: Named sizes: ``large`` is Clay v1.5; ``tiny`` and ``small`` share its layout for tests.
CLAY_SIZES: dict[str, ClayConfig] = {
    "large": ClayConfig(),
    "small": ClayConfig(dim=256, depth=4, heads=4, dim_head=64, wave_dim=64, num_latent_tokens=32,
                        wave_ff=256),
    "tiny": ClayConfig(dim=64, depth=2, heads=2, dim_head=64, mlp_ratio=2.0, wave_dim=32,
                       num_latent_tokens=16, wave_heads=4, wave_ff=64),
}  # fmt: skip


def clay_config(size: str = "large") -> ClayConfig:
    """Return the named Clay size (``large``, ``small``, ``tiny``).

    Raises:
        KeyError: For an unknown size, naming the known ones.

    """
    if size not in CLAY_SIZES:
        raise KeyError(f"unknown Clay size {size!r}; known sizes: {', '.join(CLAY_SIZES)}")
    return CLAY_SIZES[size]


def posemb_sincos_1d(waves: torch.Tensor, dim: int, temperature: int = 10000) -> torch.Tensor:
    """Sin-cos code of scalars: ``[sin(v ω_k), cos(v ω_k)]``, ``ω_k = T^{-k/(dim/2 - 1)}``.

    Args:
        waves: ``[N]`` values (wavelengths in micrometres).
        dim: Code width (even).
        temperature: ``T``.

    Returns:
        ``[N, dim]`` float32.

    """
    omega = torch.arange(dim // 2, device=waves.device) / (dim // 2 - 1)
    omega = 1.0 / (temperature**omega)
    scaled = waves[:, None] * omega[None, :]
    return torch.cat((scaled.sin(), scaled.cos()), dim=1).float()


def posemb_sincos_2d_with_gsd(
    h: int, w: int, dim: int, gsd: torch.Tensor, temperature: int = 10000
) -> torch.Tensor:
    """GSD-scaled 2-D sin-cos code (computed on the CPU, as the reference does).

    ``ω_k = T^{-2 (k / (n - 1)) / dim} · gsd`` for ``k < n = dim / 4``; for the grid cell
    ``(y, x)`` (row-major) the code is ``[sin(x ω), cos(x ω), sin(y ω), cos(y ω)]``.

    Returns:
        ``[h w, dim]`` float32.

    """
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    omega = torch.arange(dim // 4) / (dim // 4 - 1)
    omega = 1.0 / (temperature ** (2 * omega / dim)) * (gsd.cpu() / 1.0)
    ys = y.flatten()[:, None] * omega[None, :]
    xs = x.flatten()[:, None] * omega[None, :]
    return torch.cat((xs.sin(), xs.cos(), ys.sin(), ys.cos()), dim=1).float()


class FCBlock(nn.Module):
    """Residual two-layer MLP: ``e + gelu(l2(gelu(l1(e))))``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.l1 = nn.Linear(size, size)
        self.l2 = nn.Linear(size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``[N, size]``."""
        return x + F.gelu(self.l2(F.gelu(self.l1(x))))


class WavesTransformer(nn.Module):
    """Generates the patch-embedding kernel and bias from wavelength embeddings."""

    def __init__(self, config: ClayConfig) -> None:
        super().__init__()
        self.num_latent_tokens = config.num_latent_tokens
        layer = nn.TransformerEncoderLayer(
            d_model=config.wave_dim,
            nhead=config.wave_heads,
            dim_feedforward=config.wave_ff,
            activation="gelu",
            dropout=0.0,
            norm_first=False,
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.wave_layers, enable_nested_tensor=False)
        self.fc_weight = nn.Linear(config.wave_dim, config.patch_size**2 * config.dim)
        self.fc_bias = nn.Linear(config.wave_dim, config.dim)
        self.weight_tokens = nn.Parameter(torch.randn(config.num_latent_tokens, config.wave_dim) * 0.02)
        self.bias_token = nn.Parameter(torch.randn(1, config.wave_dim) * 0.02)

    def forward(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[C, wave_dim]`` -> (kernel rows ``[C, D P P]``, bias ``[D]``)."""
        tokens = torch.cat([self.weight_tokens, waves, self.bias_token], dim=0)
        out = self.encoder(tokens)
        n = self.num_latent_tokens
        weights = self.fc_weight(out[n:-1] + tokens[n:-1])
        return weights, self.fc_bias(out[-1])


class DynamicEmbedding(nn.Module):
    """DOFA-style patch embedding whose convolution kernel is generated from wavelengths."""

    def __init__(self, config: ClayConfig) -> None:
        super().__init__()
        self.wave_dim = config.wave_dim
        self.patch_size = config.patch_size
        self.embed_dim = config.dim
        self.weight_generator = WavesTransformer(config)
        self.fclayer = FCBlock(config.wave_dim)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, pixels: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
        """Embed ``[B, C, H, W]`` with wavelengths ``[C]`` into tokens ``[B, L, D]``."""
        codes = self.fclayer(posemb_sincos_1d(waves, self.wave_dim).to(pixels.device))
        weight, bias = self.weight_generator(codes)
        p = self.patch_size
        kernel = weight.reshape(weight.shape[0], self.embed_dim, p, p).transpose(0, 1)
        out = F.conv2d(pixels, kernel * DYNAMIC_WEIGHT_SCALE, bias=bias, stride=p)
        return out.flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Pre-norm multi-head self-attention without biases (names as in the reference)."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``to_out(softmax(q k^T / sqrt(d)) v)`` with ``q, k, v = to_qkv(LN(x))``."""
        b, n, _ = x.shape
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0)
        projected: torch.Tensor = self.to_out(out.transpose(1, 2).reshape(b, n, -1))
        return projected


class FeedForward(nn.Module):
    """``net = Sequential(LayerNorm, Linear(D, hidden), GELU, Linear(hidden, D))``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``net``."""
        out: torch.Tensor = self.net(x)
        return out


class Transformer(nn.Module):
    """``depth`` blocks ``[Attention, FeedForward]`` with residuals, then a final LayerNorm."""

    def __init__(self, config: ClayConfig) -> None:
        super().__init__()
        hidden = int(config.dim * config.mlp_ratio)
        self.norm = nn.LayerNorm(config.dim)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [Attention(config.dim, config.heads, config.dim_head), FeedForward(config.dim, hidden)]
            )
            for _ in range(config.depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the blocks and the final norm."""
        for block in self.layers:
            attn: nn.Module = block[0]  # type: ignore[index]
            ff: nn.Module = block[1]  # type: ignore[index]
            x = attn(x) + x
            x = ff(x) + x
        out: torch.Tensor = self.norm(x)
        return out


class ClayEncoder(nn.Module):
    """Clay v1.5 encoder; ``state_dict`` keys equal the official ``model.encoder.*`` keys.

    Args:
        config: Encoder shape (default Clay v1.5 large).

    """

    def __init__(self, config: ClayConfig | None = None) -> None:
        super().__init__()
        self.config = config or ClayConfig()
        self.dim = self.config.dim
        self.patch_size = self.config.patch_size
        self.cls_token = nn.Parameter(torch.randn(1, 1, self.dim) * 0.02)
        self.patch_embedding = DynamicEmbedding(self.config)
        self.transformer = Transformer(self.config)

    def forward(self, datacube: dict[str, Any]) -> torch.Tensor:
        """Encode a datacube into ``[B, 1 + L, D]`` tokens (CLS first, final LayerNorm applied).

        Args:
            datacube: ``pixels [B, C, H, W]`` (H, W multiples of the patch size),
                ``time [B, 4]``, ``latlon [B, 4]``, ``gsd`` (metres; float or one-element
                tensor), ``waves [C]`` (micrometres).

        """
        pixels: torch.Tensor = datacube["pixels"]
        b, _, height, width = pixels.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"Clay input {height}x{width} is not a multiple of the patch size {p}")
        waves = torch.as_tensor(datacube["waves"], dtype=torch.float32, device=pixels.device)
        gsd = torch.as_tensor(datacube["gsd"], dtype=torch.float32).reshape(())
        patches = self.patch_embedding(pixels, waves)
        position = posemb_sincos_2d_with_gsd(height // p, width // p, self.dim - METADATA_CHANNELS, gsd)
        metadata = torch.cat((datacube["time"], datacube["latlon"]), dim=1).to(patches)
        encoding = torch.cat(
            (
                position.to(patches)[None].expand(b, -1, -1),
                metadata[:, None, :].expand(-1, patches.shape[1], -1),
            ),
            dim=-1,
        )
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), patches + encoding), dim=1)
        out: torch.Tensor = self.transformer(tokens)
        return out

    def token_map(self, pixels: torch.Tensor, waves: torch.Tensor, gsd: float = 10.0) -> torch.Tensor:
        """Patch tokens as a feature map, CLS dropped; time and location unknown (zeros).

        Args:
            pixels: ``[B, C, H, W]`` normalised bands.
            waves: ``[C]`` wavelengths in micrometres.
            gsd: Ground sample distance in metres.

        Returns:
            ``[B, D, H / P, W / P]``.

        """
        b, _, height, width = pixels.shape
        zeros = pixels.new_zeros(b, 4)
        cube = {"pixels": pixels, "time": zeros, "latlon": zeros, "gsd": gsd, "waves": waves}
        tokens: torch.Tensor = self(cube)[:, 1:]
        p = self.patch_size
        return tokens.transpose(1, 2).reshape(b, self.dim, height // p, width // p)

    @classmethod
    def from_checkpoint(cls, path: str | Path, dim_head: int = 64, wave_heads: int = 4) -> ClayEncoder:
        """Build an encoder whose shape is inferred from a checkpoint and load it strictly.

        Accepts the official Lightning checkpoint (``state_dict`` with ``model.encoder.*``
        keys; other keys ignored), a bare encoder state dict, or a ``.safetensors`` file.
        Pickled files are read with ``torch.load(weights_only=True)``: they cannot run code.

        Args:
            path: Checkpoint file.
            dim_head: Attention head width (not recoverable from shapes; Clay uses 64).
            wave_heads: Weight-generator heads (not recoverable from shapes; Clay uses 4).

        Raises:
            CheckpointError: Unreadable or unsafe file, or keys that do not match (named).

        """
        from pipeline.models.clay_weights import load_clay_state_dict

        return load_clay_state_dict(path, cls, dim_head=dim_head, wave_heads=wave_heads)

    @classmethod
    def from_pretrained(
        cls, cache_dir: str | Path | None = None, local_files_only: bool = False
    ) -> ClayEncoder:
        """Download ``v1.5/clay-v1.5.ckpt`` from ``made-with-clay/Clay`` (5.2 GB) and load it.

        Raises:
            CheckpointError: Offline or download failed (one line: where to get the file and
                to pass ``--clay-checkpoint PATH``), or a bad file.

        """
        from pipeline.models.clay_weights import download_clay_checkpoint

        return cls.from_checkpoint(download_clay_checkpoint(cache_dir, local_files_only))
