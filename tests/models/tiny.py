"""Why: the optional adapters load weights from a local directory, and nothing may come from a
model hub, so each test builds a tiny model in the real library's own on-disk format and points
the adapter at it: an open_clip `local-dir:` folder, `save_pretrained` folders for transformers,
and an insightface pack of two ONNX graphs (built with `onnx.helper`) that carry the SCRFD and
ArcFace input/output signatures insightface routes on.

The tiny insightface pack behaves predictably: its detector reports exactly one face, a fixed
256-px box around the centre of the (letterboxed) detector input, when that region is not dark
(score = sigmoid(7.5 + 10 × mean brightness in [-1, 1]) of the centre cell, ~0 elsewhere: a face in
the astronaut, Grace Hopper and chelsea images, none in coffee or a black image), and its
recogniser embeds the aligned 112² crop as a fixed random projection of an 8×8 thumbnail, so
the same image always gives the same 64-d vector and different images different ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DET_SIZE = 640
STRIDES = (8, 16, 32)
ANCHORS = 2
ARC_SIZE = 112
ARC_DIM = 64


# ---------------------------------------------------------------- insightface (onnx.helper)
def insightface_pack(folder: Path, seed: int = 0) -> Path:
    """Write det_tiny.onnx (SCRFD: 9 outputs) and rec_tiny.onnx (ArcFace: 1×3×112×112 -> 1×64)."""
    folder.mkdir(parents=True, exist_ok=True)
    _save(_scrfd_graph(), folder / "det_tiny.onnx")
    _save(_arcface_graph(seed), folder / "rec_tiny.onnx")
    return folder


def _save(model: object, path: Path) -> None:
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _scrfd_graph() -> object:
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outputs = [], [], []
    scores, boxes, kpss = [], [], []
    for s in STRIDES:
        g = DET_SIZE // s
        n = g * g * ANCHORS
        if s == 32:
            # brightness of each 32×32 cell -> logit, +7.5 at the centre cell, -50 elsewhere
            pos = np.full((1, 1, g, g), -50.0, np.float32)
            pos[0, 0, g // 2, g // 2] = 7.5
            inits += [
                numpy_helper.from_array(pos, "pos32"),
                numpy_helper.from_array(np.array([10.0], np.float32), "gain"),
                numpy_helper.from_array(np.full((1, 1, g, g), -100.0, np.float32), "off32"),
                numpy_helper.from_array(np.array([-1, 1], np.int64), "shape_n1"),
            ]
            nodes += [
                helper.make_node("AveragePool", ["input.1"], ["cells"], kernel_shape=[s, s], strides=[s, s]),
                helper.make_node("ReduceMean", ["cells"], ["bright"], axes=[1], keepdims=1),
                helper.make_node("Mul", ["bright", "gain"], ["scaled"]),
                helper.make_node("Add", ["scaled", "pos32"], ["logit_a"]),
                helper.make_node("Concat", ["logit_a", "off32"], ["logits"], axis=1),
                helper.make_node("Transpose", ["logits"], ["logits_hwc"], perm=[0, 2, 3, 1]),
                helper.make_node("Reshape", ["logits_hwc", "shape_n1"], ["logit_flat"]),
                helper.make_node("Sigmoid", ["logit_flat"], [f"score_{s}"]),
            ]
        else:
            inits.append(numpy_helper.from_array(np.zeros((n, 1), np.float32), f"zero_{s}"))
            nodes.append(helper.make_node("Identity", [f"zero_{s}"], [f"score_{s}"]))
        # distances in stride units: a 8-stride (256 px at stride 32) square box around the anchor
        inits.append(numpy_helper.from_array(np.full((n, 4), 4.0, np.float32), f"box_c{s}"))
        nodes.append(helper.make_node("Identity", [f"box_c{s}"], [f"bbox_{s}"]))
        kps = np.tile(np.array([-1.3, -1.0, 1.3, -1.0, 0.0, 0.4, -1.0, 1.6, 1.0, 1.6], np.float32), (n, 1))
        inits.append(numpy_helper.from_array(kps, f"kps_c{s}"))
        nodes.append(helper.make_node("Identity", [f"kps_c{s}"], [f"kps_{s}"]))
        scores.append(helper.make_tensor_value_info(f"score_{s}", TensorProto.FLOAT, [n, 1]))
        boxes.append(helper.make_tensor_value_info(f"bbox_{s}", TensorProto.FLOAT, [n, 4]))
        kpss.append(helper.make_tensor_value_info(f"kps_{s}", TensorProto.FLOAT, [n, 10]))
    outputs = scores + boxes + kpss
    graph = helper.make_graph(
        nodes,
        "scrfd_tiny",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, DET_SIZE, DET_SIZE])],
        outputs,
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _arcface_graph(seed: int) -> object:
    from onnx import TensorProto, helper, numpy_helper

    k = ARC_SIZE // 8
    proj = np.random.default_rng(seed).standard_normal((3 * 8 * 8, ARC_DIM)).astype(np.float32)
    nodes = [
        helper.make_node(
            "AveragePool", ["input.1"], ["thumb"], kernel_shape=[k, k], strides=[k, k], name="pool"
        ),
        helper.make_node("Flatten", ["thumb"], ["flat"], axis=1, name="flatten"),
        helper.make_node("MatMul", ["flat", "proj"], ["embedding"], name="project"),
    ]
    graph = helper.make_graph(
        nodes,
        "arcface_tiny",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, ARC_SIZE, ARC_SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, ARC_DIM])],
        initializer=[numpy_helper.from_array(proj, "proj")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


# ---------------------------------------------------------------- transformers (save_pretrained)
def hf_image_classifier(folder: Path, labels: tuple[str, ...] = ("normal", "nsfw"), seed: int = 0) -> Path:
    """A 1-layer ViT on 32² inputs with random weights, saved with its image processor."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={lb: i for i, lb in enumerate(labels)},
    )
    torch.manual_seed(seed)
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


TEXT_VOCAB = (
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "a",
    "cup",
    "of",
    "coffee",
    "explicit",
    "nudity",
    "naked",
    "photo",
    "cat",
    "on",
    "table",
)


def hf_text_classifier(folder: Path, labels: tuple[str, ...] = ("safe", "sexual"), seed: int = 0) -> Path:
    """A 1-layer BERT sequence classifier with a word-level tokenizer, saved with save_pretrained."""
    import torch
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(TEXT_VOCAB)}
    tk = Tokenizer(tok_models.WordLevel(vocab, unk_token="[UNK]"))  # noqa: S106
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="[UNK]",  # noqa: S106
        pad_token="[PAD]",  # noqa: S106
        cls_token="[CLS]",  # noqa: S106
        sep_token="[SEP]",  # noqa: S106
    ).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(TEXT_VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={lb: i for i, lb in enumerate(labels)},
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- open_clip (local-dir: layout)
OPENCLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def openclip_dir(folder: Path, seed: int = 0) -> Path:
    """A tiny CLIP (1-layer ViT on 32², 1-layer text transformer, open_clip's BPE tokenizer) with
    random weights, written as open_clip_config.json + open_clip_model.safetensors."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": OPENCLIP_CFG,
                "preprocess_cfg": {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]},
            }
        )
    )
    torch.manual_seed(seed)
    model = open_clip.CLIP(**OPENCLIP_CFG)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder
