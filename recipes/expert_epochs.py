#!/usr/bin/env python
"""The label paper's expert-epoch sweep: label random subsets with each saved teacher
checkpoint, at several IPC.

Same options as ``gift-hf expert-epochs`` (``--help`` lists them; a YAML/JSON
file is accepted)::

    python recipes/expert_epochs.py --teacher_model_name_or_path outputs/teacher \\
        --output_dir outputs/expert_epochs
    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml \\
        recipes/expert_epochs.py --teacher_model_name_or_path outputs/teacher ...

Under ``accelerate launch`` the cells (students) are shared out between the processes.
"""

import sys

from gift_hf.commands.expert_epochs import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
