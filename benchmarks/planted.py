"""Planted-answer tasks: does each search mechanism recover the known answer?

Tasks and their construction: ``searchlayers.planted`` (a receptive-field
task whose only working ``MixedOp`` candidate is ``conv_5x5``; a depth task
whose shallowest working depth is 2 of 0..3; a width task whose right width
is 0.5; a channel task whose only useful ``FiGSMask`` channels are
``{0, 1, 2}`` of 8). For each
mechanism the search runs bi-level with ``SearchSchedule(method, "auto")``
(the step-aware architecture learning rate and temperature) for ``--seeds``
seeds; the derived (argmax / logit > 0) choice is compared with the planted
answer. Random sampling's recovery rate is given analytically (uniform over
the space: ``planted.chance``) and estimated by ``--draws`` draws of
``choose(supernet, "sample")`` on the untrained supernet.

Mechanisms: ``darts`` (softmax), ``darts_paper`` (the same with DARTS'
architecture learning rate 3e-4, ``preset="paper"``), ``snas`` (Gumbel-softmax),
``gdas`` (hard Gumbel: one op per step, so 3x the steps), ``bnnas`` (BN-NAS:
single-path supernet, plain fit, BN score; no schedule), ``entrannas`` (one
Engine cell), ``depth`` (BARS'
depth gate), ``width`` (BARS' width gate), ``figs`` (mask temperature 0.1)
and ``figs_tau0.001`` (FiGS' own temperature). ``random (sampled)`` for a
mask draws at the initial logits (p = 0.92 per channel), hence about 0.

Writes ``benchmarks/results/planted.json`` (per mechanism: seeds recovered,
steps, seconds, random's rate, per-seed details) and prints a table.

Example:
    nice -n 10 python -m benchmarks.planted              # ~13 minutes on 2 busy cores
    python -m benchmarks.planted --mechanisms=darts --seeds=2
"""

import json
import os
import statistics
import time

from absl import app, flags

from benchmarks.common import RESULTS, table, write_json
from searchlayers import planted

FLAGS = flags.FLAGS
flags.DEFINE_list("mechanisms", ["darts", "darts_paper", "snas", "gdas", "entrannas", "bnnas",
                                 "depth", "width", "figs",
                                 "figs_tau0.001"],
                  "Mechanisms to run (empty: re-tabulate planted.json).")
flags.DEFINE_integer("seeds", 5, "Seeds per mechanism.")
flags.DEFINE_integer("draws", 600, "Random architectures drawn per mechanism.")

# Per mechanism: what is searched, epochs (32 architecture steps each), weight lr.
SETTINGS = {
    "darts": dict(layer="MixedOp softmax", epochs=10, lr=0.003),
    "darts_paper": dict(layer="MixedOp softmax", epochs=10, lr=0.003, preset="paper"),
    "snas": dict(layer="MixedOp gumbel", epochs=30, lr=0.01),
    "gdas": dict(layer="MixedOp gumbel_hard", epochs=30, lr=0.01),
    # FiGS: 4 warm-up epochs, additive params penalty 0.1 x params / params(supernet);
    # mask temperature 0.1, and the paper's 0.001 for comparison.
    # EnTranNAS: one Engine cell (one node, top_k=1), entrannas auto schedule.
    "entrannas": dict(layer="EnTranCell engine", epochs=10, lr=0.003),
    # BN-NAS: single-path (uniform) supernet, plain fit, BN score (no schedule).
    "bnnas": dict(layer="MixedOp uniform + BN score", epochs=10, lr=0.01, preset="none"),
    # depth: BARS' gate (Gumbel-softmax) + schedule, 4 warm-up epochs, MACs penalty 0.03.
    "depth": dict(layer="GumbelDepthGate", epochs=20, lr=0.01),
    # width: BARS' width gate on the input, params penalty 0.03, 4 warm-up epochs.
    "width": dict(layer="WidthGate", epochs=20, lr=0.01),
    "figs": dict(layer="FiGSMask tau=0.1", epochs=20, lr=0.01, temperature=0.1),
    "figs_tau0.001": dict(layer="FiGSMask tau=0.001", epochs=20, lr=0.01, temperature=0.001),
}


def _listed(answer):
    return list(answer) if isinstance(answer, tuple) else answer


