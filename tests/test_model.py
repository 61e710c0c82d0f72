"""Model: FLIP masking, encoders, checkpoints (safetensors + JSON, never pickle), timm weight loading."""

import json
import math

import pytest
import timm
import torch

from medflip.errors import UserError
from medflip.model.medflip import MedFLIP, ModelConfig
from medflip.model.vision import MaskedViT, VisionConfig, load_vision_checkpoint, random_masking


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return MedFLIP(ModelConfig(vision=VisionConfig(size="tiny", image_size=64), embed_dim=32))


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 0.9])
def test_random_masking_keeps_floor_and_differs_per_sample(ratio):
    n, length, d = 16, 196, 8
    x = torch.arange(n * length * d, dtype=torch.float32).reshape(n, length, d)
    kept, ids = random_masking(x, ratio) if ratio > 0 else (x, torch.arange(length).expand(n, -1))
    assert kept.shape == (n, math.floor(length * (1 - ratio)), d)
    assert torch.equal(kept, torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, d)))  # the tokens at ids
    if ratio > 0:
        assert all(len(set(row.tolist())) == ids.shape[1] for row in ids)  # no duplicates
        subsets = {tuple(sorted(row.tolist())) for row in ids}
        assert len(subsets) == n  # a different subset per sample


def test_vit_masks_in_training_only(tiny_model):
    vit = tiny_model.vision
    images = torch.randn(3, 1, 64, 64)
    vit.train()
    pooled, tokens, ids = vit(images, mask_ratio=0.75)
    assert tokens.shape[1] == math.floor(16 * 0.25) and ids.shape == (3, 4)
    vit.eval()
    _, tokens, ids = vit(images, mask_ratio=0.75)
    assert tokens.shape[1] == 16 and ids is None  # evaluation sees every patch
    # Unmasked, our forward equals timm's own forward_features (same modules, same order).
    with torch.no_grad():
        ours_pooled, ours_tokens, _ = vit(images)
        ref = vit.vit.forward_features(images)
    assert torch.allclose(ours_pooled, ref[:, 0], atol=1e-5)
    assert torch.allclose(ours_tokens, ref[:, 1:], atol=1e-5)
    vit.train()


def test_masked_tokens_are_the_visible_patches(tiny_model):
    # With blocks removed, a visible token must equal patch_embed + pos_embed at its index.
    vit = MaskedViT(VisionConfig(size="tiny", image_size=64))
    vit.vit.blocks = torch.nn.Sequential()
    vit.vit.norm = torch.nn.Identity()
    images = torch.randn(2, 1, 64, 64)
    _, tokens, ids = vit.train()(images, mask_ratio=0.5)
    full = vit.vit.patch_embed(images) + vit.vit.pos_embed[:, 1:]
    assert torch.allclose(
        tokens, torch.gather(full, 1, ids.unsqueeze(-1).expand(-1, -1, full.shape[-1])), atol=1e-6
    )


def test_uses_fused_attention():
    vit = MaskedViT(VisionConfig(size="tiny", image_size=32))
    assert all(block.attn.fused_attn for block in vit.vit.blocks)  # SDPA


def test_encoders_padding_and_normalisation(tiny_model):
    tiny_model.eval()
    emb = tiny_model.encode_text(["mild cardiomegaly", "no acute cardiopulmonary abnormality seen today"])
    assert emb.shape == (2, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    # Padding excluded: a text's embedding does not depend on what it is batched with.
    alone = tiny_model.encode_text(["mild cardiomegaly"])
    assert torch.allclose(emb[0], alone[0], atol=1e-5)
    enc = tiny_model.tokenize(["a", "a b c d e f g"])
    assert enc["input_ids"].shape[1] == enc["attention_mask"].sum(1).max()  # padded to the longest only
    sim = tiny_model.similarity(torch.randn(3, 1, 64, 64), ["a", "b"])
    assert sim.shape == (3, 2) and sim.abs().max() <= 1 + 1e-5


def test_logit_scale_init_and_clamp(tiny_model):
    assert math.isclose(float(tiny_model.logit_scale.detach()), math.log(1 / 0.07), rel_tol=1e-6)
    with torch.no_grad():
        tiny_model.logit_scale.fill_(10.0)
    enc = tiny_model.tokenize(["x"])
    out = tiny_model(torch.randn(1, 1, 64, 64), enc["input_ids"], enc["attention_mask"])
    assert math.isclose(float(out.logit_scale.detach()), math.log(100), rel_tol=1e-6)
    with torch.no_grad():
        tiny_model.logit_scale.fill_(math.log(1 / 0.07))


def test_save_and_load_roundtrip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "text"} <= files
    assert not any(p.suffix in (".pt", ".pth", ".bin", ".pkl") for p in (tmp_path / "m").rglob("*"))
    loaded = MedFLIP.from_pretrained(tmp_path / "m")
    images = torch.randn(2, 1, 64, 64)
    assert torch.allclose(tiny_model.encode_image(images), loaded.encode_image(images), atol=1e-6)
    assert torch.allclose(tiny_model.encode_text(["effusion"]), loaded.encode_text(["effusion"]), atol=1e-6)
    assert loaded.cfg == tiny_model.cfg


