#!/usr/bin/env python
"""The label paper's swap test: destroy the ranking of stored soft labels (k-th largest <->
smallest) for each k.

Same options as ``gift-hf label-swap`` (``--help`` lists them; a YAML/JSON
file is accepted)::

    python recipes/label_swap.py --teacher_model_name_or_path outputs/teacher \\
        --output_dir outputs/label_swap
    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml \\
        recipes/label_swap.py --teacher_model_name_or_path outputs/teacher ...

Under ``accelerate launch`` the cells (students) are shared out between the processes.
"""

import sys

from gift_hf.commands.label_swap import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
