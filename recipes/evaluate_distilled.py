#!/usr/bin/env python
"""Evaluate a distilled set the papers' way: ``num_students`` students trained with GIFTTrainer
under a protocol (``gift`` or ``label_paper``, every field overridable), scored on the real
test split, mean ± std.

Same options as ``gift-hf evaluate`` (``--help`` lists them; a YAML/JSON
file is accepted)::

    python recipes/evaluate_distilled.py --teacher_model_name_or_path outputs/teacher \\
        --distilled outputs/distilled --output_dir outputs/evaluate
    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml \\
        recipes/evaluate_distilled.py --teacher_model_name_or_path outputs/teacher ...

Under ``accelerate launch`` the cells (students) are shared out between the processes.
"""

import sys

from gift_hf.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
