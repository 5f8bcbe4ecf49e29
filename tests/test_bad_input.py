"""Bad input never passes silently: one table of bad calls across the public API.

Each row is a call a careless user could make, the exception it must raise and
a pattern its one-line message must match: the function or layer, the argument
(or the value) and what is allowed. The rows marked "Why" are the examples of
issue 13 (silent or cryptic before). Larger cases (a NaN search, int8 export,
the relaxations at extreme temperatures) have their own modules
``test_bad_input_*.py``.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers import (
    baselines, budget, checks, cost, datasets, decision, evolution, export, regularizers, relax,
    retrain, schedules, transforms, tuning,
)
from searchlayers.architecture import Architecture
from searchlayers.derive import best_of_k
from searchlayers.callbacks import (
    ArchWarmup, BNScoreEvaluator, EntropyRegularizer, FLOPsRegularizer, TemperatureScheduler,
)
from searchlayers.decision import DecisionTracker
from searchlayers.layers.binary import (
    BinaryConvBN, BinaryConvShortcut, BinaryReduce, ScaledSign,
)
from searchlayers.layers.entrannas import top_k_selection
from searchlayers.layers.ops import FactorizedReduce
from searchlayers.schedules import SearchSchedule
from searchlayers.search import NonFiniteGuard, SearchModel

K = sl.keras
NAN = float("nan")
OPS = ["conv_3x3", "skip_connect", "none"]
X = np.zeros((4, 8, 8, 1), np.float32)
Y = np.zeros(4, np.int32)
_XY = tf.data.Dataset.from_tensors((X, Y))
_PAIRS = tf.data.Dataset.zip((_XY, _XY))
DATA = ((X, Y), (X, Y))  # (train, test) arrays for retrain
X_NAN = np.where(np.arange(X.size).reshape(X.shape) == 7, NAN, X).astype(np.float32)


@pytest.fixture(scope="module")
def m():
    """Tiny built models shared by the rows (no row changes them)."""
    net = K.Sequential([
        K.Input((8, 8, 1)),
        K.layers.Conv2D(4, 3, padding="same"),
        sl.MixedOp(OPS, name="edge"),
        K.layers.GlobalAveragePooling2D(),
        K.layers.Dense(10),
    ], name="net")
    net.compile("sgd", K.losses.SparseCategoricalCrossentropy(from_logits=True))
    mask = sl.FiGSMask(name="mask")
    mask.build([None, 4])
    no_affine = K.Sequential([K.Input((4,)), K.layers.Dense(3),
                              K.layers.BatchNormalization(center=False, scale=False)])
    search = SearchModel(net)
    search.compile("sgd", K.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain = K.Sequential([K.Input((8, 8, 1)), K.layers.Flatten(), K.layers.Dense(10)],
                         name="plain")
    joint = SearchModel(net, bilevel=False)
    joint.compile("sgd", K.losses.SparseCategoricalCrossentropy(from_logits=True))
    arch = Architecture({"edge": 0})
    child = sl.derive(net, architecture=arch)
    return dict(net=net, edge=net.get_layer("edge"), mask=mask, no_affine=no_affine,
                search=search, joint=joint, plain=plain, arch=arch, child=child,
                flatbuffer=export.to_tflite(child))


def _bad_hp():
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Choice("method", ["darts"])
    hp.Choice("budget", [1.0, 0.0])
    return hp


def _nan_gamma_score():
    op = sl.layers.get_op("mb_k3_e3", 4, 1)
    op.build((None, 4, 4, 4))
    bn = sl.bn_score.last_batchnorm(op)
    bn.gamma.assign(np.where(np.arange(bn.gamma.shape[0]) == 1, NAN, 1.0))
    return sl.bn_score.op_score(op)


def _width_gate_same_channels():
    sl.WidthGate(widths=[0.5, 0.6, 1.0], name="w").build((None, 8))


def _fit_bn_evaluator(m):
    net = m["net"]
    net.fit(X, Y, epochs=1, verbose=0, callbacks=[BNScoreEvaluator()])


# (id, call(m), exception type, pattern of the message)
CASES = [
    # -- checks: the helper itself ------------------------------------------------------
    ("checks-str-number", lambda m: checks.number("f", "x", "1"), TypeError,
     r"f: x must be a finite number, got '1' \(str\)"),
    ("checks-bool-number", lambda m: checks.number("f", "x", True), TypeError,
     r"f: x must be a finite number, got True \(bool\)"),
    ("checks-choice", lambda m: checks.choice("f", "x", "c", ("a", "b")), ValueError,
     r"f: unknown x 'c'; allowed: 'a', 'b'"),
    ("checks-finite-array", lambda m: checks.finite_array("f", "x", [1.0, NAN]), ValueError,
     r"f: x must be finite, but 1 of its 2 entries are NaN or inf"),
    ("checks-sequence-str", lambda m: checks.sequence("f", "x", "abc"), TypeError,
     r"f: x must be a list, got 'abc' \(str\)"),
    ("checks-integer-float", lambda m: checks.integer("f", "k", 2.5, low=1), ValueError,
     r"f: k must be an integer >= 1, got 2.5"),
    # -- relax -----------------------------------------------------------------------------
    ("relax-underflow (Why)", lambda m: relax.check_temperature(1e-30, "MixedOp 'op'"),
     ValueError, r"MixedOp 'op': temperature must be a finite number >= 1e-06, got 1e-30"),
    ("relax-zero", lambda m: relax.check_temperature(0.0, "w"), ValueError,
     r"w: temperature must be a finite number >= 1e-06, got 0.0"),
    ("relax-inf", lambda m: relax.check_temperature(float("inf"), "w"), ValueError,
     r"temperature must be a finite number >= 1e-06, got inf"),
    ("relax-string (Why)", lambda m: relax.check_temperature("hot", "w"), TypeError,
     r"w: temperature must be a finite number >= 1e-06, got 'hot' \(str\)"),
    # -- MixedOp ---------------------------------------------------------------------------
    ("mixedop-string-candidates (Why)", lambda m: sl.MixedOp("skip_connect", name="a"),
     TypeError, r"MixedOp 'a': candidates must be a list of op names or Keras layers, got "
     r"'skip_connect' \(str\)"),
    ("mixedop-no-candidates", lambda m: sl.MixedOp([], name="a"), ValueError,
     r"MixedOp 'a': candidates must be a list of op names or Keras layers with at least one"),
    ("mixedop-unknown-op", lambda m: sl.MixedOp(["sep_conv_9x9"], name="a"), ValueError,
     r"MixedOp 'a': unknown candidate op 'sep_conv_9x9'. Registered ops:.*skip_connect"),
    ("mixedop-number-candidate", lambda m: sl.MixedOp([3], name="a"), TypeError,
     r"MixedOp 'a': a candidate must be an op name or a Keras layer, got int"),
    ("mixedop-channels-0 (Why)", lambda m: sl.MixedOp(OPS, channels=0, name="a"), ValueError,
     r"MixedOp 'a': channels must be an integer >= 1 or None, got 0"),
    ("mixedop-channels-float", lambda m: sl.MixedOp(OPS, channels=2.5, name="a"), ValueError,
     r"MixedOp 'a': channels must be an integer >= 1 or None, got 2.5"),
    ("mixedop-strides-0", lambda m: sl.MixedOp(OPS, strides=0, name="a"), ValueError,
     r"MixedOp 'a': strides must be an integer >= 1, got 0"),
    ("mixedop-mode", lambda m: sl.MixedOp(OPS, mode="argmax", name="a"), ValueError,
     r"MixedOp 'a': unknown mode 'argmax'; allowed: softmax, gumbel"),
    ("mixedop-temperature-1e-30 (Why)", lambda m: sl.MixedOp(OPS, temperature=1e-30, name="a"),
     ValueError, r"MixedOp 'a': temperature must be a finite number >= 1e-06, got 1e-30"),
    ("mixedop-temperature-str", lambda m: sl.MixedOp(OPS, temperature="1", name="a"),
     TypeError, r"MixedOp 'a': temperature must be a finite number >= 1e-06, got '1' \(str\)"),
    ("mixedop-set-choice-range", lambda m: m["edge"].set_choice(7), ValueError,
     r"MixedOp 'edge': choice must be an integer index in 0..2 \(0: conv_3x3, 1: "
     r"skip_connect, 2: none\), got 7"),
    ("mixedop-set-choice-2.7", lambda m: m["edge"].set_choice(2.7), ValueError,
     r"MixedOp 'edge': choice must be an integer index in 0..2 .*got 2.7"),
    ("mixedop-set-choice-list", lambda m: m["edge"].set_choice([]), TypeError,
     r"MixedOp 'edge': choice must be an integer index in 0..2 .*got \[\] \(list\)"),
    ("mixedop-set-choice-name", lambda m: m["edge"].set_choice("conv_3x3"), TypeError,
     r"MixedOp 'edge': choice must be an integer index .*got 'conv_3x3' \(str\)"),
    # -- FiGSMask --------------------------------------------------------------------------
    ("figs-initial-logit-nan (Why)", lambda m: sl.FiGSMask(initial_logit=NAN, name="f"),
     ValueError, r"FiGSMask 'f': initial_logit must be a finite number, got nan"),
    ("figs-initial-logit-str", lambda m: sl.FiGSMask(initial_logit="2", name="f"), TypeError,
     r"FiGSMask 'f': initial_logit must be a finite number, got '2' \(str\)"),
    ("figs-hard-str", lambda m: sl.FiGSMask(hard="yes", name="f"), TypeError,
     r"FiGSMask 'f': hard must be True or False, got 'yes' \(str\)"),
    ("figs-temperature-0", lambda m: sl.FiGSMask(temperature=0, name="f"), ValueError,
     r"FiGSMask 'f': temperature must be a finite number >= 1e-06, got 0"),
    ("figs-set-choice-empty (Why)", lambda m: m["mask"].set_choice([]), ValueError,
     r"FiGSMask 'mask': choice must be a non-empty list of distinct channel indices in "
     r"0..3, got \[\]"),
    ("figs-set-choice-duplicates", lambda m: m["mask"].set_choice([1, 1]), ValueError,
     r"FiGSMask 'mask': choice must be a non-empty list of distinct channel indices"),
    ("figs-set-choice-range", lambda m: m["mask"].set_choice([9]), ValueError,
     r"FiGSMask 'mask': choice must be a non-empty list .* in 0..3, got 9"),
    ("figs-set-choice-int", lambda m: m["mask"].set_choice(2), TypeError,
     r"FiGSMask 'mask': choice must be a non-empty list .*, got 2 \(int\)"),
    # -- gates -----------------------------------------------------------------------------
    ("widthgate-scalar (Why)", lambda m: sl.WidthGate(widths=0.5, name="w"), TypeError,
     r"WidthGate 'w': widths must be a list of numbers, got 0.5 \(float\)"),
    ("widthgate-empty", lambda m: sl.WidthGate(widths=[], name="w"), ValueError,
     r"WidthGate 'w': widths must be a list of numbers with at least one entry"),
    ("widthgate-zero", lambda m: sl.WidthGate(widths=[0.0, 1.0], name="w"), ValueError,
     r"WidthGate 'w': widths\[0\] must be a finite number in \(0, 1\], got 0.0"),
    ("widthgate-over-one", lambda m: sl.WidthGate(widths=[1.5], name="w"), ValueError,
     r"WidthGate 'w': widths\[0\] must be a finite number in \(0, 1\], got 1.5"),
    ("widthgate-string-width", lambda m: sl.WidthGate(widths=["half"], name="w"), TypeError,
     r"WidthGate 'w': widths\[0\] must be a finite number in \(0, 1\], got 'half'"),
    ("widthgate-groups-0", lambda m: sl.WidthGate(groups=0, name="w"), ValueError,
     r"WidthGate 'w': groups must be an integer >= 1, got 0"),
    ("widthgate-mode", lambda m: sl.WidthGate(mode="hard", name="w"), ValueError,
     r"WidthGate 'w': unknown mode 'hard'; allowed:"),
    # -- EnTranCell ------------------------------------------------------------------------
    ("entran-string-candidates", lambda m: sl.EnTranCell("skip_connect", name="c"), TypeError,
     r"EnTranCell 'c': candidates must be a list of op names, got 'skip_connect' \(str\)"),
    ("entran-steps-0", lambda m: sl.EnTranCell(["skip_connect", "none"], steps=0, name="c"),
     ValueError, r"EnTranCell 'c': steps must be an integer >= 1, got 0"),
    ("entran-top-k-0", lambda m: sl.EnTranCell(["skip_connect", "none"], top_k=0, name="c"),
     ValueError, r"EnTranCell 'c': top_k must be an integer >= 1, got 0"),
    ("entran-dst-lambda", lambda m: sl.EnTranCell(["skip_connect"], dst_lambda=-1, name="c"),
     ValueError, r"EnTranCell 'c': dst_lambda must be a finite number >= 0, got -1"),
    ("entran-beta-nan", lambda m: sl.EnTranCell(["skip_connect"], beta_init=NAN, name="c"),
     ValueError, r"EnTranCell 'c': beta_init must be a finite number, got nan"),
    # -- Architecture (record) ---------------------------------------------------------------
    ("arch-negative (Why)", lambda m: Architecture({"edge": -1}), ValueError,
     r"Architecture: choices\['edge'\] must be an integer index >= 0 or a list"),
    ("arch-2.7 (Why)", lambda m: Architecture({"edge": 2.7}), ValueError,
     r"Architecture: choices\['edge'\] must be an integer index >= 0 .*got 2.7"),
    ("arch-bool", lambda m: Architecture({"edge": True}), TypeError,
     r"Architecture: choices\['edge'\] must be an integer index >= 0 .*got True \(bool\)"),
    ("arch-choices-list", lambda m: Architecture([1, 2]), TypeError,
     r"Architecture: choices must be a dict of layer name -> value, got \[1, 2\] \(list\)"),
    ("arch-key-int", lambda m: Architecture({1: 0}), ValueError,
     r"Architecture: choices keys must be layer names \(strings\), got \[1\]"),
    ("arch-names-extra", lambda m: Architecture({"edge": 1}, {"other": "x"}), ValueError,
     r"Architecture: names must be names of layers that have a choice, got \['other'\]"),
    ("arch-from-json-list (Why)", lambda m: Architecture.from_json("[1, 2]"), TypeError,
     r"Architecture.from_json: the JSON must be an object with keys 'choices', 'names', "
     r"'meta', got \[1, 2\] \(list\)"),
    ("arch-from-json-garbage", lambda m: Architecture.from_json("choices: 1"), ValueError,
     r"Architecture.from_json: text is not JSON"),
    ("arch-from-json-extra-key",
     lambda m: Architecture.from_json(json.dumps({"choices": {}, "code": "import os"})),
     ValueError, r"Architecture.from_json: the JSON must be an object with keys 'choices', "
     r"'names', 'meta' \('choices' required\), got \['choices', 'code'\]"),
    ("arch-from-json-bytes", lambda m: Architecture.from_json(None), TypeError,
     r"Architecture.from_json: text must be a string, got None"),
    # -- derive / apply_architecture -------------------------------------------------------
    ("derive-out-of-range (Why)", lambda m: sl.derive(m["net"], architecture=Architecture(
        {"edge": 5})), ValueError, r"Architecture does not fit model 'net' \(1 mismatch\): "
     r"MixedOp 'edge': choice must be an integer index in 0..2 .*got 5"),
    ("derive-dict-negative (Why)", lambda m: sl.derive(m["net"], architecture={"edge": -1}),
     ValueError, r"Architecture: choices\['edge'\] must be an integer index >= 0 or a list"),
    ("derive-dict-2.7 (Why)", lambda m: sl.derive(m["net"], architecture={"edge": 2.7}),
     ValueError, r"Architecture: choices\['edge'\] must be an integer index >= 0 .*got 2.7"),
    ("derive-names-disagree (Why)", lambda m: sl.derive(m["net"], architecture=Architecture(
        {"edge": 1}, {"edge": "conv_3x3"})), ValueError,
     r"'edge': choice 1 is 'skip_connect' but names says 'conv_3x3'"),
    ("derive-extra-entry (Why)", lambda m: sl.derive(m["net"], architecture=Architecture(
        {"edge": 1, "other": 0})), ValueError,
     r"layers the model does not have: \['other'\] \(strict=False ignores them\)"),
    ("derive-other-model", lambda m: sl.derive(m["net"], architecture=Architecture(
        {"cell_0": 1, "cell_1": 0})), ValueError,
     r"\(2 mismatches\): no choice for search layer 'edge'; layers the model does not have: "
     r"\['cell_0', 'cell_1'\]"),
    ("derive-architecture-type", lambda m: sl.derive(m["net"], architecture="arch.json"),
     TypeError, r"derive\(\): architecture must be an Architecture \(or a dict of layer name "
     r"-> choice\), got 'arch.json' \(str\)"),
    ("apply-architecture-range", lambda m: sl.apply_architecture(m["net"], {"edge": 9}),
     ValueError, r"MixedOp 'edge': choice must be an integer index in 0..2 .*got 9"),
    ("derive-strategy", lambda m: sl.derive(m["net"], "best"), ValueError,
     r"derive\(\): unknown strategy 'best'; allowed: argmax, sample, expected, best_of_k"),
    ("choose-strategy", lambda m: sl.choose(m["net"], "best"), ValueError,
     r"choose\(\): unknown strategy 'best'; allowed: 'argmax', 'sample', 'expected'"),
    ("best-of-k-no-labels (Why)", lambda m: best_of_k(m["net"], X, k=2), ValueError,
     r"best_of_k: validation_data must be labelled data: an \(x, y\) pair of arrays or a "
     r"tf.data.Dataset of \(x, y\) batches, got ndarray of shape \(4, 8, 8, 1\)"),
    ("best-of-k-k-0 (Why)", lambda m: best_of_k(m["net"], (X, Y), k=0), ValueError,
     r"best_of_k: k must be an integer >= 1, got 0"),
    ("best-of-k-k-str", lambda m: best_of_k(m["net"], (X, Y), k="8"), TypeError,
     r"best_of_k: k must be an integer >= 1, got '8' \(str\)"),
    # -- SearchModel -----------------------------------------------------------------------
    ("searchmodel-fit-xy (Why)", lambda m: m["search"].fit(X, Y, verbose=0), ValueError,
     r"SearchModel\(bilevel=True\).fit needs elements \(\(x_train, y_train\), \(x_val, "
     r"y_val\)\), e.g. from searchlayers.datasets.search_pairs.*got ndarray x and ndarray y"),
    ("searchmodel-fit-dataset-of-xy", lambda m: m["search"].fit(
        datasets.load("digits", "validation", batch_size=8).take(1), verbose=0), ValueError,
     r"SearchModel\(bilevel=True\).fit needs elements \(\(x_train, y_train\), \(x_val, "
     r"y_val\)\).*got a dataset of"),
    ("searchmodel-validation-pairs", lambda m: m["search"].fit(
        _PAIRS, validation_data=_PAIRS, verbose=0), ValueError,
     r"SearchModel.fit: validation_data must be \(x, y\) batches whose x holds the model's 1 "
     r"input\(s\) \(a search's \(\(x, y\), \(x, y\)\) pairs are training data, not "
     r"validation data\), got 'batches whose x holds 2 tensors'"),
    ("best-of-k-validation-pairs", lambda m: best_of_k(m["net"], _PAIRS, k=2), ValueError,
     r"best_of_k: validation_data must be \(x, y\) batches whose x holds the model's 1 input"),
    ("searchmodel-bilevel-str", lambda m: SearchModel(m["net"], bilevel="no"), TypeError,
     r"SearchModel: bilevel must be True or False, got 'no' \(str\)"),
    ("searchmodel-decay", lambda m: SearchModel(m["net"], arch_weight_decay=-1.0), ValueError,
     r"SearchModel: arch_weight_decay must be a finite number >= 0, got -1.0"),
    ("nonfinite-guard-policy", lambda m: NonFiniteGuard("ignore"), ValueError,
     r"NonFiniteGuard: unknown on_nonfinite 'ignore'; allowed: 'raise', 'stop'"),
    # -- callbacks -------------------------------------------------------------------------
    ("flops-strength-nan (Why)", lambda m: FLOPsRegularizer(strength=NAN), ValueError,
     r"FLOPsRegularizer: strength must be a finite number >= 0, got nan"),
    ("flops-strength-str", lambda m: FLOPsRegularizer(strength="1"), TypeError,
     r"FLOPsRegularizer: strength must be a finite number >= 0, got '1' \(str\)"),
    ("flops-mode", lambda m: FLOPsRegularizer(mode="hard"), ValueError,
     r"FLOPsRegularizer: unknown mode 'hard'; allowed: 'additive', 'multiplicative'"),
    ("flops-metric", lambda m: FLOPsRegularizer(metric="latency"), ValueError,
     r"FLOPsRegularizer: unknown cost metric 'latency'; allowed:"),
    ("flops-budget-missing", lambda m: FLOPsRegularizer(mode="multiplicative"), TypeError,
     r"FLOPsRegularizer\(mode='multiplicative'\): budget must be a finite number > 0, got None"),
    ("flops-search-only-str", lambda m: FLOPsRegularizer(search_only="yes"), TypeError,
     r"FLOPsRegularizer: search_only must be True or False, got 'yes'"),
    ("scheduler-underflow (Why)", lambda m: TemperatureScheduler(start=1e-30), ValueError,
     r"TemperatureScheduler start: temperature must be a finite number >= 1e-06, got 1e-30"),
    ("scheduler-end-zero (Why)", lambda m: TemperatureScheduler("linear", 1.0, 0.0, total=5),
     ValueError, r"TemperatureScheduler end: temperature must be a finite number >= 1e-06, "
     r"got 0.0"),
    ("scheduler-per", lambda m: TemperatureScheduler(per="batch"), ValueError,
     r"TemperatureScheduler: unknown per 'batch'; allowed: 'epoch', 'step'"),
    ("scheduler-rate-0", lambda m: TemperatureScheduler(rate=0), ValueError,
     r"TemperatureScheduler: rate must be a finite number > 0, got 0"),
    ("entropy-reduction", lambda m: EntropyRegularizer(reduction="max"), ValueError,
     r"EntropyRegularizer: unknown reduction 'max'; allowed:"),
    ("warmup-negative", lambda m: ArchWarmup(-1), ValueError,
     r"ArchWarmup: epochs must be an integer >= 0, got -1"),
    ("bn-evaluator-patience", lambda m: BNScoreEvaluator(patience=0), ValueError,
     r"BNScoreEvaluator: patience must be an integer >= 1 or None, got 0"),
    ("bn-evaluator-no-bn (Why)", _fit_bn_evaluator, ValueError,
     r"BNScoreEvaluator: no search layer of model 'net' has two candidates with a BatchNorm "
     r"score .*Allowed: MixedOps whose candidate ops end with an affine BatchNormalization"),
    # -- regularizers ----------------------------------------------------------------------
    ("expected-cost-none", lambda m: regularizers.expected_cost(None, "params"), TypeError,
     r"^expected_cost: model must be a keras.Model, got None \(NoneType\)"),
    ("expected-cost-metric", lambda m: regularizers.expected_cost(m["net"], "latency"),
     ValueError, r"expected_cost: unknown cost metric 'latency'; allowed:"),
    ("expected-cost-form", lambda m: regularizers.expected_cost(m["net"], form="l1"),
     ValueError, r"expected_cost: unknown form 'l1'; allowed: 'expected'"),
    ("budget-multiplier-0", lambda m: regularizers.budget_multiplier(1.0, 0), ValueError,
     r"budget_multiplier: budget must be a finite number > 0, got 0"),
    ("budget-multiplier-str", lambda m: regularizers.budget_multiplier(1.0, "1e6"), TypeError,
     r"budget_multiplier: budget must be a finite number > 0, got '1e6' \(str\)"),
    # -- transforms ------------------------------------------------------------------------
    ("train-only-bn-no-bn (Why)", lambda m: transforms.train_only_batchnorm(m["net"]),
     ValueError, r"train_only_batchnorm: model 'net' has no BatchNormalization with gamma or "
     r"beta .*allowed: a model with at least one affine BatchNormalization"),
    ("train-only-bn-no-affine (Why)", lambda m: transforms.train_only_batchnorm(
        m["no_affine"]), ValueError, r"train_only_batchnorm: .* would train 0 variables"),
    ("train-only-bn-which", lambda m: transforms.train_only_batchnorm(m["net"], "first"),
     ValueError, r"train_only_batchnorm: unknown which='first'; allowed: 'all'"),
    # -- evolution -------------------------------------------------------------------------
    ("evolution-limit-nan (Why)", lambda m: evolution.evolutionary_search(m["net"], NAN),
     ValueError, r"evolutionary_search: limit must be a finite number > 0 or None, got nan"),
    ("evolution-limit-negative", lambda m: evolution.evolutionary_search(m["net"], -1.0),
     ValueError, r"evolutionary_search: limit must be a finite number > 0 or None, got -1.0"),
    ("evolution-population-0", lambda m: evolution.evolutionary_search(m["net"],
                                                                       population=0),
     ValueError, r"evolutionary_search: population must be an integer >= 1, got 0"),
    ("evolution-generations-float", lambda m: evolution.evolutionary_search(
        m["net"], generations=2.5), ValueError,
     r"evolutionary_search: generations must be an integer >= 0, got 2.5"),
    ("evolution-mutation-prob", lambda m: evolution.evolutionary_search(
        m["net"], mutation_prob=1.5), ValueError,
     r"evolutionary_search: mutation_prob must be a finite number in \[0, 1\], got 1.5"),
    ("evolution-top-k-0", lambda m: evolution.evolutionary_search(m["net"], top_k=0),
     ValueError, r"evolutionary_search: top_k must be an integer >= 1, got 0"),
    # -- tuning ----------------------------------------------------------------------------
    ("sweep-budget-0 (Why)", lambda m: tuning.search_space(["darts"], budgets=[0.0]),
     ValueError, r"search_space: budgets\[0\] must be a finite number > 0, got 0.0"),
    ("sweep-lams-scalar", lambda m: tuning.search_space(["darts"], lams=1.0), TypeError,
     r"search_space: lams must be a list of numbers, got 1.0 \(float\)"),
    ("sweep-tuner-space (Why)", lambda m: tuning.SweepTuner("grid", _bad_hp(), max_trials=1),
     ValueError, r"SweepTuner: hyperparameter 'budget' values\[1\] must be a finite number > "
     r"0, got 0.0"),
    ("trialspec-budget-0", lambda m: tuning.TrialSpec(method="darts", budget=0), ValueError,
     r"TrialSpec: budget must be a finite number > 0, got 0"),
    # -- datasets --------------------------------------------------------------------------
    ("arrays-limit-negative (Why)", lambda m: datasets.arrays("digits", limit=-5), ValueError,
     r"datasets.arrays: limit must be an integer >= 1 or None, got -5"),
    ("load-batch-size-0 (Why)", lambda m: datasets.load("digits", batch_size=0), ValueError,
     r"datasets.load: batch_size must be an integer >= 1, got 0"),
    ("load-batch-size-float", lambda m: datasets.load("digits", batch_size=2.5), ValueError,
     r"datasets.load: batch_size must be an integer >= 1, got 2.5"),
    ("load-batch-size-str", lambda m: datasets.load("digits", batch_size="32"), TypeError,
     r"datasets.load: batch_size must be an integer >= 1, got '32' \(str\)"),
    ("load-image-size-0", lambda m: datasets.load("digits", image_size=0), ValueError,
     r"datasets.load: image_size must be None, an integer >= 1 or a \(height, width\) pair"),
    ("load-image-size-triple", lambda m: datasets.load("digits", image_size=(8, 8, 1)),
     ValueError, r"datasets.load: image_size must be None, an integer >= 1 or a \(height, "
     r"width\) pair of them, got \(8, 8, 1\)"),
    ("load-split", lambda m: datasets.load("digits", split="dev"), ValueError,
     r"datasets: unknown split 'dev'; allowed: 'train', 'validation', 'test'"),
    ("pairs-batch-size-0", lambda m: datasets.search_pairs("digits", batch_size=0), ValueError,
     r"datasets.load: batch_size must be an integer >= 1, got 0"),
    # -- export ----------------------------------------------------------------------------
    ("tflite-quantize", lambda m: export.to_tflite(m["net"], quantize="int4"), ValueError,
     r"to_tflite: quantize must be None or 'int8', got 'int4'"),
    ("tflite-int8-empty (Why)", lambda m: export.to_tflite(
        m["net"], quantize="int8", representative_data=[]), ValueError,
     r"to_tflite\(quantize='int8'\): representative_data must be a non-empty array"),
    ("tflite-int8-zero-rows (Why)", lambda m: export.to_tflite(
        m["net"], quantize="int8", representative_data=np.zeros((0, 8, 8, 1))), ValueError,
     r"to_tflite\(quantize='int8'\): representative_data must be a non-empty array"),
    ("tflite-int8-nan (Why)", lambda m: export.to_tflite(
        m["net"], quantize="int8", representative_data=np.full((3, 8, 8, 1), NAN)), ValueError,
     r"to_tflite\(quantize='int8'\): representative_data must be finite, but 192 of its 192"),
    ("tflite-int8-shape (Why)", lambda m: export.to_tflite(
        m["net"], quantize="int8", representative_data=np.zeros((3, 9, 9, 1))), ValueError,
     r"to_tflite\(quantize='int8'\): the shape of each representative_data example must be "
     r"the model's input shape \(8, 8, 1\), got \(9, 9, 1\)"),
    ("tflite-num-calibration", lambda m: export.to_tflite(
        m["net"], quantize="int8", representative_data=X, num_calibration=0), ValueError,
     r"to_tflite: num_calibration must be an integer >= 1, got 0"),
    ("tflite-int8-io", lambda m: export.to_tflite(m["net"], int8_io="yes"), TypeError,
     r"to_tflite: int8_io must be True or False, got 'yes'"),
    ("parity-garbage (Why)", lambda m: export.parity(m["net"], b"not a model at all", X),
     ValueError, r"export: flatbuffer is not a TFLite flatbuffer \(no 'TFL3' identifier in 18 "
     r"bytes\)"),
    ("predict-number", lambda m: export.predict(3, X), TypeError,
     r"export: flatbuffer must be bytes or a file path, got 3"),
    ("predict-wrong-shape", lambda m: export.predict(m["flatbuffer"], np.zeros((2, 9, 9, 1))),
     ValueError, r"export.predict: the shape of each input example must be the file's input "
     r"shape \(8, 8, 1\), got \(9, 9, 1\)"),
    ("predict-inputs-str", lambda m: export.predict(m["flatbuffer"], "x.npy"), TypeError,
     r"export.predict: inputs must be an array of numbers \(N, \.\.\.\), got 'x.npy'"),
    ("parity-wrong-shape", lambda m: export.parity(m["child"], m["flatbuffer"],
                                                   np.zeros((2, 8, 8))), ValueError,
     r"the shape of each input example must be the file's input shape \(8, 8, 1\), got "
     r"\(8, 8\)"),
    ("parity-empty", lambda m: export.parity(m["child"], m["flatbuffer"],
                                             np.zeros((0, 8, 8, 1), np.float32)), ValueError,
     r"export.parity: inputs must be a batch of >= 1 example, all finite, got '0 examples'"),
    ("parity-nan", lambda m: export.parity(m["child"], m["flatbuffer"],
                                           np.full((2, 8, 8, 1), NAN, np.float32)), ValueError,
     r"export.parity: inputs must be .* all finite, got 'inputs holding NaN or inf'"),
    ("tflite-int8-string-data", lambda m: export.to_tflite(
        m["child"], quantize="int8", representative_data="calib.npy"), TypeError,
     r"to_tflite\(quantize='int8'\): representative_data must be an array \(N, \.\.\.\) or "
     r"an iterable / dataset of input batches, got 'calib.npy'"),
    # -- more layers -----------------------------------------------------------------------
    ("mixedop-temperature-1e-45 (Why)", lambda m: sl.MixedOp(OPS, temperature=1e-45,
                                                             name="a"),
     ValueError, r"MixedOp 'a': temperature must be a finite number >= 1e-06, got 1e-45"),
    ("mixedop-seed-str", lambda m: sl.MixedOp(OPS, mode="gumbel", seed="a", name="a"),
     TypeError, r"MixedOp 'a': seed must be an integer >= 0 or None, got 'a' \(str\)"),
    ("mixedop-set-choice-nan", lambda m: m["edge"].set_choice(NAN), ValueError,
     r"MixedOp 'edge': choice must be an integer index in 0..2 .*got nan"),
    ("gumbel-depth-temperature-nan", lambda m: sl.GumbelDepthGate(3, temperature=NAN,
                                                                  name="g"),
     ValueError, r"GumbelDepthGate 'g': temperature must be a finite number >= 1e-06, got nan"),
    ("widthgate-width-nan", lambda m: sl.WidthGate([NAN, 1.0], name="w"), ValueError,
     r"WidthGate 'w': widths\[0\] must be a finite number in \(0, 1\], got nan"),
    ("entran-unknown-op", lambda m: sl.EnTranCell(["nope_op"], name="c"), ValueError,
     r"EnTranCell 'c': unknown candidate op 'nope_op'. Registered ops:.*skip_connect"),
    # -- SearchModel / joint training --------------------------------------------------------
    ("searchmodel-no-arch-variables", lambda m: SearchModel(m["plain"]), ValueError,
     r"SearchModel: model 'plain' has no architecture variables .*allowed: a supernet with "
     r"at least one"),
    # -- retrain ---------------------------------------------------------------------------
    ("retrain-lr-inf", lambda m: retrain.retrain(m["child"], DATA, epochs=0, lr=float("inf")),
     ValueError, r"retrain: lr must be a finite number > 0, got inf"),
    ("retrain-batch-size-0", lambda m: retrain.retrain(m["child"], DATA, epochs=0,
                                                       batch_size=0),
     ValueError, r"retrain: batch_size must be an integer >= 1, got 0"),
    ("retrain-alpha-negative", lambda m: retrain.retrain(m["child"], DATA, epochs=0, alpha=-1),
     ValueError, r"retrain: alpha must be a finite number in \[0, 1\], got -1"),
    ("retrain-epochs-float", lambda m: retrain.retrain(m["child"], DATA, epochs=2.5),
     ValueError, r"retrain: epochs must be an integer >= 0, got 2.5"),
    ("retrain-optimizer", lambda m: retrain.retrain(m["child"], DATA, optimizer="rmsprop"),
     ValueError, r"retrain: optimizer must be 'sgd' or 'adam', got 'rmsprop'"),
    ("retrain-child-str", lambda m: retrain.retrain("child.h5", DATA), TypeError,
     r"retrain: child must be a built keras.Model .*got 'child.h5' \(str\)"),
    ("retrain-data-array", lambda m: retrain.retrain(m["child"], X, epochs=0), ValueError,
     r"retrain: data must be a dataset name \(e.g. 'digits'\) or \(train, test\), got "
     r"ndarray"),
    ("retrain-sgd-lr-0", lambda m: retrain.sgd(0, 10), ValueError,
     r"retrain.sgd: lr must be a finite number > 0, got 0"),
    # -- baselines -------------------------------------------------------------------------
    ("baselines-n-0", lambda m: baselines.sample_architectures(m["net"], m["arch"], n=0),
     ValueError, r"sample_architectures: n must be an integer >= 1, got 0"),
    ("baselines-tolerance-nan", lambda m: baselines.sample_architectures(
        m["net"], m["arch"], tolerance=NAN), ValueError,
     r"sample_architectures: tolerance must be a number in \(0, 1\), got nan"),
    ("baselines-seeds-empty", lambda m: baselines.random_baseline(
        m["net"], m["child"], lambda c, s: 1.0, seeds=[]), ValueError,
     r"random_baseline: seeds must be a list of integer seeds with at least one entry"),
    ("baselines-train-not-callable", lambda m: baselines.random_baseline(
        m["net"], m["child"], "retrain"), TypeError,
     r"random_baseline: train must be a callable train\(child, seed\) -> accuracy, got "
     r"'retrain'"),
    ("baselines-child-without-architecture", lambda m: baselines.random_baseline(
        m["net"], m["plain"], lambda c, s: 1.0), ValueError,
     r"random_baseline: child must be a derived model carrying .architecture"),
    ("baselines-metric", lambda m: baselines.child_cost(m["child"], "latency"), ValueError,
     r"nknown cost metric 'latency'; allowed: .*macs"),
    # -- budget / cost ---------------------------------------------------------------------
    ("budget-fit-nan", lambda m: budget.fit(m["net"], NAN), ValueError,
     r"budget.fit: target must be a finite number > 0, got nan"),
    ("budget-fit-negative", lambda m: budget.fit(m["net"], -5), ValueError,
     r"budget.fit: target must be a finite number > 0, got -5"),
    ("budget-fit-metric", lambda m: budget.fit(m["net"], 1e5, "latency"), ValueError,
     r"budget.fit: unknown cost metric 'latency'; allowed: .*macs"),
    ("budget-fit-no-search-layers", lambda m: budget.fit(m["plain"], 1e5), ValueError,
     r"budget.fit: model 'plain' has search layers \['none'\]; fit handles networks of "
     r"FiGSMask layers only, or of categorical layers \(MixedOp\) only"),
    ("cost-metric", lambda m: cost.Cost().metric("latency"), ValueError,
     r"nknown cost metric 'latency'; allowed: .*macs"),
    ("cost-compare-names", lambda m: cost.compare(cost.profile(m["child"]), names=["a", "b"]),
     ValueError, r"compare got 1 profiles but 2 names"),
    # -- tuning / datasets -----------------------------------------------------------------
    ("tuning-unknown-method", lambda m: tuning.get_method("dartz"), ValueError,
     r"Unknown search method 'dartz'; registered: .*darts"),
    ("tuning-space-no-methods", lambda m: tuning.search_space([]), ValueError,
     r"search_space: methods must be a list of method names with at least one entry"),
    ("tuning-space-method-str", lambda m: tuning.search_space("darts"), TypeError,
     r"search_space: methods must be a list of method names, got 'darts' \(str\)"),
    ("tuning-register-search-str", lambda m: tuning.register_method("x", "my_search"),
     TypeError, r"register_method\('x'\): search must be a callable taking a TrialSpec, got "
     r"'my_search'"),
    ("trialspec-epochs-negative", lambda m: tuning.TrialSpec("darts", epochs=-1), ValueError,
     r"TrialSpec: epochs must be an integer >= 0, got -1"),
    ("trialspec-batch-size-0", lambda m: tuning.TrialSpec("darts", batch_size=0), ValueError,
     r"TrialSpec: batch_size must be an integer >= 1, got 0"),
    ("trialspec-method-int", lambda m: tuning.TrialSpec(3), TypeError,
     r"TrialSpec: method must be a string, got 3 \(int\)"),
    ("datasets-unknown-name", lambda m: datasets.load("digitz"), ValueError,
     r"datasets: unknown dataset name 'digitz'; allowed: 'digits' \(bundled, offline\) or "
     r"any TensorFlow Datasets image-classification name"),
    ("datasets-seed-str", lambda m: datasets.search_pairs("digits", seed="a"), TypeError,
     r"datasets.search_pairs: seed must be an integer, got 'a' \(str\)"),
    # -- callbacks, schedules, decision, transforms (second pass) ----------------------------
    ("entropy-start-nan", lambda m: EntropyRegularizer(start=NAN), ValueError,
     r"EntropyRegularizer: start must be a finite number, got nan"),
    ("entropy-start-str", lambda m: EntropyRegularizer(start="0.1"), TypeError,
     r"EntropyRegularizer: start must be a finite number, got '0.1' \(str\)"),
    ("entropy-total-0", lambda m: EntropyRegularizer("linear", 0.1, 0.0, total=0), ValueError,
     r"EntropyRegularizer: total must be a finite number > 0, got 0"),
    ("scheduler-keys-str", lambda m: TemperatureScheduler(keys="edge"), TypeError,
     r"TemperatureScheduler: keys must be a list of arch_key / layer names, got 'edge'"),
    ("scheduler-layers-str", lambda m: TemperatureScheduler(layers="MixedOp"), TypeError,
     r"TemperatureScheduler: layers must be a list of search-layer classes or class names, "
     r"got 'MixedOp'"),
    ("arch-logger-log-dir-none", lambda m: sl.ArchitectureLogger(None), TypeError,
     r"ArchitectureLogger: log_dir must be a folder path, got None"),
    ("arch-logger-tensorboard-str", lambda m: sl.ArchitectureLogger("logs", tensorboard="no"),
     TypeError, r"ArchitectureLogger: tensorboard must be True or False, got 'no' \(str\)"),
    ("flops-under-nan", lambda m: FLOPsRegularizer(under=NAN), ValueError,
     r"FLOPsRegularizer: under must be a finite number, got nan"),
    ("flops-every-0", lambda m: FLOPsRegularizer(every=0), ValueError,
     r"FLOPsRegularizer: every must be an integer >= 1, got 0"),
    ("flops-form", lambda m: FLOPsRegularizer(form="l1"), ValueError,
     r"FLOPsRegularizer: unknown form 'l1'; allowed: 'expected', 'morphnet'"),
    ("bn-evaluator-tolerance-nan", lambda m: BNScoreEvaluator(tolerance=NAN), ValueError,
     r"BNScoreEvaluator: tolerance must be a number in \[0, 1\], got nan"),
    ("bn-evaluator-min-epochs", lambda m: BNScoreEvaluator(min_epochs=-1), ValueError,
     r"BNScoreEvaluator: min_epochs must be an integer >= 0, got -1"),
    ("bn-score-table-no-search-layers", lambda m: sl.bn_score.score_table(m["plain"]),
     ValueError, r"bn_score: model 'plain' has no search layers"),
    ("decision-window-0", lambda m: DecisionTracker(window=0), ValueError,
     r"DecisionTracker: window must be an integer >= 1, got 0"),
    ("schedule-method", lambda m: SearchSchedule("dartz"), ValueError,
     r"SearchSchedule: unknown method 'dartz'; allowed: 'darts', "),
    ("figs-commit-to-budget-nan", lambda m: schedules.figs_commit(8).to_budget(NAN, "params"),
     ValueError, r"FigsCommit.to_budget: target must be a finite number > 0, got nan"),
    ("figs-commit-to-budget-metric", lambda m: schedules.figs_commit(8).to_budget(400, "flopz"),
     ValueError, r"FigsCommit.to_budget: unknown cost metric 'flopz'; allowed: "),
    ("schedule-arch-lr-steps-0", lambda m: schedules.arch_lr(0), ValueError,
     r"arch_lr: steps must be an integer >= 1 .*got 0"),
    ("insert-masks-logit-nan", lambda m: transforms.insert_masks(m["net"], initial_logit=NAN),
     ValueError, r"FiGSMask '.*': initial_logit must be a finite number, got nan"),
    ("insert-masks-twice", lambda m: transforms.insert_masks(transforms.insert_masks(
        sl.keras.Sequential([sl.keras.Input((8, 8, 1)), sl.keras.layers.Conv2D(4, 3),
                             sl.keras.layers.Flatten(), sl.keras.layers.Dense(2)]))),
     ValueError, r"insert_masks: model '.*' already has FiGS masks \(conv2d.*_mask\); insert "
     r"them once"),
    ("insert-masks-skip-output-str", lambda m: transforms.insert_masks(m["net"],
                                                                       skip_output="yes"),
     TypeError, r"insert_masks: skip_output must be True or False, got 'yes' \(str\)"),
    ("entropy-of-model-reduction", lambda m: regularizers.entropy(m["net"], "max"), ValueError,
     r"entropy: unknown reduction 'max'; allowed: 'mean', 'sum'"),
    # -- more layers and entry points (second pass) ----------------------------------------
    ("quantconv-filters-0", lambda m: sl.QuantConv(0, 3, name="q"), ValueError,
     r"^QuantConv 'q': filters must be an integer >= 1, got 0"),
    ("zeroise-strides-str", lambda m: sl.Zeroise(strides="2", name="z"), TypeError,
     r"Zeroise 'z': strides must be an integer >= 1, got '2' \(str\)"),
    ("zeroise-strides-0", lambda m: sl.Zeroise(strides=0, name="z"), ValueError,
     r"Zeroise 'z': strides must be an integer >= 1, got 0"),
    ("register-op-empty-name", lambda m: sl.register_op("", lambda c, s: None), ValueError,
     r"register_op: name must be a non-empty string, got ''"),
    ("register-op-factory-int", lambda m: sl.register_op("my_op", 3), TypeError,
     r"register_op\('my_op'\): factory must be a callable factory\(channels, strides\) -> "
     r"layer, got 3 \(int\)"),
    ("entran-role", lambda m: sl.EnTranCell(OPS, role="boss", name="c"), ValueError,
     r"EnTranCell 'c': unknown role 'boss'; allowed: 'engine', 'transit'"),
    ("quantconv-scaling", lambda m: sl.QuantConv(4, 3, scaling="layer", name="q"), ValueError,
     r"QuantConv 'q': unknown scaling 'layer'; allowed: 'channel', 'scalar', None"),
    ("tie-arch-variables-str", lambda m: sl.tie_arch_variables("net"), TypeError,
     r"tie_arch_variables: model must be a keras.Model, got 'net' \(str\)"),
    ("choose-seed-str", lambda m: sl.choose(m["net"], "sample", seed="a"), TypeError,
     r"choose\(\): seed must be an integer, got 'a' \(str\)"),
    ("choose-rule-str", lambda m: sl.choose(m["net"], rule="gamma"), TypeError,
     r"choose\(\): rule must be None or a callable rule\(layer\) -> choice or None, got "
     r"'gamma'"),
    # -- a model argument that is not a model names the entry point -------------------------
    ("profile-not-a-model", lambda m: cost.profile("model.h5"), TypeError,
     r"^cost.profile: model must be a keras.Model, got 'model.h5' \(str\)"),
    ("to-tflite-not-a-model", lambda m: export.to_tflite(None), TypeError,
     r"^export.to_tflite: model must be a keras.Model, got None \(NoneType\)"),
    ("searchmodel-not-a-model", lambda m: SearchModel("net"), TypeError,
     r"^search.SearchModel: model must be a keras.Model, got 'net' \(str\)"),
    ("derive-not-a-model", lambda m: sl.derive([m["net"]]), TypeError,
     r"^derive.derive: model must be a keras.Model, got \[<.*\(list\)"),
    ("arch-variables-not-a-model", lambda m: sl.arch_variables(3), TypeError,
     r"^search.arch_variables: model must be a keras.Model, got 3 \(int\)"),
    # -- third pass: scoring data ---------------------------------------------------------
    ("best-of-k-nan-data", lambda m: best_of_k(m["net"], (X_NAN, Y), k=2), FloatingPointError,
     r"best_of_k: the validation loss is NaN or inf for samples \[0, 1\] of 2, so no "
     r"architecture can be picked; check validation_data for NaN/inf"),
    ("best-of-k-length-mismatch", lambda m: best_of_k(m["net"], (X, Y[:3]), k=2), ValueError,
     r"best_of_k: validation_data must be an \(x, y\) pair with the same number \(>= 1\) "
     r"of rows, got 'x of 4 and y of 3 rows'"),
    ("best-of-k-empty", lambda m: best_of_k(m["net"], (X[:0], Y[:0]), k=2), ValueError,
     r"best_of_k: validation_data must be an \(x, y\) pair .*got 'x of 0 and y of 0 rows'"),
    ("evolution-scorer-all-nan", lambda m: evolution.evolutionary_search(
        m["net"], scorer=lambda c: np.full(len(c), NAN), population=4, generations=1),
     FloatingPointError, r"evolutionary_search: the scorer gave NaN for all 3 subnets of "
     r"generation 0, so none can be ranked; allowed: finite scores"),
    ("searchmodel-joint-fit-pairs", lambda m: m["joint"].fit(
        datasets.search_pairs("digits", batch_size=8).take(1), verbose=0), ValueError,
     r"SearchModel\(bilevel=False\).fit needs \(x, y\) elements .*got a dataset of "
     r"\(\(x_train, y_train\), \(x_val, y_val\)\) pairs: use SearchModel\(net, "
     r"bilevel=True\)"),
    ("binary-conv-bn-channels-str", lambda m: BinaryConvBN("8", name="b"), TypeError,
     r"BinaryConvBN 'b': channels must be an integer >= 1, got '8' \(str\)"),
    ("binary-conv-bn-affine-str", lambda m: BinaryConvBN(8, affine="no", name="b"), TypeError,
     r"BinaryConvBN 'b': affine must be True or False, got 'no' \(str\)"),
    ("binary-reduce-groups-0", lambda m: BinaryReduce(8, groups=0, name="r"), ValueError,
     r"BinaryReduce 'r': groups must be an integer >= 1, got 0"),
    ("factorized-reduce-channels-1", lambda m: FactorizedReduce(1, name="f"), ValueError,
     r"FactorizedReduce 'f': channels must be an integer >= 2, got 1"),
    ("sweep-tuner-random-baseline", lambda m: tuning.SweepTuner(
        "grid", tuning.search_space(["darts"]), random_baseline=-1), ValueError,
     r"SweepTuner: random_baseline must be an integer >= 0, got -1"),
    ("layer-decision-max-flips-nan", lambda m: decision.layer_decision(
        m["edge"], max_flips=NAN), ValueError,
     r"layer_decision: max_flips must be a finite number in \[0, 1\], got nan"),
    ("layer-decision-prob-2", lambda m: decision.layer_decision(m["edge"], prob=2),
     ValueError, r"layer_decision: prob must be a finite number in \[0, 1\] or None, got 2"),
    ("schedule-temperature-steps-negative", lambda m: schedules.temperature("darts", -5),
     ValueError, r"temperature: steps must be an integer >= 1 .*got -5"),
    ("budget-multiplier-under-str", lambda m: regularizers.budget_multiplier(1.0, 2.0,
                                                                             under="0"),
     TypeError, r"budget_multiplier: under must be a finite number, got '0' \(str\)"),
    ("budget-multiplier-over-nan", lambda m: regularizers.budget_multiplier(1.0, 2.0,
                                                                            over=NAN),
     ValueError, r"budget_multiplier: over must be a finite number, got nan"),
    # -- noticed after issue 13 (the LATER table) ------------------------------------------
    # cost helpers: a size is an integer >= 0 (None: unknown); counts are numbers >= 0
    ("cost-elementwise-negative (Later)", lambda m: cost.elementwise_cost((None, -4, 4, 8)),
     ValueError, r"^elementwise_cost: shape\[1\] must be an integer >= 0 or None \(unknown\), "
     r"got -4\.$"),
    ("cost-elementwise-fractional (Later)", lambda m: cost.elementwise_cost((None, 2.5, 4, 8)),
     ValueError, r"^elementwise_cost: shape\[1\] must be an integer >= 0 .*got 2.5\.$"),
    ("cost-elementwise-scalar-shape", lambda m: cost.elementwise_cost(8), TypeError,
     r"^elementwise_cost: shape must be a shape \(a list of sizes\), got 8 \(int\)"),
    ("cost-elementwise-ops-negative", lambda m: cost.elementwise_cost((None, 4), ops=-1),
     ValueError, r"^elementwise_cost: ops must be a finite number >= 0, got -1"),
    ("cost-elementwise-channels-nan", lambda m: cost.elementwise_cost((None, 4), channels=NAN),
     ValueError, r"^elementwise_cost: channels must be a finite number >= 0, got nan"),
    ("cost-conv-kernel-negative (Later)", lambda m: cost.conv_cost(3, 8, (3, -3), (16, 16)),
     ValueError, r"^conv_cost: kernel_size\[1\] must be an integer >= 0 .*got -3\.$"),
    ("cost-conv-out-hw-fractional (Later)", lambda m: cost.conv_cost(3, 8, 3, 2.5),
     ValueError, r"^conv_cost: out_hw must be an integer >= 0, got 2.5\.$"),
    ("cost-conv-kernel-str", lambda m: cost.conv_cost(3, 8, "33", 4), TypeError,
     r"^conv_cost: kernel_size must be an integer or a list of sizes, got '33' \(str\)"),
    ("cost-conv-cin-nan", lambda m: cost.conv_cost(NAN, 8, 3, 4), ValueError,
     r"^conv_cost: cin must be a finite number >= 0, got nan"),
    ("cost-conv-cout-negative", lambda m: cost.conv_cost(3, -8, 3, 4), ValueError,
     r"^conv_cost: cout must be a finite number >= 0, got -8"),
    ("cost-conv-groups-0", lambda m: cost.conv_cost(4, 8, 3, 4, groups=0), ValueError,
     r"^conv_cost: groups must be an integer >= 1, got 0"),
    ("cost-depthwise-out-hw-negative (Later)", lambda m: cost.depthwise_cost(4, 3, (-8, 8)),
     ValueError, r"^depthwise_cost: out_hw\[0\] must be an integer >= 0 .*got -8\.$"),
    ("cost-depthwise-multiplier-0", lambda m: cost.depthwise_cost(4, 3, 8, depth_multiplier=0),
     ValueError, r"^depthwise_cost: depth_multiplier must be an integer >= 1, got 0"),
    ("cost-dense-positions-negative", lambda m: cost.dense_cost(64, 10, positions=-1),
     ValueError, r"^dense_cost: positions must be a finite number >= 0, got -1"),
    ("cost-dense-units-str", lambda m: cost.dense_cost("64", 10), TypeError,
     r"^dense_cost: units_in must be a finite number >= 0, got '64' \(str\)"),
    ("cost-layer-cost-cin-negative", lambda m: cost.layer_cost(
        K.layers.Conv2D(4, 3), (None, 8, 8, 4), cin=-1), ValueError,
     r"^layer_cost: cin must be a finite number >= 0, got -1"),
    # BN scores: NaN means "no BN" and is never ranked silently
    ("bn-ranks-nan (Later)", lambda m: sl.bn_score.ranks({"a": [0.1, NAN, 0.3]}), ValueError,
     r"^bn_score.ranks: scores\['a'\] must be finite, but candidates \[1\] score \[nan\] "
     r"\(NaN: a candidate without BN; give missing=, e.g. -inf to rank it last\)"),
    ("bn-ranks-inf (Later)", lambda m: sl.bn_score.ranks({"a": [0.1, np.inf]}, missing=0.0),
     ValueError, r"^bn_score.ranks: scores\['a'\] must be finite, but candidates \[1\] score "
     r"\[inf\]"),
    ("bn-ranks-missing-nan", lambda m: sl.bn_score.ranks({"a": [0.1]}, missing=NAN),
     ValueError, r"^bn_score.ranks: missing must be a number \(\+-inf allowed\) or None, "
     r"got nan"),
    ("bn-ranks-not-a-dict", lambda m: sl.bn_score.ranks([0.1, 0.2]), TypeError,
     r"^bn_score.ranks: scores must be a dict of layer name -> scores, got \[0.1, 0.2\]"),
    ("bn-ranks-2d", lambda m: sl.bn_score.ranks({"a": [[0.1], [0.2]]}), ValueError,
     r"^bn_score.ranks: scores\['a'\] must be a list of scores, one per candidate"),
    ("bn-rank-vector-nan (Later)", lambda m: sl.bn_score.rank_vector({"a": [NAN, 1.0]}),
     ValueError, r"^bn_score.ranks: scores\['a'\] must be finite, but candidates \[0\]"),
    ("bn-rank-distance-lengths", lambda m: sl.bn_score.rank_distance(
        {"a": [0, 1, 2]}, {"a": [0]}), ValueError,
     r"^rank_distance: layer 'a' has rankings of different lengths: \[0.0, 1.0, 2.0\] vs"),
    ("bn-op-score-nan-gamma (Later)", lambda m: _nan_gamma_score(), FloatingPointError,
     r"^bn_score.op_score: gamma of BatchNormalization '.*' \(the last of op '.*'\) has 1 "
     r"NaN or inf of its 4 entries; a BN score needs finite gammas"),
    ("bn-score-table-missing-nan", lambda m: sl.bn_score.score_table(m["net"], missing=NAN),
     ValueError, r"^bn_score.score_table: missing must be a finite number, got nan"),
    # duplicate candidates: one choice twice (no paper's space repeats an op)
    ("mixedop-duplicate (Later)", lambda m: sl.MixedOp(
        ["skip_connect", "conv_3x3", "skip_connect"], name="a"), ValueError,
     r"^MixedOp 'a': candidates must be distinct op names or layers \(no name twice\), got "
     r"'skip_connect' twice \(at 0 and 2\)\.$"),
    ("mixedop-duplicate-layer", lambda m: sl.MixedOp(
        [K.layers.Activation("relu", name="r")] * 2, name="a"), ValueError,
     r"^MixedOp 'a': candidates must be distinct .*got 'r' twice \(at 0 and 1\)"),
    ("widthgate-duplicate (Later)", lambda m: sl.WidthGate(widths=[0.5, 1.0, 0.5], name="w"),
     ValueError, r"^WidthGate 'w': widths must be distinct fractions \(a repeat is one choice "
     r"twice\), got 0.5 twice \(at 0 and 2\)\.$"),
    ("widthgate-same-channels", lambda m: _width_gate_same_channels(), ValueError,
     r"^WidthGate 'w': widths must keep different channel counts, got widths 0.5 and 0.6 both "
     r"keeping 4 of 8 channels per group"),
    ("entran-candidates-duplicate", lambda m: sl.EnTranCell(
        ["skip_connect", "none", "skip_connect"], name="c"), ValueError,
     r"^EnTranCell 'c': candidates must be distinct op names, got 'skip_connect' twice"),
    # EnTranCell keeps top_k inputs per node; node 0 has only the two cell inputs
    ("entran-top-k-3 (Later)", lambda m: sl.EnTranCell(["skip_connect", "none"], top_k=3,
                                                       name="c"),
     ValueError, r"^EnTranCell 'c': top_k must be an integer in \[1, 2\] \(the inputs node 0 "
     r"has\), got 3\.$"),
    ("entran-top-k-selection-3", lambda m: top_k_selection(np.ones((2, 3)), 1, k=3),
     ValueError, r"^top_k_selection: top_k must be an integer in \[1, 2\] .*got 3"),
    ("entran-dst-str", lambda m: sl.EnTranCell(["skip_connect"], dst="no", name="c"),
     TypeError, r"^EnTranCell 'c': dst must be True or False, got 'no' \(str\)"),
    ("entran-reduction-int", lambda m: sl.EnTranCell(["skip_connect"], reduction=2, name="c"),
     TypeError, r"^EnTranCell 'c': reduction must be True or False, got 2 \(int\)"),
    # binary layers: quantizer names, shortcut modes, flags
    ("quantconv-unknown-input-quantizer (Later)", lambda m: sl.QuantConv(
        4, 3, input_quantizer="ste_sgn", name="q"), ValueError,
     r"^QuantConv 'q': unknown input_quantizer 'ste_sgn'; allowed: .*'ste_sign'.*'ScaledSign', "
     r"a larq quantizer or None\.$"),
    ("quantconv-unknown-kernel-quantizer (Later)", lambda m: sl.QuantConv(
        4, 3, kernel_quantizer="xnor", name="q"), ValueError,
     r"^QuantConv 'q': unknown kernel_quantizer 'xnor'; allowed: 'ApproxSign', "),
    ("searchlayer-arch-key-int (Later)", lambda m: sl.MixedOp(OPS, arch_key=3, name="a"),
     TypeError, r"^MixedOp 'a': arch_key must be None or a non-empty string, got 3\.$"),
    ("searchlayer-arch-key-empty (Later)", lambda m: sl.WidthGate(arch_key="", name="w"),
     ValueError, r"^WidthGate 'w': arch_key must be None or a non-empty string, got ''\.$"),
    ("retrain-sgd-steps-0 (Later)", lambda m: retrain.sgd(0.05, 0), ValueError,
     r"^retrain.sgd: steps must be an integer >= 1, got 0\.$"),
    ("retrain-accuracy-batch-size-0 (Later)", lambda m: retrain.accuracy(
        m["child"], X, Y, batch_size=0), ValueError,
     r"^retrain.accuracy: batch_size must be an integer >= 1, got 0\.$"),
    ("get-op-channels-0 (Later)", lambda m: sl.layers.get_op("conv_3x3", 0), ValueError,
     r"^get_op: channels must be an integer >= 1, got 0\.$"),
    ("get-op-channels-negative (Later)", lambda m: sl.layers.get_op("sep_conv_3x3", -4),
     ValueError, r"^get_op: channels must be an integer >= 1, got -4\.$"),
    ("get-op-channels-fractional (Later)", lambda m: sl.layers.get_op("conv_3x3", 2.7),
     ValueError, r"^get_op: channels must be an integer >= 1, got 2.7\.$"),
    ("entran-dst-top-k (Later)", lambda m: sl.EnTranCell(["skip_connect", "none"], steps=2,
                                                         dst=True, top_k=1, name="c"),
     ValueError, r"^EnTranCell 'c': top_k must be 2 \(the default\) with dst=True, where "
     r"the thresholds choose the edges, got 1\.$"),
    ("relax-softmax-nan (Later)", lambda m: relax.softmax([1.0, 2.0], NAN), ValueError,
     r"^relax.softmax: temperature must be a finite number >= 0, got nan\.$"),
    ("relax-sigmoid-nan (Later)", lambda m: relax.logistic_sigmoid([1.0], NAN), ValueError,
     r"^relax.logistic_sigmoid: temperature must be a finite number >= 0, got nan\.$"),
    ("relax-gumbel-negative (Later)", lambda m: relax.gumbel_softmax([1.0, 2.0], -1.0, [0, 0]),
     ValueError, r"^relax.gumbel_softmax: temperature must be a finite number >= 0, got -1.0"),
    ("relax-softmax-str", lambda m: relax.softmax([1.0, 2.0], "hot"), TypeError,
     r"^relax.softmax: temperature must be a finite number >= 0, got 'hot' \(str\)\.$"),
    ("relax-uniform-choice-0 (Later)", lambda m: relax.uniform_choice(0, [0, 0]), ValueError,
     r"^relax.uniform_choice: num_choices must be an integer >= 1, got 0\.$"),
    ("relax-fair-choice-0 (Later)", lambda m: relax.fair_choice(0, 7, 0), ValueError,
     r"^relax.fair_choice: num_choices must be an integer >= 1, got 0\.$"),
    ("channel-select-below-minus-one", lambda m: sl.layers.ChannelSelect([0, -2], name="s"),
     ValueError, r"^ChannelSelect 's': indices\[1\] must be -1 or an input channel "
     r"\(an integer >= 0\), got -2\.$"),
    ("quantconv-quantizer-int", lambda m: sl.QuantConv(4, 3, kernel_quantizer=3), TypeError,
     r"^QuantConv: kernel_quantizer must be a quantizer name, a larq quantizer or None, got 3 "
     r"\(int\)"),
    ("binary-reduce-affine-str", lambda m: BinaryReduce(8, affine="no", name="r"), TypeError,
     r"^BinaryReduce 'r': affine must be True or False, got 'no' \(str\)"),
    ("binary-reduce-shortcut", lambda m: BinaryReduce(8, shortcut="identity", name="r"),
     ValueError, r"^BinaryReduce 'r': unknown shortcut 'identity'; allowed: None, "
     r"'interleave', 'mean'"),
    ("binary-reduce-scaling", lambda m: BinaryReduce(8, scaling="layer", name="r"),
     ValueError, r"^BinaryReduce 'r': unknown scaling 'layer'; allowed: 'channel'"),
    ("binary-shortcut-mode-at-stride-1", lambda m: BinaryConvShortcut(
        8, strides=1, shortcut="mean", name="s"), ValueError,
     r"^BinaryConvShortcut 's': unknown shortcut 'mean'; allowed: None, 'identity'"),
    ("scaled-sign-clip-nan", lambda m: ScaledSign(clip_value=NAN), ValueError,
     r"^ScaledSign: clip_value must be a finite number > 0 or None, got nan"),
    ("scaled-sign-axes-str", lambda m: ScaledSign(axes="01"), TypeError,
     r"^ScaledSign: axes must be a list of axes, got '01' \(str\)"),
    # -- evolution -------------------------------------------------------------------------
    ("evolution-scorer", lambda m: evolution.evolutionary_search(m["net"], scorer="acc"),
     ValueError, r"evolutionary_search: unknown scorer 'acc'; allowed: bn, accuracy or a "
     r"callable"),
    ("evolution-no-search-layers", lambda m: evolution.evolutionary_search(m["plain"]),
     ValueError, r"model 'plain' has no search layers"),
]


# Every example of issue 13's "Why" list -> the row (or test) that checks it.
_SEARCH_TESTS = "test_bad_input_search.py::"
WHY = {
    "to_tflite int8 representative_data=[]": "tflite-int8-empty (Why)",
    "to_tflite int8 zero rows": "tflite-int8-zero-rows (Why)",
    "to_tflite int8 all-NaN rows": "tflite-int8-nan (Why)",
    "one NaN pixel in the data": _SEARCH_TESTS + "test_nan_in_the_training_split_stops_at_the_"
                                 "first_step",
    "FLOPsRegularizer(strength=nan)": "flops-strength-nan (Why)",
    "derive returns an architecture from NaN": _SEARCH_TESTS + "test_nan_in_the_validation_"
                                               "split_stops_and_derive_refuses",
    "derive Architecture({'edge': -1})": "derive-dict-negative (Why)",
    "Architecture({'edge': -1})": "arch-negative (Why)",
    "choice 2.7 becomes 2": "derive-dict-2.7 (Why)",
    "Architecture 2.7": "arch-2.7 (Why)",
    "names that disagree with the index": "derive-names-disagree (Why)",
    "extra entries are ignored": "derive-extra-entry (Why)",
    "index out of range is an IndexError": "derive-out-of-range (Why)",
    "best_of_k validation_data=x (no labels)": "best-of-k-no-labels (Why)",
    "best_of_k k=0": "best-of-k-k-0 (Why)",
    "MixedOp(temperature=1e-30)": "mixedop-temperature-1e-30 (Why)",
    "MixedOp(temperature=1e-45)": "mixedop-temperature-1e-45 (Why)",
    "relaxation at 1e-30": "relax-underflow (Why)",
    "scheduler stores a temperature of 0.0": "scheduler-end-zero (Why)",
    "scheduler start below the floor": "scheduler-underflow (Why)",
    "BNScoreEvaluator without BatchNorm": "bn-evaluator-no-bn (Why)",
    "train_only_batchnorm without BN": "train-only-bn-no-bn (Why)",
    "train_only_batchnorm with affine=False BN": "train-only-bn-no-affine (Why)",
    "evolutionary_search(limit=nan)": "evolution-limit-nan (Why)",
    "sweep with budget 0 (search_space)": "sweep-budget-0 (Why)",
    "sweep with budget 0 (SweepTuner)": "sweep-tuner-space (Why)",
    "FiGSMask(initial_logit=nan)": "figs-initial-logit-nan (Why)",
    "set_choice([])": "figs-set-choice-empty (Why)",
    "MixedOp(channels=0)": "mixedop-channels-0 (Why)",
    "datasets.arrays(limit=-5)": "arrays-limit-negative (Why)",
    "SearchModel(net).fit(x, y) in bilevel mode": "searchmodel-fit-xy (Why)",
    "MixedOp('skip_connect') (a string)": "mixedop-string-candidates (Why)",
    "a string where a number belongs": "relax-string (Why)",
    "batch size 0": "load-batch-size-0 (Why)",
    "int8 calibration of the wrong shape": "tflite-int8-shape (Why)",
    "parity on garbage bytes": "parity-garbage (Why)",
    "WidthGate(widths=0.5)": "widthgate-scalar (Why)",
    "Architecture.from_json on a list": "arch-from-json-list (Why)",
    "joint_optimizer on a model without architecture variables":
        _SEARCH_TESTS + "test_joint_optimizer_without_architecture_variables",
}


# Silent before, noticed after issue 13 -> the row that checks it.
LATER = {
    "elementwise_cost with a negative size": "cost-elementwise-negative (Later)",
    "elementwise_cost with a fractional size": "cost-elementwise-fractional (Later)",
    "conv_cost with a negative kernel size": "cost-conv-kernel-negative (Later)",
    "conv_cost with a fractional output size": "cost-conv-out-hw-fractional (Later)",
    "depthwise_cost with a negative output size": "cost-depthwise-out-hw-negative (Later)",
    "bn_score.ranks of a NaN score": "bn-ranks-nan (Later)",
    "bn_score.ranks of an inf score": "bn-ranks-inf (Later)",
    "rank_vector of a NaN score": "bn-rank-vector-nan (Later)",
    "op_score of a diverged (NaN) gamma": "bn-op-score-nan-gamma (Later)",
    "MixedOp with the same op twice": "mixedop-duplicate (Later)",
    "WidthGate with the same width twice": "widthgate-duplicate (Later)",
    "EnTranCell top_k above the inputs a node has": "entran-top-k-3 (Later)",
    "QuantConv unknown input quantizer": "quantconv-unknown-input-quantizer (Later)",
    "QuantConv unknown kernel quantizer": "quantconv-unknown-kernel-quantizer (Later)",
    "SearchLayer arch_key=3": "searchlayer-arch-key-int (Later)",
    "SearchLayer arch_key=''": "searchlayer-arch-key-empty (Later)",
    "retrain.sgd(steps=0)": "retrain-sgd-steps-0 (Later)",
    "retrain.accuracy(batch_size=0): a range() error": "retrain-accuracy-batch-size-0 (Later)",
    "get_op(channels=0): Keras' filters message": "get-op-channels-0 (Later)",
    "get_op(channels=-4): Keras' filters message": "get-op-channels-negative (Later)",
    "get_op(channels=2.7) truncated to 2": "get-op-channels-fractional (Later)",
    "EnTranCell(dst=True, top_k=1): top_k ignored": "entran-dst-top-k (Later)",
    "relax.softmax with a NaN temperature": "relax-softmax-nan (Later)",
    "relax.logistic_sigmoid with a NaN temperature": "relax-sigmoid-nan (Later)",
    "relax.gumbel_softmax with a negative temperature": "relax-gumbel-negative (Later)",
    "relax.uniform_choice(0): a TF kernel error": "relax-uniform-choice-0 (Later)",
    "relax.fair_choice(0): a TF kernel error": "relax-fair-choice-0 (Later)",
}


def test_every_later_example_is_checked():
    ids = {case[0] for case in CASES}
    assert set(LATER.values()) <= ids
    assert {i for i in ids if i.endswith("(Later)")} == set(LATER.values())


def test_every_why_example_is_checked():
    ids = {case[0] for case in CASES}
    search_tests = (Path(__file__).parent / "test_bad_input_search.py").read_text()
    for example, where in WHY.items():
        if where.startswith(_SEARCH_TESTS):
            assert f"def {where[len(_SEARCH_TESTS):]}(" in search_tests, example
        else:
            assert where in ids, example
    assert {i for i in ids if i.endswith("(Why)")} <= set(WHY.values())
    assert len(WHY) == 39


def test_at_least_80_distinct_bad_inputs():
    ids = [case[0] for case in CASES]
    assert len(set(ids)) == len(ids) >= 80


@pytest.mark.parametrize("name,call,error,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(m, name, call, error, pattern):
    import examples.methods  # noqa: F401  (registers the sweep methods, e.g. "darts")

    with pytest.raises(error) as info:
        call(m)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert "\n" not in message.strip(), message  # one line


def test_architecture_strict_false_warns_by_name(m):
    arch = Architecture({"edge": 1, "ghost": 0}, {"edge": "skip_connect"})
    with pytest.warns(UserWarning, match=r"ignoring choices for layers model 'net' does not "
                      r"have: \['ghost'\]"):
        fitted = arch.validate(m["net"], strict=False)
    assert fitted.choices == {"edge": 1}
    # and a valid record derives the layer it names
    child = sl.derive(m["net"], architecture=fitted)
    assert [layer.name for layer in child.layers if "edge" in layer.name] == ["edge_skip_connect"]


def test_architecture_round_trips_and_never_evaluates(tmp_path, m):
    arch = sl.choose(m["net"])
    path = tmp_path / "arch.json"
    arch.save(path)
    assert Architecture.load(path) == arch
    assert Architecture.load(path).validate(m["net"]) == arch
    # a string that would be code is only ever a (wrong) value, never run
    with pytest.raises(ValueError, match=r"choice must be an integer index .*__import__"):
        Architecture({"edge": ["__import__('os').system('false')"]}).validate(m["net"])


def test_the_later_checks_leave_good_input_alone(tmp_path):
    """What the checks above allow still works: fractional / tensor channel counts and
    whole-number sizes in the cost helpers, larq's quantizer names and objects, and a
    candidate without BN, which BNScoreEvaluator ranks last (``missing=-inf``)."""
    import tensorflow as tf

    assert cost.elementwise_cost((None, 4.0, np.int64(4), 8)).elementwise == 128
    assert cost.conv_cost(2.5, 8, 3, (4, 4)).float_macs == pytest.approx(2.5 * 8 * 9 * 16)
    assert float(cost.dense_cost(tf.constant(2.0), 3).float_macs) == 6.0
    assert cost.conv_cost(3, 8, (3, 3), (16, 16)).float_macs == 55296  # int stays int
    for q in ("approx_sign", "SteSign", ScaledSign("scalar"), None):
        assert sl.QuantConv(4, 3, kernel_quantizer=q)(tf.ones([1, 4, 4, 2])).shape[-1] == 4
    assert sl.bn_score.ranks({"a": [0.2, NAN, 0.5]}, missing=-np.inf)["a"].tolist() == [1, 2, 0]
    assert sl.EnTranCell(["skip_connect", "none"], steps=1, top_k=2).top_k == 2

    def candidate(name):
        return K.Sequential([K.layers.Conv2D(4, 1), K.layers.BatchNormalization()], name=name)

    x = K.Input((4, 4, 4))
    edge = sl.MixedOp([candidate("a"), candidate("b"), K.layers.Activation("linear", name="id")],
                      mode="uniform", name="edge")
    net = K.Model(x, edge(x))
    edge.ops[0].layers[-1].gamma.assign([3.0] * 4)  # a scores 3, b scores 1, id has none
    evaluator = BNScoreEvaluator()
    evaluator.set_model(net)
    evaluator.on_train_begin()
    evaluator.on_epoch_end(0, {})
    assert evaluator.history[-1]["ranks"] == {"edge": [0, 1, 2]}
    assert evaluator.history[-1]["scores"]["edge"] == [3.0, 1.0, None]


def test_the_argument_checks_leave_good_input_alone(m):
    """Tensors pass the relax checks unchecked (they may be traced) and a temperature of 0
    clamps to the floor as relax documents; retrain with epochs=0 still scores the child;
    a DST cell keeps the default top_k through its config; NumPy counts are counts."""
    import tensorflow as tf

    logits = tf.constant([2.0, 1.0])
    np.testing.assert_array_equal(relax.softmax(logits, tf.Variable(0.0)), [1.0, 0.0])
    np.testing.assert_array_equal(relax.gumbel_softmax([30.0, 0.0], 0.0, [1, 2]), [1.0, 0.0])
    traced = tf.function(lambda n, t: (relax.uniform_choice(n, [0, 0]), relax.softmax(logits, t)))
    pick, probs = traced(tf.constant(3), tf.constant(1.0))
    assert 0 <= int(pick) < 3 and float(tf.reduce_sum(probs)) == pytest.approx(1.0)
    assert 0 <= int(relax.fair_choice(np.int64(3), 7, 4)) < 3
    _, acc = retrain.retrain(m["child"], DATA, epochs=0, batch_size=2)
    assert 0.0 <= acc <= 1.0
    assert retrain.accuracy(m["child"], X, Y, batch_size=3) == acc  # batches of 3 + 1
    cell = sl.EnTranCell(["skip_connect", "none"], steps=2, dst=True, arch_key="cells")
    assert sl.EnTranCell.from_config(cell.get_config()).top_k == 2
    assert sl.layers.get_op("conv_3x3", np.int64(4))(tf.zeros([1, 4, 4, 4])).shape[-1] == 4
