"""Single-path (SPOS / FairNAS / BN-NAS) supernet of MobileNetV2 blocks.

Topology::

    stem: conv3x3(stem_channels, stride stem_strides) BN ReLU6
    layers: for each stage (channels, depth, stride), ``depth`` search layers;
        the first has the stage's stride. Layer ``i`` is
        ``MixedOp(candidates, mode, channels, strides, name=f"layer{i}")``;
        a stride-1 layer with equal input and output widths adds its input
        (MobileNetV2 shortcut, an ``Add`` named ``layer{i}_add``)
    head: conv1x1(head_channels) BN ReLU6 -> global average pooling -> dense (logits)

Candidates: ``mb_k{3,5,7}_e{3,6}`` (``searchlayers.layers.MB_OPS``), each ending
with BatchNormalization (the BN indicator reads it). With ``skip=True`` the
layers that have a shortcut also offer ``"zeroise"``: the layer becomes the
identity (in ``derive`` the edge and its compute disappear). The BN-NAS paper
leaves identity out (it has no BN to score); ``bn_score`` then needs a
``missing=`` score.

Single-path modes only: one candidate per layer runs each step
(``tf.switch_case``); "uniform" draws it uniformly, "fair" strictly fairly.

Example:
    >>> from models.spos import spos_supernet
    >>> model = spos_supernet(stages=((8, 1, 1), (16, 2, 2)))
    >>> model.output_shape
    (None, 10)
    >>> [l.name for l in model.layers if l.name.startswith("layer") and "_" not in l.name]
    ['layer0', 'layer1', 'layer2']
"""

from searchlayers._keras import keras
from searchlayers.layers import MB_OPS, MixedOp, get_op

L = keras.layers
MODES = ("uniform", "fair")
# (channels, depth, stride) per stage; sized for 8x8 digits (a few s/epoch on CPU).
DIGITS_STAGES = ((16, 2, 1), (24, 2, 2), (32, 2, 2))


def spos_supernet(input_shape=(8, 8, 1), num_classes=10, stages=DIGITS_STAGES,
                  stem_channels=16, stem_strides=1, head_channels=64, ops=MB_OPS,
                  skip=False, mode="uniform", transition_op=None, seed=0,
                  name="spos_supernet"):
    """Builds the supernet (a Functional model, logits output).

    Args:
        stages: ``(channels, depth, stride)`` per stage.
        ops: candidate op names of every search layer (default: the six MB ops).
        skip: also offer ``"zeroise"`` (layer = identity) where there is a shortcut.
        mode: "uniform" (SPOS) or "fair" (FairNAS).
        transition_op: when given (an op name, e.g. "mb_k3_e6"), the layers
            without a shortcut (a stage's first layer when it changes the
            stride or width) are that fixed op (named ``fixed{i}``) instead of
            search layers, as the BN-NAS space fixes some layers; then every
            search layer is residual.
        seed: layer ``i`` samples with seed ``seed + i``.

    Example:
        >>> m = spos_supernet(stages=((8, 2, 1),), skip=True)
        >>> m.get_layer("layer1").choice_names[-1]
        'zeroise'
    """
    if mode not in MODES:
        raise ValueError(f"spos_supernet: mode must be one of {MODES} (single path), got {mode!r}.")
    if not ops:
        raise ValueError("spos_supernet: `ops` is empty; give at least one candidate op name.")
    for stage in stages:
        if len(stage) != 3 or min(int(v) for v in stage) < 1:
            raise ValueError(
                f"spos_supernet: each stage is (channels, depth, stride) of positive ints, "
                f"got {stage!r}."
            )
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(stem_channels, 3, stem_strides, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    width, index = stem_channels, 0
    for channels, depth, stride in stages:
        for d in range(int(depth)):
            strides = int(stride) if d == 0 else 1
            shortcut = strides == 1 and width == channels
            if transition_op is not None and not shortcut:
                op = get_op(transition_op, channels, strides, where="spos_supernet")
                op._name = f"fixed{index}"
                x = op(x)
                width, index = channels, index + 1
                continue
            candidates = list(ops) + (["zeroise"] if skip and shortcut else [])
            y = MixedOp(candidates, mode=mode, channels=channels, strides=strides,
                        seed=seed + index, name=f"layer{index}")(x)
            x = L.Add(name=f"layer{index}_add")([x, y]) if shortcut else y
            width, index = channels, index + 1
    x = L.Conv2D(head_channels, 1, use_bias=False, name="head_conv")(x)
    x = L.BatchNormalization(momentum=0.9, name="head_bn")(x)
    x = L.ReLU(6.0, name="head_relu")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
