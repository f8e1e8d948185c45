"""VGG-19 layer names and shapes (torchvision's ``vgg19().features`` numbering). No torch."""

from __future__ import annotations

# torchvision's vgg19().features, module by module.
_BLOCKS = (2, 2, 4, 4, 4)
_CHANNELS = (64, 128, 256, 512, 512)


def _layer_names() -> tuple[str, ...]:
    names = []
    for block, (n_convs, _) in enumerate(zip(_BLOCKS, _CHANNELS), start=1):
        for conv in range(1, n_convs + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return tuple(names)


LAYER_NAMES: tuple[str, ...] = _layer_names()
LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(LAYER_NAMES)}
CONV_INDICES: tuple[int, ...] = tuple(i for i, n in enumerate(LAYER_NAMES) if n.startswith("conv"))
POOL_INDICES: tuple[int, ...] = tuple(i for i, n in enumerate(LAYER_NAMES) if n.startswith("pool"))


def _conv_shapes() -> dict[int, tuple[int, int]]:
    shapes, in_ch = {}, 3
    conv_iter = iter(CONV_INDICES)
    for n_convs, out_ch in zip(_BLOCKS, _CHANNELS):
        for _ in range(n_convs):
            shapes[next(conv_iter)] = (out_ch, in_ch)
            in_ch = out_ch
    return shapes


CONV_SHAPES: dict[int, tuple[int, int]] = _conv_shapes()  # index -> (out channels, in channels)


def layer_index(name: str) -> int:
    try:
        return LAYER_INDEX[name]
    except KeyError:
        raise ValueError(f"unknown VGG-19 layer {name!r}; layers are named like conv1_1, relu4_2, pool3 "
                         f"(from conv1_1 to pool5)") from None


def min_input_size(deepest: int) -> int:
    """Smallest side an input may have so that every pooling up to module ``deepest`` sees >= 1 px."""
    return 2 ** sum(1 for p in POOL_INDICES if p <= deepest)


def conv_macs(width: int, height: int, deepest: int) -> int:
    """Multiply-accumulates of the 3x3 convolutions from the input up to module ``deepest``, one image.

    One optimisation step costs about twice this (the forward pass, and the backward pass to the
    input, which needs no weight gradients), i.e. 4x this in FLOPs.
    """
    total = 0
    for i in range(deepest + 1):
        if i in CONV_SHAPES:
            out_ch, in_ch = CONV_SHAPES[i]
            total += width * height * out_ch * in_ch * 9
        elif i in POOL_INDICES:
            width, height = width // 2, height // 2
    return total


__all__ = ["conv_macs", "LAYER_NAMES", "LAYER_INDEX", "CONV_INDICES", "POOL_INDICES", "CONV_SHAPES", "layer_index",
           "min_input_size"]
