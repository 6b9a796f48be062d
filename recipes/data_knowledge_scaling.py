#!/usr/bin/env python
"""Data–knowledge scaling: IPC × top-k kept soft-label entries (k = all … 1) and hard labels,
as a heatmap.

Same options as ``gift-hf data-knowledge-scaling`` (``--help`` lists them; a YAML/JSON
file is accepted)::

    python recipes/data_knowledge_scaling.py --teacher_model_name_or_path outputs/teacher \\
        --output_dir outputs/data_knowledge_scaling
    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml \\
        recipes/data_knowledge_scaling.py --teacher_model_name_or_path outputs/teacher ...

Under ``accelerate launch`` the cells (students) are shared out between the processes.
"""

import sys

from gift_hf.commands.data_knowledge_scaling import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
