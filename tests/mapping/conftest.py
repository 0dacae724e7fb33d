"""Session fixtures of the mapping tests: each model's graph-level WIR is made once, and each
(model, target, mode) is mapped once; the tests share the mapped modules (read them, never mutate them).

GPT-2 small (12 layers, d 768, seq 128) is built on the meta device: capture and import need no weight data,
so it costs a few seconds instead of allocating 124M random parameters; it is captured once and mapped
from its WIR like the others.
"""

from __future__ import annotations

import functools
import warnings

import pytest


@functools.lru_cache(maxsize=1)
def gpt2_small_graph_text() -> str:
    import torch
    import transformers

    from tests.zoo import _LogitsWrapper
    from wafercc.frontend import capture, import_graph
    from wafercc.ir import print_module
    from wafercc.passes import DEFAULT_PIPELINE, run_pipeline

    config = transformers.GPT2Config(
        n_layer=12,
        n_embd=768,
        n_head=12,
        n_positions=128,
        vocab_size=50257,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        attn_implementation="eager",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            model = _LogitsWrapper(transformers.GPT2LMHeadModel(config)).eval()
        ids = torch.zeros(1, 128, dtype=torch.long, device="meta")
        imported = import_graph(capture(model, (ids,)), name="gpt2_small")
    return print_module(run_pipeline(imported.module, DEFAULT_PIPELINE))


@pytest.fixture(scope="session")
def graph_text(graph_modules):
    """name -> graph-level WIR text after the default cleanup pipeline (what the mapping passes read)."""
    from wafercc.ir import parse, print_module
    from wafercc.passes import DEFAULT_PIPELINE, run_pipeline

    cache: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in cache:
            if name == "gpt2_small":
                cache[name] = gpt2_small_graph_text()
            else:  # a copy: the shared ImportResult stays untouched
                m = parse(print_module(graph_modules[name].module))
                cache[name] = print_module(run_pipeline(m, DEFAULT_PIPELINE))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def plan(graph_text):
    """plan(name, target, mode) -> the mapped module, mapped once per session; a mapping that failed
    raises its error again for every test that asks. The passes run without verifying after each one
    (verification of every step is what the tests do, once, at the end)."""
    from tests.mapping.util import MAPPING, map_text

    cache: dict[tuple[str, str, str], object] = {}

    def get(name: str, target: str, mode: str = "stream"):
        key = (name, target, mode)
        if key not in cache:
            try:
                cache[key] = map_text(graph_text(name), target, mode, MAPPING, verify_each=False)
            except Exception as e:  # noqa: BLE001 - stored and raised again below
                cache[key] = e
        value = cache[key]
        if isinstance(value, Exception):
            raise value
        return value

    return get
