"""Which axis order each tensor has after onnx2tf, and which it should have.

onnx2tf moves image tensors to channels-last; a permutation ``perm`` says
how: the model's tensor is the ONNX (PyTorch) tensor transposed by ``perm``
(perm[i] = the PyTorch axis the model's axis i holds). Shapes alone are
ambiguous (1x16x16x16), so an output's perm is the candidate whose numbers
match onnxruntime's best. Python 3.8 syntax, numpy only.
"""
import itertools


def identity(rank):
    return list(range(rank))


def channels_last(rank):
    """NCHW -> NHWC (and NCDHW -> NDHWC): the channel axis moves to the end."""
    return [0] + list(range(2, rank)) + [1] if rank >= 3 else identity(rank)


def keeps_layout(rank, layout):
    """Whether onnx2tf is told to keep an input's PyTorch layout: always for
    --layout nchw; otherwise for sequences (rank 3: onnx2tf would turn
    (batch, length, features) into (batch, features, length), which no user
    of a sequence model expects, and which costs a Transpose in RNNs)."""
    return layout == "nchw" or rank == 3


def input_target(rank, layout):
    """The perm an input gets: PyTorch's when kept, else channels-last."""
    if keeps_layout(rank, layout) or rank not in (4, 5):
        return identity(rank)
    return channels_last(rank)


def output_target(rank, found, layout):
    """The perm an output is given: PyTorch's for --layout nchw, channels-last
    images for nhwc, and whatever onnx2tf gave when no layout is asked for."""
    if layout == "nchw":
        return identity(rank)
    if layout == "nhwc":
        return channels_last(rank) if rank in (4, 5) else identity(rank)
    return list(found)


def candidates(onnx_shape, tf_shape, prefer=None):
    """Every perm p with tf_shape[i] == onnx_shape[p[i]] (None: any size),
    the preferred one first, then identity, then channels-last."""
    rank = len(onnx_shape)
    if len(tf_shape) != rank:
        return []
    out = []
    for p in itertools.permutations(range(rank)):
        if all(tf_shape[i] is None or onnx_shape[p[i]] is None or tf_shape[i] == onnx_shape[p[i]]
               for i in range(rank)):
            out.append(list(p))
    order = [prefer, identity(rank), channels_last(rank)]
    out.sort(key=lambda p: order.index(p) if p in order else len(order))
    return out


def best_perm(np, ref, got):
    """(perm, max abs error) of the candidate that maps ``ref`` (ONNX layout)
    onto ``got`` best; (None, inf) when no perm fits the shapes."""
    best = (None, float("inf"))
    for perm in candidates(list(ref.shape), list(got.shape)):
        err = float(np.max(np.abs(got.astype(np.float64) - ref.transpose(perm)))) if got.size else 0.0
        if err < best[1]:
            best = (perm, err)
    return best


def move(perm_from, perm_to):
    """The transpose that takes a tensor laid out by perm_from to perm_to."""
    inverse = [0] * len(perm_from)
    for i, axis in enumerate(perm_from):
        inverse[axis] = i
    return [inverse[axis] for axis in perm_to]
