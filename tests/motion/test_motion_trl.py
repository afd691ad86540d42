"""TRL's own DPOTrainer (IPO, β 0.1, LoRA r 8 / α 16) trains on the `trl` config of an imported MotionPrefer,
exactly as plain `datasets.load_dataset(folder, "trl")` returns it (no helper, no column mapping).

TRL 1.16's DPOTrainer concatenates prompt and completion for a causal LM (it has no encoder-decoder path any
more), so the test uses a tiny random Llama; AToM's flan-t5-base recipe needs the authors' trainer.
"""

import math

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

import datasets  # noqa: E402

from vidalign.builder import BuildOptions  # noqa: E402
from vidalign.motion import motion_vocab  # noqa: E402
from vidalign.runner import run_build  # noqa: E402


def _tokenizer(rows, path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    words = sorted({w for r in rows for w in r["prompt"].replace(".", " .").split()})
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "</s>", *words])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    assert tok.add_tokens(motion_vocab()) == 515  # <motion_id_0> … <motion_id_514>
    tok.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def test_dpo_trainer_ipo_lora_runs_on_the_trl_config(tmp_path, tiny_atom):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    out = tmp_path / "ds"
    run_build("motionprefer-atom", {"jsonl": [str(tiny_atom(12))]}, BuildOptions(out=out, progress=False))
    train = datasets.load_dataset(str(out), "trl", split="train")
    assert len(train) == 10 and set(train.column_names) == {"__key__", "prompt", "chosen", "rejected",
                                                             "label_smoothing"}
    assert train.features["label_smoothing"].dtype == "float64" and train.features["chosen"].dtype == "string"

    tok = _tokenizer(train, tmp_path / "tok")
    ids = tok(train[0]["chosen"])["input_ids"]
    assert all(i >= len(tok) - 515 for i in ids) and tok.convert_ids_to_tokens(ids[0]) == "<motion_id_512>"
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    base = {k: v.clone() for k, v in model.state_dict().items()}

    args = trl.DPOConfig(output_dir=str(tmp_path / "run"), loss_type="ipo", beta=0.1, max_steps=3,
                         per_device_train_batch_size=2, learning_rate=1e-2, lr_scheduler_type="cosine",
                         warmup_steps=1, logging_steps=1, save_strategy="no", report_to=[], bf16=False,
                         gradient_checkpointing=False, use_cpu=True, max_length=64, disable_tqdm=True, seed=0)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                      task_type="CAUSAL_LM")
    trainer = trl.DPOTrainer(model=model, args=args, train_dataset=train, processing_class=tok, peft_config=lora)
    result = trainer.train()
    assert result.global_step == 3
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    # step 1: the adapter is zero, policy == reference, so IPO's loss is (0 - 1/(2β))² = 25 exactly
    assert losses[0] == pytest.approx(25.0, abs=1e-3) and all(math.isfinite(x) for x in losses)
    peft_model = trainer.model
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # the adapter learned
    merged = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
              for k, v in peft_model.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(merged[k], v) for k, v in base.items() if k in merged)  # base weights frozen
