"""``vidalign train reward``: reward-gradient fine-tuning (VADER, PISA ORO) from a YAML config.

Single process: ``vidalign train reward --config vader_aesthetic`` (a shipped example by name, or a YAML path);
several GPUs: ``accelerate launch $(which vidalign) train reward --config pisa_oro``. ``--option value`` and
``key=value`` arguments override the YAML (``--max_steps 10 output_dir=out/run1 'rewards=[{name: flow}]'``);
``--check`` validates the config and checks its files and data without loading models; ``--resume`` continues
from the latest checkpoint; ``--help-options`` lists the options and the rewards. The runner is shared with
``vidalign train dpo|sft`` (:mod:`vidalign.training.commands`).
"""

from __future__ import annotations


def register(sub, groups) -> None:
    from vidalign.training.commands import add_train_parser

    add_train_parser(groups["train"], "reward", "reward-gradient fine-tuning (VADER, PISA object reward "
                     "optimisation)", "vader_aesthetic, pisa_oro")
