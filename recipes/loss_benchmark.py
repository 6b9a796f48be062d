#!/usr/bin/env python
"""The GIFT paper's loss comparison and cross-optimizer study: every loss × every optimizer on
one distilled set.

Same options as ``gift-hf loss-benchmark`` (``--help`` lists them; a YAML/JSON
file is accepted)::

    python recipes/loss_benchmark.py --teacher_model_name_or_path outputs/teacher \\
        --output_dir outputs/loss_benchmark
    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml \\
        recipes/loss_benchmark.py --teacher_model_name_or_path outputs/teacher ...

Under ``accelerate launch`` the cells (students) are shared out between the processes.
"""

import sys

from gift_hf.commands.loss_benchmark import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
