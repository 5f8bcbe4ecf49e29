"""Quiet by default: ``import searchlayers`` and a conversion print no TensorFlow notices."""

import os
import re
import subprocess
import sys

from searchlayers import _logs

SCRIPT = """
import numpy as np
import searchlayers as sl
from searchlayers import export
k = sl.keras
model = k.Sequential([k.Input((4,)), k.layers.Dense(2)])
x = np.random.RandomState(0).rand(16, 4).astype("float32")
export.parity(model, export.to_tflite(model), x)
export.to_tflite(model, quantize="int8", representative_data=x)
print("converted")
"""
TF_LINE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages|INFO: Created TensorFlow Lite"
                     r"|fully_quantize: )", re.M)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(**env):
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "converted" in done.stdout
    return done.stdout + done.stderr


def test_import_and_conversion_print_no_tensorflow_lines_by_default():
    output = _run()
    assert TF_LINE.findall(output) == [], output


def test_level_zero_brings_the_lines_back():
    # The same run with every C++ line asked for: the capture above is not blind.
    output = _run(TF_CPP_MIN_LOG_LEVEL="0")
    assert TF_LINE.search(output), output


def test_notices_by_level():
    info = "I0000 00:00:1.0  42 reader.cc:83] Reading SavedModel from: /tmp/x"
    warning = "W0000 00:00:1.0  42 helpers.cc:364] Ignored output_format."
    error = "E0000 00:00:1.0  42 kernel.cc:10] Op failed"
    no_gpu = ("E0000 00:00:1.0  42 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
              "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
    assert [_logs.is_notice(line, 1) for line in (info, warning, error)] == [True, False, False]
    assert [_logs.is_notice(line, 2) for line in (info, warning, error)] == [True, True, False]
    assert _logs.is_notice(no_gpu, 2) and not _logs.is_notice(no_gpu, 0)
    assert not _logs.is_notice("Traceback (most recent call last):", 3)


def test_quiet_keeps_other_lines(capfd):
    with _logs.quiet():
        os.write(2, b"I0000 00:00:1.0  42 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"a real message\n")
    assert capfd.readouterr().err == "a real message\n"
