"""E-Tree recipe (thin wrapper): ``python trainers/etree.py --config trainers/configs/etree_smoke.yaml``.

Same as ``kwaiformers train etree --config ...`` (same error handling: a user error prints one
``error:`` line and exits 2). Also ``torchrun --standalone --nproc_per_node N trainers/etree.py
--config ...`` and ``accelerate launch --multi_gpu --num_processes N trainers/etree.py --config
...``. The logic lives in :mod:`kwaiformers.federated.recipe`.
"""

import sys

from kwaiformers.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "etree", *sys.argv[1:]]))
