#!/usr/bin/env python
"""Improvement over random: a distilled set against random real subsets of the same class
counts, same protocol.

Same options as ``gift-hf improvement-over-random`` (``--help`` lists them; a YAML/JSON
file is accepted)::

    python recipes/improvement_over_random.py --teacher_model_name_or_path outputs/teacher \\
        --output_dir outputs/improvement_over_random
    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml \\
        recipes/improvement_over_random.py --teacher_model_name_or_path outputs/teacher ...

Under ``accelerate launch`` the cells (students) are shared out between the processes.
"""

import sys

from gift_hf.commands.improvement_over_random import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