def run_mechanism(name, seeds, draws):
    s = SETTINGS[name]
    runs = []
    for seed in range(seeds):
        if name == "entrannas":
            r = planted.search_entrannas(seed=seed, epochs=s["epochs"], lr=s["lr"])
        elif name == "bnnas":
            r = planted.search_bn_score(seed=seed, epochs=s["epochs"], lr=s["lr"])
        elif name == "depth":
            r = planted.search_depth(seed=seed, epochs=s["epochs"], lr=s["lr"])
        elif name == "width":
            r = planted.search_width(seed=seed, epochs=s["epochs"], lr=s["lr"])
        elif name.startswith("figs"):
            r = planted.search_channels(seed=seed, epochs=s["epochs"], lr=s["lr"], warmup=4,
                                        strength=0.1, temperature=s["temperature"])
        else:
            r = planted.search_receptive_field(name.split("_")[0], seed=seed, epochs=s["epochs"],
                                               lr=s["lr"], preset=s.get("preset", "auto"))
        print(name, seed, r, flush=True)
        runs.append(dict(seed=seed, **r))
    if name == "entrannas":
        net, answer = planted.entrannas_supernet(), planted.RF_ANSWER
        rate = dict(random_uniform=planted.chance(net))
    elif name == "bnnas":
        net = planted.receptive_field_supernet("uniform", candidates=planted.BN_CANDIDATES)
        answer, rate = planted.BN_ANSWER, dict(random_uniform=planted.chance(net))
    elif name == "depth":
        net, answer = planted.depth_supernet(), planted.DEPTH_ANSWER
        rate = dict(random_uniform=planted.chance(net))
    elif name == "width":
        net, answer = planted.width_supernet(), planted.WIDTH_ANSWER
        rate = dict(random_uniform=planted.chance(net))
    elif name.startswith("figs"):
        net, answer = planted.channel_supernet(), (0, 1, 2)
        rate = dict(random_uniform=planted.chance(net), random_uniform_given_k=planted.chance(
            net, k=3))
    else:
        net = planted.receptive_field_supernet(planted.MODES[name.split("_")[0]])
        answer = planted.RF_ANSWER
        rate = dict(random_uniform=planted.chance(net))
    rate["random_sampled"] = planted.random_recovery(net, answer, draws=draws)
    return dict(
        mechanism=name, searched=s["layer"],
        answer=list(answer) if name.startswith("figs") else answer,
        recovered=sum(r["recovered"] for r in runs), seeds=seeds, settings=s,
        # seeds whose untrained supernet did not already derive the answer, and how
        # many of those the search recovered
        started_elsewhere=sum(r["initial"] != _listed(answer) for r in runs),
        recovered_from_elsewhere=sum(r["recovered"] for r in runs
                                     if r["initial"] != _listed(answer)),
        steps=runs[0]["steps"], epochs=s["epochs"], weight_lr=s["lr"],
        arch_lr=runs[0]["arch_lr"], schedule=s.get("preset", "auto"),
        seconds_mean=round(sum(r["seconds"] for r in runs) / seeds, 1),
        seconds_total=round(sum(r["seconds"] for r in runs), 1),
        draws=draws, runs=runs, **rate)


def main(argv):
    """Runs ``--mechanisms`` (none: only re-tabulates the JSON) and merges them
    into ``planted.json`` (a full run replaces it)."""
    del argv
    start = time.perf_counter()
    results = [run_mechanism(m, FLAGS.seeds, FLAGS.draws) for m in FLAGS.mechanisms]
    old = os.path.join(RESULTS, "planted.json")  # a partial run keeps the other entries
    seconds = round(time.perf_counter() - start, 1)
    if os.path.exists(old) and set(FLAGS.mechanisms) != set(SETTINGS):
        with open(old) as f:
            saved = json.load(f)
        ran = {r["mechanism"] for r in results}
        results = [r for r in saved["mechanisms"] if r["mechanism"] not in ran] + results
        seconds = round(saved.get("seconds", 0) + seconds, 1)
    results.sort(key=lambda r: list(SETTINGS).index(r["mechanism"]))
    for r in results:
        probs = [x["max_prob"] for x in r["runs"]]
        r["max_prob_median"] = None if None in probs else statistics.median(probs)
    rows = [[r["mechanism"], r["searched"], f"{r['recovered']}/{r['seeds']}",
             f"{r.get('recovered_from_elsewhere', '?')}/{r.get('started_elsewhere', '?')}",
             r["steps"],
             r["seconds_mean"],
             "-" if r["max_prob_median"] is None else f"{r['max_prob_median']:.2f}",
             f"{r['random_uniform']:.4f}",
             f"{r['random_sampled']:.4f}",
             " ".join(str(x["choice"]) if not r["mechanism"].startswith("figs") else
                      "".join(map(str, x["choice"])) for x in r["runs"])]
            for r in results]
    print(table(rows, ["mechanism", "layer", "recovered", "from elsewhere", "arch steps",
                       "s/seed",
                       "median max p", "random (uniform)", "random (sampled)",
                       "derived per seed"]))
    write_json("planted", dict(
        mechanisms=results, seconds=seconds,
        tasks=dict(receptive_field="y = x[3,2] XOR x[3,5]; only conv_5x5 of " +
                   ", ".join(planted.RF_CANDIDATES) + " sees both pixels",
                   depth="y = x[3,2] XOR x[3,6]; depth 2 of 0..3 conv_3x3 cells is the "
                   "shallowest that sees both (MACs penalty 0.03)",
                   width="y = x0 + .. + x3 > 0 of 8 N(0,1) features; width 0.5 of "
                   "0.25, 0.5, 0.75, 1 (params penalty 0.03)",
                   channels="y = x0 + x1 + x2 > 0 of 8 N(0,1) features; keep {0,1,2}")))


if __name__ == "__main__":
    app.run(main)
