"""Every ```python block of README.md, of every docs/ page and of a generated model card runs.

A page's blocks run in order in one fresh interpreter (offline), as a reader runs them: a later
block may use what an earlier one made. They run as written, shrunk only by epochs (every
``…epochs=<n>`` becomes 1), in a folder holding what the pages assume exists:
the quickstart's teacher, a teacher run with per-epoch checkpoints, a saved RGB student, small
local datasets at the ids the pages name (a local folder in Hub layout loads like a Hub repo).

A block that cannot run here (it needs the Hub) is preceded by ``<!-- not-run: <reason> -->``;
keep those rare. ``PRELUDES`` holds, per page, the few names a page's text takes as given.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->\s*$")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SHRINK = [(re.compile(r"\b(\w*epochs)=\d+"), r"\1=1")]  # num_train_epochs=, full_data_epochs=, …

# What the text of a page says the reader already has (defined before the page's first block).
PRELUDES = {
    "docs/augmentation.md": (
        "from gift_hf import GIFTTrainer, create_model, load_digits_dataset\n"
        "from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD, ImageTransform\n"
        "digits = load_digits_dataset()\n"
        "transform = ImageTransform(channels=1, mean=DIGITS_MEAN, std=DIGITS_STD)\n"
        "real_train_split = digits['train'].with_transform(transform)\n"
        "distilled = digits['train'].select(range(100)).with_transform(transform)\n"
        "student = create_model('gift_convnet_d3', 10, in_chans=1, img_size=8)\n"
        "teacher = 'outputs/teacher'\n"
    ),
}


def blocks(page: str) -> list[tuple[int, str | None, str]]:
    """``(line, reason it is not run or None, code)`` of every ```python block of ``page``."""
    text = (REPO / page).read_text()
    found = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        found.append((text[: match.start()].count("\n") + 1, reason.group(1) if reason else None, match.group(1)))
    return found


def shrink(code: str) -> str:
    for pattern, replacement in SHRINK:
        code = pattern.sub(replacement, code)
    return code


def page_script(page: str, code_blocks: list[tuple[int, str | None, str]]) -> str:
    parts = [PRELUDES.get(page, "")]
    for line, reason, code in code_blocks:
        if reason is None:
            parts.append(f"# --- {page}:{line}\n{shrink(code)}")
    return "\n".join(parts)


def run_script(script: str, cwd: Path, name: str) -> None:
    (cwd / f"{name}.py").write_text(script)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "OMP_NUM_THREADS": "1",
        "TQDM_DISABLE": "1",
        "HF_DATASETS_CACHE": str(cwd / ".hf-datasets-cache"),
    }
    done = subprocess.run([sys.executable, f"{name}.py"], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{name}:\n{script}\n--- stderr:\n{done.stderr[-5000:]}"


# ------------------------------------------------------------------------------ fixtures
def _image_dataset(image_column: str, n: int, size: int, seed: int):
    import numpy as np
    from datasets import ClassLabel, Dataset, Features, Image

    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    features = Features({image_column: Image(), "label": ClassLabel(names=[str(i) for i in range(10)])})
    return Dataset.from_dict({image_column: images, "label": [i % 10 for i in range(n)]}, features=features)


def _hub_layout(splits: dict, folder: Path) -> None:
    """``splits`` as parquet shards in Hub layout (``data/<split>-00000-of-00001.parquet``)."""
    (folder / "data").mkdir(parents=True)
    for split, dataset in splits.items():
        dataset.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder with everything the pages assume exists, made for real and small."""
    import numpy as np
    from PIL import Image as PILImage
    from recipe_helpers import one_thread
    from transformers import set_seed

    from gift_hf import (
        GIFTConfig,
        GIFTTrainer,
        build_random_distilled,
        create_model,
        load_digits_dataset,
        relabel,
        save_distilled,
    )
    from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD, ImageTransform

    root = tmp_path_factory.mktemp("pages")
    digits = load_digits_dataset()
    set_seed(0)
    with one_thread():
        # the quickstart's teacher (README): 16×16 grayscale
        create_model(
            "gift_convnet_d3", 10, in_chans=1, img_size=16, image_mean=DIGITS_MEAN, image_std=DIGITS_STD
        ).save_pretrained(root / "outputs/quickstart/teacher")
        # `gift-hf train-teacher`'s output: one checkpoint per epoch (expert epochs), model at the top
        teacher = create_model(
            "gift_convnet_d3",
            10,
            in_chans=1,
            img_size=8,
            image_mean=DIGITS_MEAN,
            image_std=DIGITS_STD,
            id2label={i: str(i) for i in range(10)},
            width=16,
        )
        args = GIFTConfig(
            output_dir=str(root / "outputs/teacher"),
            loss="ce",
            soft_label_source="none",
            num_train_epochs=5,
            per_device_train_batch_size=64,
            save_strategy="epoch",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            seed=0,
            report_to=[],
        )
        transform = ImageTransform(channels=1, mean=DIGITS_MEAN, std=DIGITS_STD)
        trainer = GIFTTrainer(
            model=teacher, args=args, train_dataset=digits["train"].select(range(64)).with_transform(transform)
        )
        trainer.train()
        trainer.save_model()
        # an RGB teacher and a saved RGB student (getting-started)
        create_model(
            "gift_convnet_d3", 10, in_chans=3, img_size=32, image_mean=(0.5,) * 3, image_std=(0.5,) * 3
        ).save_pretrained(root / "runs/teacher")
        # `gift-hf quickstart --arch resnet10t --channels 3`'s student: a stock timm architecture
        create_model(
            "resnet10t",
            10,
            in_chans=3,
            img_size=16,
            image_mean=DIGITS_MEAN * 3,
            image_std=DIGITS_STD * 3,
            id2label={i: str(i) for i in range(10)},
        ).save_pretrained(root / "outputs/quickstart_rgb/students/gift/seed-0")
    PILImage.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).save(root / "digit.png")
    # datasets at the ids the pages name, as local folders in Hub layout
    _hub_layout(
        {"train": _image_dataset("image", 20, 32, 0), "test": _image_dataset("image", 10, 32, 1)},
        root / "path/or/hub-id",
    )
    _hub_layout(
        {"train": _image_dataset("img", 20, 32, 2), "test": _image_dataset("img", 10, 32, 3)}, root / "uoft-cs/cifar10"
    )
    subset, info = build_random_distilled(digits, ipc=2, seed=0, source_dataset="sklearn digits")
    save_distilled(subset, str(root / "my-distilled-set"), info)
    labelled, info = relabel(subset, str(root / "outputs/teacher"), info=info, output="probabilities")
    save_distilled(labelled, str(root / "your-name/digits-ipc10-random"), info)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_of_the_page_runs(page, workdir):
    code_blocks = blocks(page)
    if not any(reason is None for _, reason, _ in code_blocks):
        pytest.skip(f"{page} has no Python block to run")
    run_script(page_script(page, code_blocks), workdir, re.sub(r"\W", "_", page))


def test_the_blocks_are_found_marked_and_shrunk():
    readme = blocks("README.md")
    assert len(readme) >= 3 and all(code.strip() for _, _, code in readme)
    assert sum(len(blocks(page)) for page in PAGES) >= 20
    marked = [(page, line, reason) for page in PAGES for line, reason, _ in blocks(page) if reason]
    assert all(reason.startswith("needs ") for _, _, reason in marked), marked
    assert len(marked) <= 4, f"keep not-run blocks rare: {marked}"
    assert (
        shrink("GIFTConfig(num_train_epochs=300, epochs=100, max_epochs=7)")
        == "GIFTConfig(num_train_epochs=1, epochs=1, max_epochs=1)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("in_chans", [1, 3])
def test_the_python_block_of_a_saved_students_model_card_runs(tmp_path, digits, in_chans):
    """A student saved by the trainer gets a card whose snippet runs in a fresh interpreter,
    after only the imports it shows (``import gift_hf`` registers the ConvNets in timm)."""
    import numpy as np
    from PIL import Image as PILImage
    from recipe_helpers import one_thread

    from gift_hf import GIFTConfig, GIFTTrainer, create_model, image_transform_for
    from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD

    student = create_model(
        "gift_convnet_d3",
        10,
        in_chans=in_chans,
        img_size=8,
        image_mean=DIGITS_MEAN * in_chans,
        image_std=DIGITS_STD * in_chans,
        id2label={i: str(i) for i in range(10)},
    )
    args = GIFTConfig(
        output_dir=str(tmp_path / "run"),
        loss="ce",
        soft_label_source="none",
        max_steps=1,
        per_device_train_batch_size=16,
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        report_to=[],
    )
    trainer = GIFTTrainer(
        model=student,
        args=args,
        train_dataset=digits["train"].select(range(16)).with_transform(image_transform_for(student)),
    )
    with one_thread():
        trainer.train()
    trainer.save_model(str(tmp_path / "student"))
    card = (tmp_path / "student" / "README.md").read_text()
    code_blocks = [code for code in BLOCK.findall(card)]
    assert len(code_blocks) == 1 and "<repo_id or local directory>" in code_blocks[0]
    assert ("import gift_hf" in code_blocks[0]) == (in_chans == 3)  # the grayscale snippet imports gift_hf anyway
    PILImage.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).convert("RGB").save(tmp_path / "image.png")
    code = code_blocks[0].replace("<repo_id or local directory>", str(tmp_path / "student"))
    run_script(code, tmp_path, "card_snippet")
