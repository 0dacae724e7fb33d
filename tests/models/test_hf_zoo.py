"""The HF zoo (tests/zoo.py ``HF_ZOO``): transformers architectures as their users call them -- decoder LMs
with their default config (KV cache on) and one decode step against a prefilled cache, encoders, the encoders
of encoder-decoders, vision and audio models -- each compiled for the default target and verified against
eager PyTorch on the plan-executing runtime, at the default fp32 tolerance.

Capture (torch.export) dominates the cost, so the entries the session selected are compiled in a pool of
worker processes (one per core, at most two) started once per session; each test waits for its own entry.
The architectures wafercc cannot compile are in ``HF_EXPECTED_FAILURES`` with the reason, and each must fail
with one clear WaferError (exit code 2, a message naming the cause and the model's line).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor

import pytest

from tests import zoo

ZOO_NAMES = list(zoo.HF_ZOO)
FAILURE_NAMES = list(zoo.HF_EXPECTED_FAILURES)


def _init_worker() -> None:
    import warnings

    import torch

    torch.set_num_threads(1)  # the workers share the cores
    warnings.simplefilter("ignore")
    import transformers

    transformers.logging.set_verbosity_error()


def run_entry(kind: str, name: str) -> dict:
    """In a worker: build the entry, compile and verify it; a picklable summary."""
    from wafercc.ir.errors import WaferError
    from wafercc.numerics import compare_model

    start = time.perf_counter()
    out = {"name": name, "passed": False, "error": None, "error_type": None, "exit_code": None}
    try:
        build = zoo.HF_ZOO[name] if kind == "zoo" else zoo.HF_EXPECTED_FAILURES[name][0]
        model, inputs = build()
        result = compare_model(model, inputs, name=name.replace("-", "_"))
        out["passed"] = result.passed
        out["lines"] = (
            [f"{c.name}: {c.comparison.summary()}" for c in result.outputs]
            + ([result.reason] if result.reason else [])
            + ([result.diagnosis] if result.diagnosis else [])
        )
    except WaferError as e:
        out.update(error=str(e), error_type=type(e).__name__, exit_code=getattr(e, "exit_code", None))
    except Exception as e:  # a traceback where the user should have had a WaferError: a bug, kept whole
        out.update(error=traceback.format_exc(), error_type=type(e).__name__)
    out["seconds"] = time.perf_counter() - start
    return out


@pytest.fixture(scope="session")
def hf_zoo_results(request):
    """(kind, name) -> Future of run_entry, for the zoo tests this session selected."""
    wanted = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or item.module.__name__ != __name__:
            continue
        if "zoo_name" in callspec.params:
            wanted.append(("zoo", callspec.params["zoo_name"]))
        elif "failure_name" in callspec.params:
            wanted.append(("failure", callspec.params["failure_name"]))
    workers = max(1, min(2, os.cpu_count() or 1, len(wanted)))
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
    futures = {key: pool.submit(run_entry, *key) for key in wanted}
    yield futures
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("zoo_name", ZOO_NAMES)
def test_hf_model_compiles_and_matches_eager(hf_zoo_results, zoo_name):
    r = hf_zoo_results[("zoo", zoo_name)].result()
    assert r["error"] is None, f"{zoo_name}: {r['error_type']}: {r['error']}"
    assert r["passed"], f"{zoo_name} differs from eager PyTorch:\n" + "\n".join(r["lines"])


@pytest.mark.parametrize("failure_name", FAILURE_NAMES)
def test_unsupported_architectures_fail_clearly(hf_zoo_results, failure_name):
    r = hf_zoo_results[("failure", failure_name)].result()
    must_say = zoo.HF_EXPECTED_FAILURES[failure_name][1]
    assert not r["passed"], f"{failure_name} compiles now: move it into HF_ZOO"
    assert r["exit_code"] == 2, f"{failure_name} should fail with a WaferError, got {r['error_type']}: {r['error']}"
    assert "Traceback" not in r["error"]
    for words in must_say:
        assert words in r["error"], f"{failure_name}: the error does not say {words!r}:\n{r['error']}"


def test_the_zoo_covers_what_users_bring():
    families = set(zoo.DECODERS) | set(zoo.STATE_DECODERS) | set(zoo.ENCODERS)
    assert len(families) >= 30
    # each decoder with a KV cache is verified with the cache on and for one decode step against a full cache
    assert all(f"{name}-decode" in zoo.HF_ZOO for name in zoo.DECODERS)
    for must in [
        "gpt2",
        "llama",
        "mistral",
        "qwen2",
        "gemma",
        "phi",
        "mixtral",
        "bert",
        "t5_encoder",
        "vit",
        "whisper_encoder",
        "wav2vec2",
        "segformer",
    ]:
        assert must in zoo.HF_ZOO


def test_decode_step_wrapper_agrees_with_the_full_forward():
    # The decode entries are only worth verifying if they are decode steps: the last position's logits of the
    # whole sequence equal the logits of the one token against the prefilled cache.
    import torch

    model, (token, mask, *past) = zoo.HF_ZOO["llama-decode"]()
    prompt_model, (prompt,) = zoo.HF_ZOO["llama"]()
    with torch.no_grad():
        full = prompt_model.model(input_ids=torch.cat([prompt, token], dim=1), attention_mask=mask).logits[:, -1]
        step = model(token, mask, *past)[:, -1]
    torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)
