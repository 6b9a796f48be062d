"""Run under `accelerate launch` (2 processes) by tests/test_distributed.py: K students trained together by one
GIFTTrainer in DDP; each rank writes its students' accuracies and a checksum of their weights."""

import json
import sys

import torch

from gift_hf import create_model, load_digits_dataset, protocol_config
from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD, ImageTransform
from gift_hf.engine.training import train_students


def build():
    return create_model(
        "gift_convnet_d3", 10, in_chans=1, img_size=8, width=8, image_mean=DIGITS_MEAN, image_std=DIGITS_STD
    )


def main(out: str) -> None:
    data = load_digits_dataset()
    transform = ImageTransform(channels=1, mean=DIGITS_MEAN, std=DIGITS_STD)
    train = data["train"].select(range(40)).with_transform(transform)
    test = data["test"].select(range(90)).with_transform(transform)
    torch.manual_seed(123)
    teacher = build().eval()
    config = protocol_config(
        "rded",
        output_dir=out,
        num_train_epochs=3,
        per_device_train_batch_size=10,
        batch_sizes=None,
        eval_every_epochs=0,
        best_of=2,
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    results = train_students(config, build, train, test, seeds=[0, 1, 2], teacher=teacher, quiet=True)
    rank = config.process_index
    record = {
        "world_size": config.world_size,
        "steps": results[0].steps,
        "accuracies": [r.accuracies for r in results],
        "checksums": [float(sum(p.double().sum() for p in r.model.parameters())) for r in results],
    }
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(sys.argv[1])
