"""OneRec-V1 / OneRec-V2 pretraining (thin wrapper over :mod:`kwaiformers.trainers.onerec_pretrain`).

    python trainers/onerec_pretrain.py --config trainers/configs/onerec_v2_tiny.yaml
    kwaiformers train onerec --config trainers/configs/onerec_v2_tiny.yaml     # same thing
"""

from __future__ import annotations

import argparse
import sys

from kwaiformers.trainers import onerec_pretrain

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="OneRec pretraining recipe")
    onerec_pretrain.add_arguments(parser)
    sys.exit(onerec_pretrain.run(parser.parse_args()))
