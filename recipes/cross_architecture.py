#!/usr/bin/env python
"""Cross-architecture study: students of several architectures trained on the labels of several
teachers.

Same options as ``gift-hf cross-architecture`` (``--help`` lists them; a YAML/JSON
file is accepted)::

    python recipes/cross_architecture.py --teacher_model_name_or_path outputs/teacher \\
        --output_dir outputs/cross_architecture
    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml \\
        recipes/cross_architecture.py --teacher_model_name_or_path outputs/teacher ...

Under ``accelerate launch`` the cells (students) are shared out between the processes.
"""

import sys

from gift_hf.commands.cross_architecture import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
