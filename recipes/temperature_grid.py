#!/usr/bin/env python
"""Temperature × expert epoch grid at one IPC (label temperature for stored probabilities, loss
temperature otherwise).

Same options as ``gift-hf temperature-grid`` (``--help`` lists them; a YAML/JSON
file is accepted)::

    python recipes/temperature_grid.py --teacher_model_name_or_path outputs/teacher \\
        --output_dir outputs/temperature_grid
    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml \\
        recipes/temperature_grid.py --teacher_model_name_or_path outputs/teacher ...

Under ``accelerate launch`` the cells (students) are shared out between the processes.
"""

import sys

from gift_hf.commands.temperature_grid import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
