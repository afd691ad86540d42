"""Diffusion-DPO on latent shards: SpatialAlign (SPEC §1) and VideoDPO (SPEC §2) objectives.

Per batch of B pairs: one timestep draw shared by winner and loser (``shared_timestep``) or two, independent or
shared noise (``shared_noise``); the reference runs first, without gradient, as the same network with its LoRA
switched off (or a frozen full copy when training without LoRA); then the policy runs once on the 2B noisy latents.
With errors e per sample, or per latent column as VideoDPO's released code (``error_reduction``), the loss is :func:`vidalign.training.losses.diffusion_dpo_loss` (sigmoid / IPO / hinge,
``logit_scale``, ``logit_clip``, per-pair weights) plus ``reg_weight`` × SpatialAlign's zeroth-order regulariser.
Logged as TRL does: ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``, ``rewards/margins``, plus
``loss/dpo`` and ``loss/reg``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vidalign.training import losses as L
from vidalign.training.config import DiffusionDPOConfig
from vidalign.training.data import PairPrep
from vidalign.training.lora import adapters_disabled
from vidalign.training.sft_trainer import DiffusionTrainer, clone_frozen


class DiffusionDPOTrainer(DiffusionTrainer):
    """Diffusion-DPO trainer (see the module docstring). ``ref_model``: an explicit frozen reference for
    full fine-tuning (default: a frozen copy of the model); with LoRA the adapter-off model is the reference."""

    config_class = DiffusionDPOConfig
    card_tags = ("dpo",)

    def __init__(self, model: nn.Module | str | None = None, args: DiffusionDPOConfig | None = None,
                 train_dataset: Any = None, ref_model: nn.Module | None = None, **kwargs: Any):
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        self.ref_model = None
        if not self.args.use_lora:
            ref = ref_model if ref_model is not None else clone_frozen(self.model)
            self.ref_model = ref.requires_grad_(False).eval().to(self.args.device)

    def model_card_info(self) -> dict[str, Any]:
        a = self.args
        info = super().model_card_info()
        info.update({"DPO": f"{a.loss_type} loss, beta {a.beta:g}, logit scale {a.logit_scale:g}, clip "
                            f"{a.logit_clip if a.logit_clip is not None else 'off'}, regulariser weight {a.reg_weight:g}",
                     "reference": "the model with its LoRA disabled" if a.use_lora else "a frozen copy",
                     "noise / timestep": f"{'shared' if a.shared_noise else 'independent'} noise, "
                                         f"{'shared' if a.shared_timestep else 'independent'} timestep",
                     "data format": a.data_format})
        if a.pair_weight_key:
            info["pair weights"] = f"json `{a.pair_weight_key}`"
        return info

    def make_prep(self):
        a = self.args
        return PairPrep(a.data_format, a.chosen_member, a.rejected_member, a.pair_weight_key)

    def reference(self, model: nn.Module, xt: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        """The reference prediction, without gradient."""
        with torch.no_grad():
            if self.ref_model is not None:
                return self.denoise(self.ref_model, xt, t, embeds)
            with adapters_disabled(self.accelerator.unwrap_model(self.model)):
                return self.denoise(model, xt, t, embeds)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch=None):
        a = self.args
        xw, xl = inputs["latents_w"].float(), inputs["latents_l"].float()
        b = xw.shape[0]
        gen = self.step_generator(xw.device)
        embeds = self.drop_captions(inputs["prompt_embeds"].float(), gen)
        noise_w = torch.randn(xw.shape, generator=gen, device=gen.device).to(xw.device)
        noise_l = noise_w if a.shared_noise else torch.randn(xl.shape, generator=gen, device=gen.device).to(xl.device)
        sig_w = self.sample_sigmas(b, gen)
        sig_l = sig_w if a.shared_timestep else self.sample_sigmas(b, gen)
        xt, target, t, mask = self.noised(torch.cat([xw, xl]), torch.cat([noise_w, noise_l]),
                                          torch.cat([sig_w, sig_l]))
        embeds2 = torch.cat([embeds, embeds])

        ref_pred = self.reference(model, xt, t, embeds2)
        pred = self.denoise(model, xt, t, embeds2)

        err = L.denoising_errors(pred, target, mask, a.error_reduction)
        ref_err = L.denoising_errors(ref_pred, target, mask, a.error_reduction)
        weights = inputs.get("weight") if a.pair_weight_key else None
        out = L.diffusion_dpo_loss(err[:b], err[b:], ref_err[:b], ref_err[b:], a.beta, loss_type=a.loss_type,
                                   logit_scale=a.logit_scale, clip=a.logit_clip, weights=weights)
        if mask is None:
            reg = L.zeroth_order_reg(pred[:b], ref_pred[:b], pred[b:], ref_pred[b:])
        else:
            d = L.per_sample_mse(pred, ref_pred, mask)
            reg = 0.5 * (d[:b].mean() + d[b:].mean())
        loss = out.loss + a.reg_weight * reg if a.reg_weight > 0 else out.loss
        self.record(**{
            "rewards/chosen": out.chosen_rewards,
            "rewards/rejected": out.rejected_rewards,
            "rewards/accuracies": (out.chosen_rewards > out.rejected_rewards).float(),
            "rewards/margins": out.chosen_rewards - out.rejected_rewards,
            "loss/dpo": out.loss,
            "loss/reg": reg,
        })
        return (loss, {"dpo": out, "reg": reg}) if return_outputs else loss
