"""The model card (``README.md``) written with every save and push, in the style of diffusers' training scripts.

YAML front matter (``huggingface_hub.ModelCardData``): ``base_model``, ``library_name: diffusers``, ``pipeline_tag``,
``tags`` (method, LoRA or full fine-tune, vidalign), ``datasets`` when the training data is a Hub dataset; the body
says how to load the weights, which dataset and method, the LoRA rank/alpha/targets and the training parameters.
"""

from __future__ import annotations

import os
from typing import Any

from vidalign.training.lora import FULL_MODEL_DIR

PAPERS = {
    "dpo": "Diffusion-DPO (Wallace et al., 2023), as used by SpatialAlign and VideoDPO (Liu et al., 2024, "
           "arXiv:2412.14167)",
    "sft": "supervised flow matching on simulated videos, PISA's PSFT (Li et al., 2025, arXiv:2503.09595)",
    "reward-gradient": "reward-gradient fine-tuning, VADER (Prabhudesai et al., 2024, arXiv:2407.08737) and PISA's "
                       "object reward optimisation (arXiv:2503.09595)",
}

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ description }}

## How to use

```python
{{ usage }}
```

## Training details

| parameter | value |
|---|---|
{% for key, value in params %}| {{ key }} | {{ value }} |
{% endfor %}
{{ validation }}
Trained with vidalign (`vidalign train {{ kind }}`); the full configuration is in
`training_config.yaml` beside the weights.
"""


def _is_hub_id(value: Any) -> bool:
    """``org/name`` that is not a local path: a Hub repository id."""
    if not isinstance(value, str) or os.path.exists(value) or value.startswith((".", "/", "~")):
        return False
    parts = value.removeprefix("hf://datasets/").split("/")
    return len(parts) == 2 and all(parts) and not any(ch in value for ch in "*{}?")


def _usage(args, base: str) -> str:
    pipeline = getattr(args, "pipeline_class", "WanPipeline")
    repo = args.hub_model_id or "<this folder or repo id>"
    lines = ["import torch", f"from diffusers import {pipeline}", "",
             f'pipe = {pipeline}.from_pretrained("{base}", torch_dtype=torch.bfloat16).to("cuda")']
    if args.use_lora:
        lines.append(f'pipe.load_lora_weights("{repo}")')
    else:
        lines[1] = f"from diffusers import {pipeline}, {getattr(args, 'model_class', 'WanTransformer3DModel')}"
        lines.insert(3, f'transformer = {getattr(args, "model_class", "WanTransformer3DModel")}.from_pretrained('
                        f'"{repo}", subfolder="{FULL_MODEL_DIR}", torch_dtype=torch.bfloat16)')
        lines[-1] = lines[-1].replace("torch_dtype=", "transformer=transformer, torch_dtype=")
    lines.append('video = pipe("a cat jumps from the left of a box to the right of it").frames[0]')
    return "\n".join(lines)


def card_params(args, info: dict[str, Any], global_step: int) -> list[tuple[str, str]]:
    """The training-parameter table: data, tuning, optimisation, precision, then the method's own."""
    data = args.train_data if args.train_data is not None else f"prompts: {getattr(args, 'prompts', None)}"
    if args.train_data is not None and args.train_config:
        data += f" (config {args.train_config}, split {args.data_split})"
    if args.use_lora:
        tuning = (f"LoRA rank {args.lora_rank}, alpha {args.lora_alpha:g}, dropout {args.lora_dropout:g} on "
                  f"{', '.join(f'`{t}`' for t in args.lora_target_modules)}")
    else:
        tuning = "full fine-tuning"
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    rows = [("dataset", f"`{data}`"), ("tuning", tuning), ("steps", f"{global_step} of max_steps {args.max_steps}"),
            ("learning rate", f"{args.learning_rate:g} ({args.lr_scheduler_type}, {args.warmup_steps:g} warm-up steps)"),
            ("optimizer", f"{getattr(args.optim, 'value', args.optim)} (weight decay {args.weight_decay:g}), gradient clip {args.max_grad_norm:g}"),
            ("samples per optimizer step", f"{per_step} ({args.per_device_train_batch_size} per device × "
                                            f"{args.gradient_accumulation_steps} accumulation × {args.world_size} "
                                            "processes)"),
            ("precision", precision), ("seed", str(args.seed))]
    rows += [(k, f"{v:g}" if isinstance(v, float) else str(v)) for k, v in info.items()]
    return rows


def write_model_card(folder: str, args, method_tags: tuple[str, ...], info: dict[str, Any],
                     global_step: int = 0) -> str:
    """Write ``folder/README.md`` for ``args`` (a vidalign trainer config); returns its path."""
    from diffusers.utils.hub_utils import populate_model_card
    from huggingface_hub import ModelCard, ModelCardData

    base = args.model_name_or_path or "unknown"
    tags = ["text-to-video", "diffusers", "diffusers-training", "vidalign", *method_tags,
            "lora" if args.use_lora else "full-finetune"]
    if "wan" in base.lower() or getattr(args, "model_class", "").startswith("Wan"):
        tags.append("wan")
    datasets = [args.train_data.removeprefix("hf://datasets/")] if _is_hub_id(args.train_data) else None
    data = ModelCardData(library_name="diffusers", base_model=base if _is_hub_id(base) else None,
                         pipeline_tag="text-to-video", datasets=datasets)
    kind = method_tags[0] if method_tags else "model"
    papers = "; ".join(PAPERS[t] for t in method_tags if t in PAPERS)
    what = "LoRA" if args.use_lora else "full fine-tune"
    description = (f"A {what} of [`{base}`]({'https://huggingface.co/' + base if _is_hub_id(base) else base}) "
                   f"trained with {papers or kind} on `{args.train_data or getattr(args, 'prompts', '')}`.")
    validation = ""
    val_dir = os.path.join(folder, "validation")
    if getattr(args, "validation_prompt_list", None):
        prompts = "\n".join(f"{i}. {p}" for i, p in enumerate(args.validation_prompt_list))
        validation = (f"\n## Validation\n\nEvery {args.validation_steps or args.max_steps} steps the trainer renders "
                      f"these prompts (seed {args.validation_seed}) to `validation/step-*/` under the output "
                      f"folder{' (see there)' if os.path.isdir(val_dir) else ''}:\n\n{prompts}\n")
    card = ModelCard.from_template(
        data, template_str=TEMPLATE, title=f"{kind.upper() if kind != 'reward-gradient' else 'Reward-gradient'} "
        f"fine-tune of {base}", description=description, usage=_usage(args, base),
        params=card_params(args, info, global_step), validation=validation,
        kind=kind.replace("reward-gradient", "reward"))
    card = populate_model_card(card, tags=tags)
    from vidalign.hub import portable_text

    path = os.path.join(folder, "README.md")
    with open(path, "w", encoding="utf-8") as fh:  # no local absolute path leaves the machine with a push
        fh.write(portable_text(str(card), folder))
    return path
