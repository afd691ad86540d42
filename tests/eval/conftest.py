"""Tiny randomly initialised SAM 2 and Grounding DINO checkpoints, saved once per session (no downloads)."""

from __future__ import annotations

import pytest

GD_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "cat", "box", "dog", "a", "##s"]


@pytest.fixture(scope="session")
def tiny_sam2(tmp_path_factory):
    """Folder of a 64-px Sam2VideoModel (memory dim 64 < hidden 128, as in the real checkpoints)."""
    torch = pytest.importorskip("torch")
    from transformers import Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VisionConfig
    from transformers.models.sam2_video.configuration_sam2_video import (
        Sam2VideoMaskDecoderConfig,
        Sam2VideoPromptEncoderConfig,
    )

    backbone = Sam2HieraDetConfig(hidden_size=12, image_size=64, patch_stride=4, patch_kernel_size=7, patch_padding=3,
                                  blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[12, 24, 48, 96],
                                  num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 2, 2],
                                  window_positional_embedding_background_size=[2, 2], global_attention_blocks=[3])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[96, 48, 24, 12],
                              backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=128)
    config = Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(hidden_size=128, image_size=64, patch_size=16,
                                                           mask_input_channels=8),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(hidden_size=128, mlp_dim=64, num_attention_heads=4,
                                                       iou_head_hidden_dim=32),
        image_size=64, memory_attention_hidden_size=128, memory_encoder_hidden_size=128,
        mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64,
        memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=32,
        memory_encoder_output_channels=64, memory_attention_rope_feat_sizes=[4, 4])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam2") / "tiny-sam2"
    Sam2VideoModel(config).eval().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_grounding_dino(tmp_path_factory):
    """Folder of a tiny GroundingDinoForObjectDetection + processor with a WordPiece tokenizer from GD_VOCAB."""
    torch = pytest.importorskip("torch")
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    root = tmp_path_factory.mktemp("gdino")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(GD_VOCAB) + "\n")
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}),
        tokenizer=BertTokenizer(str(vocab)))
    swin = SwinConfig(window_size=7, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], image_size=64,
                      out_indices=[2, 3, 4])
    config = GroundingDinoConfig(
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=8, decoder_ffn_dim=8, num_queries=6, num_feature_levels=4, encoder_n_points=2,
        decoder_n_points=2, backbone_config=swin, max_text_len=16,
        text_config={"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8,
                     "max_position_embeddings": 16, "model_type": "bert", "vocab_size": len(GD_VOCAB)})
    torch.manual_seed(0)
    path = root / "tiny-gdino"
    GroundingDinoForObjectDetection(config).eval().save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)