def test_from_pretrained_rejects_other_folders(tmp_path):
    with pytest.raises(UserError, match="not a medflip model folder"):
        MedFLIP.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="not a medflip model folder"):
        MedFLIP.from_pretrained(tmp_path)
    with pytest.raises(UserError, match="not found"):
        MedFLIP.from_pretrained(tmp_path / "missing")


def test_loads_timm_and_mae_checkpoints(tmp_path):
    from safetensors.torch import save_file

    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, in_chans=3, img_size=224)
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    state["decoder_embed.weight"] = torch.zeros(3, 3)  # MAE decoder keys are ignored
    save_file({f"module.{k}": v.contiguous() for k, v in state.items()}, str(tmp_path / "mae.safetensors"))
    torch.save({"model": state}, tmp_path / "mae.pth")
    for name in ("mae.safetensors", "mae.pth"):
        vit = MaskedViT(VisionConfig(size="tiny", image_size=64, checkpoint=str(tmp_path / name)))
        got = vit.vit.state_dict()
        # 3-channel filters folded to 1 channel by summing (grayscale = R = G = B)
        assert torch.allclose(
            got["patch_embed.proj.weight"], state["patch_embed.proj.weight"].sum(1, keepdim=True)
        )
        assert torch.equal(got["blocks.3.mlp.fc1.weight"], state["blocks.3.mlp.fc1.weight"])
        assert got["pos_embed"].shape == (1, 1 + 16, 192)  # resampled 14x14 -> 4x4 grid
        assert torch.equal(got["pos_embed"][:, 0], state["pos_embed"][:, 0])  # class position kept
    (tmp_path / "junk.safetensors").write_bytes(b"")
    with pytest.raises(Exception):  # noqa: B017 - any clear load error
        load_vision_checkpoint(vit, tmp_path / "junk.safetensors")
    save_file({"foo": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="does not look like a ViT"):
        load_vision_checkpoint(vit, tmp_path / "other.safetensors")


def test_invalid_vision_config():
    with pytest.raises(UserError, match="multiple of the patch size"):
        MaskedViT(VisionConfig(size="tiny", image_size=100))
    with pytest.raises(UserError, match="vision.size"):
        MaskedViT(VisionConfig(size="huge"))


def test_locked_text_tower_memoises_exactly():
    from medflip.model.text import TextConfig, TextEncoder

    locked = TextEncoder(TextConfig(freeze_layers=6))
    assert locked.locked and not any(p.requires_grad for p in locked.parameters())
    ref = TextEncoder(TextConfig())
    ref.eval()
    from medflip.model.text import load_tokenizer

    tok = load_tokenizer("all-MiniLM-L6-v2")
    texts = ["mild cardiomegaly", "no pneumothorax or pleural effusion seen", "mild cardiomegaly"]
    enc = tok(texts, padding="longest", return_tensors="pt")
    locked.train()  # even in training mode a locked tower runs without dropout
    pooled, tokens = locked(enc["input_ids"], enc["attention_mask"])
    with torch.no_grad():
        ref_pooled, ref_tokens = ref(enc["input_ids"], enc["attention_mask"])
    assert torch.allclose(pooled, ref_pooled, atol=1e-5)
    mask = enc["attention_mask"].bool()
    assert torch.allclose(tokens[mask], ref_tokens[mask], atol=1e-5)
    assert len(locked._memo) == 2  # duplicates computed once
    again, _ = locked(enc["input_ids"][:1], enc["attention_mask"][:1, :])
    assert torch.allclose(again[0], pooled[0], atol=1e-6)
    locked.load_state_dict(ref.state_dict())
    assert not locked._memo  # new weights invalidate the memo
