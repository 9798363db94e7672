"""MLM pre-training: a tiny encoder from scratch on raw text, reserved news days never read, and the
output folder loads as the encoder of a joint model."""
from __future__ import annotations

import json
import zipfile

import torch
from transformers import AutoModelForMaskedLM

from synthetic import synthetic_pages
from data.labels import entity_tagset
from model import JointModel
from train.data import texts_of
from train.pretrain import main

TINY = ["model.hidden_size=32", "model.num_hidden_layers=1", "model.num_attention_heads=2",
        "model.intermediate_size=64", "model.max_position_embeddings=64", "tokenizer.vocab_size=500",
        "tokenizer.min_frequency=1", "data.max_length=32", "data.eval_blocks=4",
        "training.per_device_train_batch_size=8", "training.report_to=none", "training.precision=fp32",
        "training.logging_steps=2"]


def _news_zip(path, day: str, n: int):
    arts = [{"source": "test", "url": f"http://x/{day}/{i}", "date_extracted": f"{day} 10:00:00",
             "title": f"عنوان {day} رقم {i}", "author": "", "content": f"خبر يوم {day} رقم {i}\nفقرة ثانية"}
            for i in range(n)]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{day}.json", json.dumps(arts, ensure_ascii=False))


def test_reserved_news_days_are_never_read(tmp_path):
    _news_zip(tmp_path / "2015-07-21.zip", "2015-07-21", 3)
    _news_zip(tmp_path / "2015-08-08.zip", "2015-08-08", 3)
    texts = list(texts_of(tmp_path))
    assert len(texts) == 3 and all("2015-07-21" in t for t in texts)


def test_pretrain_from_scratch_then_load_as_joint_encoder(tmp_path):
    pages = synthetic_pages(24, seed=11)
    for i, p in enumerate(pages[:12]):
        (tmp_path / f"p{i}.txt").write_text(p.text, encoding="utf-8")
    jsonl = tmp_path / "pages.jsonl"
    jsonl.write_text("".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in pages[12:]), encoding="utf-8")
    cfg = tmp_path / "mlm.yaml"
    cfg.write_text(f"output_dir: {tmp_path / 'enc'}\ndata:\n  text: [{tmp_path / 'p0.txt'}, {jsonl}]\n")
    out = tmp_path / "enc"
    assert main([str(cfg), *TINY, "training.max_steps=4"]) == 0
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval"]["eval_loss"] > 0 and metrics["train"]["global_step"] == 4

    mlm = AutoModelForMaskedLM.from_pretrained(out)
    joint = JointModel.from_encoder(str(out), entity_tagset(["LOC", "ORG", "PERS"]).tags, window_length=64)
    enc_state = joint.encoder.state_dict()
    for k, v in mlm.bert.state_dict().items():
        if k in enc_state:
            assert torch.equal(enc_state[k], v), k
    assert joint.encoder.embeddings.word_embeddings.weight.shape[0] == mlm.config.vocab_size

    # a second run resumes from the last checkpoint and goes on
    assert main([str(cfg), *TINY, "training.max_steps=6"]) == 0
    assert json.loads((out / "metrics.json").read_text())["train"]["global_step"] == 6


def test_pretrain_config_errors_exit_2(tmp_path, capsys):
    cfg = tmp_path / "mlm.yaml"
    cfg.write_text(f"output_dir: {tmp_path / 'enc'}\ndata:\n  text: [{tmp_path / 'nope.txt'}]\n")
    assert main([str(cfg)]) == 2
    assert "data.text[0]" in capsys.readouterr().err
    assert main([str(cfg), "model.hidden=3"]) == 2
    assert "model.hidden" in capsys.readouterr().err
