"""OneRec-V1 / OneRec-V2 pretraining (thin wrapper over :mod:`kwaiformers.trainers.onerec_pretrain`).

    python trainers/onerec_pretrain.py --config trainers/configs/onerec_v2_tiny.yaml
    kwaiformers train onerec --config trainers/configs/onerec_v2_tiny.yaml     # same thing
"""

import sys

from kwaiformers.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "onerec", *sys.argv[1:]]))
