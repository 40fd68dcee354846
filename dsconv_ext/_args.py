"""Normalisation of stride / padding / dilation arguments, as F.conv2d accepts them."""
from typing import List, Sequence, Tuple, Union

IntOrPair = Union[int, Sequence[int]]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def pair(value: IntOrPair, name: str) -> List[int]:
    """An int or a 2-sequence of ints, as a list of two ints."""
    if _is_int(value):
        return [value, value]
    if isinstance(value, (tuple, list)):
        if len(value) == 1 and _is_int(value[0]):
            return [value[0], value[0]]
        if len(value) == 2 and all(_is_int(v) for v in value):
            return [value[0], value[1]]
        raise ValueError(f"dsconv: {name} must be an int or a pair of ints, got {value!r}")
    raise TypeError(f"dsconv: {name} must be an int or a pair of ints, got {type(value).__name__}")


def resolve_padding(
    padding: Union[str, IntOrPair], kernel_size: Sequence[int], stride: List[int], dilation: List[int]
) -> List[int]:
    """Padding as (top, bottom, left, right).

    'same' follows PyTorch exactly: total = dilation * (k - 1), left/top = total // 2 and the odd
    remainder goes to the right/bottom (so even kernels pad asymmetrically).
    """
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0, 0, 0]
        if padding == "same":
            if stride != [1, 1]:
                raise ValueError(f"dsconv: padding='same' is not supported for strided convolutions (stride={stride})")
            out: List[int] = []
            for k, d in zip(kernel_size, dilation):
                total = d * (k - 1)
                out += [total // 2, total - total // 2]
            return out
        raise ValueError(f"dsconv: invalid padding string {padding!r}, should be one of 'valid', 'same'")
    ph, pw = pair(padding, "padding")
    return [ph, ph, pw, pw]


def conv_args(
    weight_shape: Sequence[int], stride: IntOrPair, padding, dilation: IntOrPair
) -> Tuple[List[int], List[int], List[int]]:
    s = pair(stride, "stride")
    d = pair(dilation, "dilation")
    return s, resolve_padding(padding, list(weight_shape[2:]), s, d), d
