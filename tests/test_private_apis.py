"""The inventory of private framework APIs (docs/private-apis.md) against the code.

Every use of a framework's private API in gradrev/ carries a ``# private API [id]:
docs/private-apis.md`` comment, so one grep finds them all; the page has one row per id.
These tests keep both true, and cover the uses that no other test exercised.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "docs" / "private-apis.md"
MARKER = re.compile(r"# private API ((?:\[[a-z0-9-]+\](?:, )?)+): docs/private-apis\.md")

# What each id's private name looks like in code (comments and docstrings left out). A hit
# needs its id's marker on the same line or in the three lines above.
PATTERNS = {
    "torch-unwrap-if-dead": r"\bunwrap_if_dead\b",
    "torch-apply-bypass": r"super\(torch\.autograd\.Function\b",
    "torch-forward-ad-level": r"\._current_level\b",
    "torch-functorch-active": r"\b_are_functorch_transforms_active\b",
    "torch-is-tracing": r"\btorch\._C\._is_tracing\b",
    "torch-saved-tensor-hooks": r"\b_top_saved_tensors_default_hooks\b",
    "torch-assert": r"\btorch\._assert\b",
    "torch-tensor-version": r"\._version\b",
    "torch-module-apply": r"\bdef _apply\(self\b",
    "torch-load-from-state-dict": r"\bdef _load_from_state_dict\(",
    "torch-save-to-state-dict": r"\bdef _save_to_state_dict\(",
    "torch-module-buffers": r"\._buffers\b",
    "torch-compile-counter": r"\btorch\._dynamo\b",
    "tf-eager-record": r"\btensorflow\.python\b|\b_record\.",
    "keras-flatten-layers": r"\._flatten_layers\b",
    "keras-jax-state-sync": r"\bjax_state_sync\b",
    "keras-variable-value-slot": r"[\"']_value[\"']|\bvariable\._value\b",
    "keras-variable-assign-hook": r"\bclass \w+\(keras\.Variable\)",
    "jax-core-tracer": r"\bjax\.core\.",
    "flax-unsafe-bypass-check": r"\b_unsafe_bypass_check\b",
    "flax-raw-value-slot": r"\.raw_value\b|\"raw_value\"",
    "flax-variable-restore-hooks": r"\bdef (update_from_state|set_raw_value)\(",
    "mlx-module-setitem": r"\bdef __setitem__\(",
}
# Anything else that looks private must carry some marker (and then a row of its own).
ANY_PRIVATE = re.compile(
    r"\b(torch|tf|tensorflow|jax|jnp|lax|keras|mx|nn|nnx|flax)\._[A-Za-z]"
    r"|\btensorflow\.python\b|\bjax\._src\b|\bkeras\.src\b|\bdef _extra_repr\("
)


def _code_lines(path: Path) -> list[str]:
    """The file's lines with comments and triple-quoted strings (docstrings) blanked."""
    text = path.read_text()
    lines = text.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT or (
            tok.type == tokenize.STRING and tok.string.lstrip("rbuRBU").startswith(('"""', "'''"))
        ):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for row in range(r0, r1 + 1):
                line = lines[row - 1]
                start = c0 if row == r0 else 0
                end = c1 if row == r1 else len(line)
                lines[row - 1] = line[:start] + " " * (end - start) + line[end:]
    return lines


def _markers() -> dict[str, set[str]]:
    """id -> the files (relative to the repository) whose comments name it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "gradrev").rglob("*.py")):
        for match in MARKER.finditer(path.read_text()):
            for ident in re.findall(r"\[([a-z0-9-]+)\]", match[1]):
                found.setdefault(ident, set()).add(str(path.relative_to(ROOT)))
    return found


def _rows() -> dict[str, str]:
    """id -> the page's row for it (the table of uses in place)."""
    table = PAGE.read_text().split("<!-- uses:begin -->")[1].split("<!-- uses:end -->")[0]
    rows = {}
    for line in table.splitlines():
        if match := re.match(r"\| `([a-z0-9-]+)` \|", line):
            assert match[1] not in rows, f"{match[1]} has two rows"
            rows[match[1]] = line
    return rows


