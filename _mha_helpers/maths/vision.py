"""Notebook 07's Vision Transformer section: a small image made in code, cut into patches, each patch flattened and
projected to a token (plus a class token and 2-D positions), and attention maps drawn back onto the image grid.

The image is attended over by the same ``MultiHeadAttention`` as text (Dosovitskiy et al., 2021, "An Image is Worth
16x16 Words"): only how tokens are made and where positions come from differ.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from torch import nn

from ..common import sinusoidal_positions
from ..validation import check_fits, check_float_tensor, check_has_values, check_index, check_positive_int, check_str

#: The colours of the toy image's shapes (RGB in [0, 1]).
SHAPE_COLOURS = {"red square": (0.90, 0.20, 0.20), "green disk": (0.20, 0.75, 0.30), "blue bar": (0.20, 0.35, 0.90)}


def toy_image(size: int = 24) -> torch.Tensor:
    """A ``(3, size, size)`` RGB image in [0, 1], made in code: a red square (top left), a green disk (bottom right)
    and a blue bar (bottom left) on a dark grey background. No randomness: the same image every time."""
    check_positive_int("size", size)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels to hold three shapes, got size={size}")
    check_fits({"size": size}, 24 * size * size, "the image", "notebook 07 draws images of 24 to 64 pixels")
    image = torch.full((3, size, size), 0.15)  # (channels, height, width), dark grey
    rows = torch.arange(size, dtype=torch.float32)[:, None]  # (size, 1)
    cols = torch.arange(size, dtype=torch.float32)[None, :]  # (1, size)
    u = size / 24  # the layout is drawn for 24 pixels and scaled
    square = (rows >= 1 * u) & (rows < 10 * u) & (cols >= 1 * u) & (cols < 10 * u)
    disk = (rows - 17 * u) ** 2 + (cols - 17 * u) ** 2 <= (5 * u) ** 2
    bar = (rows >= 19 * u) & (rows < 22 * u) & (cols >= 1 * u) & (cols < 11 * u)
    for shape, region in (("red square", square), ("green disk", disk), ("blue bar", bar)):
        for c, value in enumerate(SHAPE_COLOURS[shape]):
            image[c][region] = value
    return image


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping ``patch_size x patch_size`` patches and flatten each one.

    ``images`` ``(batch, channels, H, W)`` (or one image ``(channels, H, W)``) with H and W multiples of
    ``patch_size`` -> ``(batch, num_patches, channels · patch_size²)`` (or ``(num_patches, ...)``), patches in
    reading order: row by row, left to right, so patch n sits at grid row ``n // (W / p)``, column ``n % (W / p)``.
    """
    check_float_tensor("images", images, ranks=(3, 4), layout="(batch, channels, H, W) or (channels, H, W)")
    check_positive_int("patch_size", patch_size)
    single = images.dim() == 3
    x = images.unsqueeze(0) if single else images  # (batch, C, H, W)
    batch, C, H, W = x.shape
    if H % patch_size or W % patch_size:
        raise ValueError(f"the image is {H} x {W} pixels, not a multiple of patch_size={patch_size}; "
                         f"pick a patch size that divides both")
    gh, gw = H // patch_size, W // patch_size
    x = x.reshape(batch, C, gh, patch_size, gw, patch_size)  # (batch, C, H, W) -> (batch, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # -> (batch, gh, gw, C, p, p): one (C, p, p) block per grid cell
    x = x.reshape(batch, gh * gw, C * patch_size * patch_size)  # -> (batch, num_patches, C·p·p)
    return x[0] if single else x


def positions_2d(grid_h: int, grid_w: int, d_model: int) -> torch.Tensor:
    """2-D sinusoidal positions for a ``grid_h x grid_w`` grid of patches: ``(grid_h · grid_w, d_model)``.

    The first half of the features encodes the patch's ROW and the second half its COLUMN, each with the 1-D
    sine/cosine encoding of notebook 01 (``sinusoidal_positions``); so patches in one row share the first half, and
    patches in one column the second. ``d_model`` must be even.
    """
    for name, value in (("grid_h", grid_h), ("grid_w", grid_w), ("d_model", d_model)):
        check_positive_int(name, value)
    if d_model % 2:
        raise ValueError(f"d_model must be even (half for rows, half for columns), got d_model={d_model}")
    check_fits({"grid_h": grid_h, "grid_w": grid_w, "d_model": d_model}, 16 * grid_h * grid_w * d_model,
               "the positions", "notebook 07 uses grids of a few patches a side")
    half = d_model // 2
    row = sinusoidal_positions(grid_h, half)  # (grid_h, half)
    col = sinusoidal_positions(grid_w, half)  # (grid_w, half)
    rows = row[:, None, :].expand(grid_h, grid_w, half)  # (grid_h, grid_w, half): the row's code in every column
    cols = col[None, :, :].expand(grid_h, grid_w, half)  # (grid_h, grid_w, half)
    return torch.cat([rows, cols], dim=-1).reshape(grid_h * grid_w, d_model)  # (num_patches, d_model)


