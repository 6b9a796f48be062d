"""The README's Python example runs as written (with a tiny teacher and 2 steps)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## Train a student in Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(tmp_path, monkeypatch, tiny_model):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 15, "the README promises a 15-line example"
    from gift_hf import create_model

    create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=16).save_pretrained(tmp_path / "teacher")
    code = code.replace('"outputs/quickstart/teacher"', repr(str(tmp_path / "teacher")))
    code = code.replace('"outputs/student"', repr(str(tmp_path / "student")))
    code = code.replace("num_train_epochs=100", "max_steps=2, disable_tqdm=True")
    assert "max_steps=2" in code and str(tmp_path) in code
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    metrics = namespace["trainer"].evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and namespace["trainer"].state.global_step == 2