def test_every_marked_use_has_its_row_and_every_row_its_uses() -> None:
    markers, rows = _markers(), _rows()
    assert sorted(markers) == sorted(rows), "ids in gradrev/ and in docs/private-apis.md differ"
    for ident, files in markers.items():
        where = rows[ident].split(" | ")[2]
        named = set(re.findall(r"`(gradrev/[\w/]+\.py)", where))
        assert named == files, f"{ident}: the page names {sorted(named)}, the code {sorted(files)}"
    assert sorted(PATTERNS) == sorted(rows), "each row needs its pattern in PATTERNS"


def test_every_named_test_exists() -> None:
    """The "covered by" cells name real tests (file::function)."""
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)", PAGE.read_text())
    assert len(named) >= len(_rows())
    missing = [
        f"{file}::{name}"
        for file, name in named
        if not re.search(rf"^def {name}\(", (ROOT / file).read_text(), re.M)
    ]
    assert not missing, missing


def test_the_page_states_its_count() -> None:
    count = len(_rows())
    places = sum(len(MARKER.findall(path.read_text())) for path in (ROOT / "gradrev").rglob("*.py"))
    text = PAGE.read_text()
    assert f"**{count} private APIs**" in text, f"the page must say {count}"
    assert f"marked at {places} places" in text, f"the page must say {places}"


def test_every_private_name_in_gradrev_is_marked() -> None:
    """One grep (``grep -rn "private API \\[" gradrev``) finds every use."""
    unmarked = []
    for path in sorted((ROOT / "gradrev").rglob("*.py")):
        raw, code = path.read_text().splitlines(), _code_lines(path)
        for i, line in enumerate(code):
            near = "\n".join(raw[max(0, i - 3) : i + 1])
            where = f"{path.relative_to(ROOT)}:{i + 1}: {raw[i].strip()}"
            for ident, pattern in PATTERNS.items():
                if re.search(pattern, line) and f"[{ident}]" not in near:
                    unmarked.append(f"{where} (needs [{ident}])")
            if ANY_PRIVATE.search(line) and not MARKER.search(near):
                unmarked.append(f"{where} (private: mark it and add a row)")
    assert not unmarked, "\n".join(unmarked)


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def test_torch_tensor_leaked_from_a_finished_transform_gets_its_gradient(torch: Any) -> None:
    """[torch-unwrap-if-dead]: a tensor that escaped a finished torch.func transform is still
    wrapped; the eager fast path must unwrap it as Function.apply does, or the gradient
    silently stops there (w.grad stayed None when the unwrap was left out)."""
    import gradrev

    w = torch.ones(3, requires_grad=True)
    leaked = []

    def f(x: Any) -> Any:
        leaked.append(x * w)
        return x.sum()

    torch.func.grad(f)(torch.ones(3))
    gradrev.reverse(leaked[0], 0.5).sum().backward()
    assert w.grad is not None and w.grad.tolist() == [-0.5] * 3


def test_keras_layer_casts_no_input_and_takes_numpy() -> None:
    """The Keras layer keeps its inputs' dtype through Layer's public autocast=False, not the
    private _convert_input_args: autocast=True is refused (it was silently accepted), and a
    NumPy input becomes a tensor as in any Keras layer (it was Keras' "Only input tensors may
    be passed as positional arguments")."""
    pytest.importorskip("keras")
    import keras

    from gradrev.keras import GradientReversal

    with pytest.raises(ValueError, match=r"autocast must be False.*got autocast=True"):
        GradientReversal(0.5, autocast=True)
    layer = GradientReversal(0.5)
    assert layer.autocast is False
    y = layer(np.array([1.0, -2.0], np.float32))
    assert keras.ops.convert_to_numpy(y).tolist() == [1.0, -2.0]
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = GradientReversal(0.5)
    finally:
        keras.config.set_dtype_policy(policy)
    for grl, dtype in ((layer, "bfloat16"), (mixed, "float32")):  # Keras would cast both
        x = keras.ops.convert_to_tensor(np.ones(2, np.float32), dtype=dtype)
        assert keras.backend.standardize_dtype(grl(x).dtype) == dtype