class PatchEmbedding(nn.Module):
    """Image -> tokens, as a Vision Transformer makes them: patches, a linear projection, 2-D positions, a class token.

    ``PatchEmbedding(image_size, patch_size, d_model, channels=3)``: ``W_patch: Linear(channels · patch_size² ->
    d_model)`` projects each flattened patch; :func:`positions_2d` is added to every patch token; a ``class_token``
    ``(1, 1, d_model)`` (a learned parameter in a real ViT, random here) is put in front, with no position.

    ``forward(images)``: ``(batch, channels, H, W)`` -> ``(batch, 1 + num_patches, d_model)``; token 0 is the
    class token, token ``1 + n`` is patch n (reading order, see :func:`patchify`).
    """

    def __init__(self, image_size: int, patch_size: int, d_model: int, channels: int = 3) -> None:
        super().__init__()
        for name, value in (("image_size", image_size), ("patch_size", patch_size), ("d_model", d_model),
                            ("channels", channels)):
            check_positive_int(name, value)
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not a multiple of patch_size={patch_size}")
        grid = image_size // patch_size
        check_fits({"image_size": image_size, "patch_size": patch_size, "d_model": d_model, "channels": channels},
                   4 * d_model * (channels * patch_size * patch_size + 2 * grid * grid + 2), "the weights and positions",
                   "notebook 07 uses images of 24 to 64 pixels and d_model up to a few hundred")
        self.image_size, self.patch_size, self.d_model, self.channels = image_size, patch_size, d_model, channels
        self.grid = image_size // patch_size
        self.W_patch = nn.Linear(channels * patch_size * patch_size, d_model)
        self.class_token = nn.Parameter(torch.randn(1, 1, d_model))
        self.register_buffer("positions", positions_2d(self.grid, self.grid, d_model), persistent=False)

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_float_tensor("images", images, ranks=(4,), layout="(batch, channels, H, W)")
        want = (self.channels, self.image_size, self.image_size)
        if tuple(images.shape[1:]) != want:
            raise ValueError(f"images must be (batch, {want[0]}, {want[1]}, {want[2]}), got {tuple(images.shape)}")
        return self.embed_patches(patchify(images, self.patch_size))  # (batch, num_patches, C·p·p) -> tokens

    def embed_patches(self, patches: torch.Tensor, with_positions: bool = True) -> torch.Tensor:
        """Flattened patches ``(batch, num_patches, C·p·p)`` -> tokens ``(batch, 1 + num_patches, d_model)``.

        ``with_positions=False`` leaves the 2-D positions out: then nothing in a token says where its patch was.
        """
        check_float_tensor("patches", patches, ranks=(3,), layout="(batch, num_patches, channels · patch_size²)")
        want = (self.num_patches, self.W_patch.in_features)
        if tuple(patches.shape[1:]) != want:
            raise ValueError(f"patches must be (batch, {want[0]}, {want[1]}), got {tuple(patches.shape)}")
        tokens = self.W_patch(patches)  # (batch, num_patches, d_model)
        if with_positions:
            tokens = tokens + self.positions  # (num_patches, d_model) broadcast over the batch
        cls = self.class_token.expand(patches.shape[0], 1, self.d_model)  # (batch, 1, d_model)
        return torch.cat([cls, tokens], dim=1)  # (batch, 1 + num_patches, d_model)


def plot_patch_tokens(image: torch.Tensor, patch_size: int, tokens: torch.Tensor | None = None) -> Figure:
    """Draw the image with its patch grid and numbers, the flattened patches, and (if given) the tokens; a Figure.

    ``image`` ``(3, H, W)``; ``tokens`` ``(1 + num_patches, d_model)`` from :class:`PatchEmbedding` (class token first).
    """
    import matplotlib.pyplot as plt

    check_float_tensor("image", image, ranks=(3,), layout="(3, H, W)")
    check_has_values("image", image)
    if tokens is not None:
        check_float_tensor("tokens", tokens, ranks=(2,), layout="(1 + num_patches, d_model)")
    patches = patchify(image, patch_size)  # (num_patches, C·p·p)
    H, W = image.shape[1:]
    gw = W // patch_size
    ncols = 3 if tokens is not None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.8), gridspec_kw={"width_ratios": [1, 1.6, 1.1][:ncols]})
    ax = axes[0]
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    for k in range(1, H // patch_size):
        ax.axhline(k * patch_size - 0.5, color="white", lw=1)
    for k in range(1, gw):
        ax.axvline(k * patch_size - 0.5, color="white", lw=1)
    for n in range(patches.shape[0]):
        r, c = divmod(n, gw)
        ax.text(c * patch_size + 1, r * patch_size + 2.5, str(n), color="white", fontsize=8, fontweight="bold")
    ax.set_title(f"the image, {H} x {W}: {patches.shape[0]} patches of {patch_size} x {patch_size}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax = axes[1]
    ax.imshow(patches.numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel(f"pixel values of one patch, flattened ({patches.shape[1]} = 3 x {patch_size} x {patch_size})")
    ax.set_ylabel("patch n")
    ax.set_title("each patch flattened: one row per patch", fontsize=9)
    if tokens is not None:
        ax = axes[2]
        ax.imshow(tokens.detach().numpy(), aspect="auto", cmap="RdBu_r", interpolation="nearest")
        ax.set_yticks(range(tokens.shape[0]), ["cls"] + [f"p{n}" for n in range(tokens.shape[0] - 1)], fontsize=7)
        ax.set_xlabel("feature (d_model)")
        ax.set_title("tokens = W_patch(patch) + 2-D position;\nrow 0 is the class token", fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.15, top=0.86, wspace=0.25)  # fixed: tight_layout costs ~0.5 s
    return fig


def plot_patch_attention(weights: torch.Tensor, image: torch.Tensor, patch_size: int, query: int = 0,
                         title: str | None = None) -> Figure:
    """Draw one query token's attention, head by head, back onto the image grid; returns the Figure.

    ``weights`` ``(num_heads, 1 + num_patches, 1 + num_patches)`` (class token first); ``query`` is the token whose
    row is drawn (0 = the class token, ``1 + n`` = patch n). Each panel shows the image with the weight of every
    patch as brightness over its cell (each panel scaled from its own smallest to its largest weight), with the
    outlines of the image's shapes on top; the weight the query puts on the class token is written in the title.
    """
    import matplotlib.pyplot as plt

    check_float_tensor("weights", weights, ranks=(3,), layout="(num_heads, 1 + num_patches, 1 + num_patches)")
    check_float_tensor("image", image, ranks=(3,), layout="(3, H, W)")
    check_has_values("weights", weights)
    check_has_values("image", image)
    check_positive_int("patch_size", patch_size)
    if title is not None:
        check_str("title", title)
    num_heads, T, _ = weights.shape
    H, W = image.shape[1:]
    gh, gw = H // patch_size, W // patch_size
    if T != 1 + gh * gw:
        raise ValueError(f"weights cover {T} tokens but the image of {H} x {W} pixels cut into patches of patch_size="
                         f"{patch_size} has 1 + {gh * gw} (class token + patches)")
    check_index("query", query, T, "a token index (0 = the class token) in")
    row = weights[:, query].detach()  # (num_heads, 1 + num_patches)
    fig, axes = plt.subplots(1, num_heads, figsize=(2.6 * num_heads, 3.0))
    axes = [axes] if num_heads == 1 else list(axes)
    shapes = ((image - image[:, :1, :1]).abs().sum(dim=0) > 0.1).float().numpy()  # (H, W): 1 inside a shape
    for h, ax in enumerate(axes):
        grid = row[h, 1:].reshape(gh, gw)  # (gh, gw): patch n at (n // gw, n % gw)
        ax.imshow(grid.numpy(), cmap="magma", extent=(-0.5, W - 0.5, H - 0.5, -0.5), interpolation="nearest")
        ax.contour(shapes, levels=[0.5], colors="white", linewidths=1.2)  # the shapes' outlines, on top
        if query > 0:
            r, c = divmod(query - 1, gw)
            ax.add_patch(plt.Rectangle((c * patch_size - 0.5, r * patch_size - 0.5), patch_size, patch_size,
                                       fill=False, edgecolor="cyan", lw=2))
        ax.set_title(f"head {h}: on cls {row[h, 0]:.2f}\nlargest patch {row[h, 1:].max():.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    who = "the class token" if query == 0 else f"patch {query - 1} (cyan)"
    fig.suptitle(title or f"where {who} looks, per head (brighter = more weight; white: the shapes)", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.78, wspace=0.08)  # fixed, room for the suptitle
    return fig
