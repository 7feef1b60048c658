"""``egoedge nlq train|eval``: the Ego4D natural-language-query family, one step at a time.

Data is the generated default (``--data synthetic``) or ``--data ego4d:DIR`` in the official layout:
``annotations/nlq_{train,val[,test]}.json`` plus ``features/<clip_uid>.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from egoedge.cli.console import Preset, RichProgress, console, moved, parse_backends
from egoedge.cli.render import export_and_show, metrics_table
from egoedge.trainer.common.io import EgoedgeError

nlq_app = typer.Typer(no_args_is_help=True, help="Ego4D NLQ: VSLBase/VSLNet with FiLM, DeepVSLNet -> LightVSLNet.")


def _data(data: str, max_pos_len: int, max_query_len: int, fps: float):
    from egoedge.trainer.data.sources import parse_spec
    from egoedge.trainer.nlq.dataset import NLQDataSpec, load_data
    from egoedge.trainer.nlq.synthetic import NLQDataConfig, generate

    if data == "synthetic":
        root, fps = generate(NLQDataConfig()), NLQDataConfig().fps
    else:
        # a bare folder is the official layout, as before sources had names
        source, arg = parse_spec(data if ":" in data or not Path(data).is_dir() else f"ego4d:{data}")
        if "nlq" not in source.tasks or not hasattr(source, "nlq_folder"):
            raise EgoedgeError(f"--data {data}: the {source.name} source does not feed NLQ; use ego4d:DIR "
                               "(annotations/ and features/)")
        root = source.nlq_folder(arg)
    return load_data(NLQDataSpec(str(root), max_pos_len, max_query_len, fps))


@nlq_app.command()
def train(
    *, arch: Annotated[str, typer.Option(
        help="vslbase, vslnet, deepvslnet (teacher) or lightvslnet (student).")] = "vslnet",
    out: Annotated[Path, typer.Option(help="Checkpoint to write, e.g. runs/nlq/vslnet.pt.")],
    data: Annotated[str, typer.Option(help="'synthetic' or ego4d:DIR (annotations/ and features/).")] = "synthetic",
    film: Annotated[str, typer.Option(
        help="FiLM: off, before_encoder, after_encoder, "
             "inside_encoder:{after_pos,after_conv,after_attn,multi}.")] = "off",
    text: Annotated[str, typer.Option(
        help="Query encoder: words (trainable embeddings) or minilm (pretrained).")] = None,
    finetune_text: Annotated[bool, typer.Option(help="Fine-tune MiniLM instead of keeping it frozen.")] = False,
    glove: Annotated[Path, typer.Option(help="Initialise word embeddings from this GloVe text file.")] = None,
    teacher: Annotated[Path, typer.Option(help="Distil from this NLQ checkpoint (KL at --temperature).")] = None,
    temperature: Annotated[float, typer.Option(help="KD temperature over the start/end distributions.")] = 1.0,
    kd_weight: Annotated[float, typer.Option(help="Weight of the KD term.")] = 1.0,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 12,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (warm-up then cosine).")] = 1e-3,
    max_pos_len: Annotated[int, typer.Option(help="Feature steps per clip after resampling.")] = 128,
    max_query_len: Annotated[int, typer.Option(help="Query tokens.")] = 20,
    fps: Annotated[float, typer.Option(help="Feature rate of a --data folder (steps per second).")] = 1.875,
) -> None:
    """Train one NLQ model; prints and stores its val/test Recall@K and mIoU.

    Example: egoedge nlq train --arch vslnet --film inside_encoder:after_pos --out runs/nlq/vslnet_film.pt
    """
    from dataclasses import asdict

    import torch

    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.nlq import metrics as nlq_metrics
    from egoedge.trainer.nlq.data import load_glove
    from egoedge.trainer.nlq.loss import SpanLoss
    from egoedge.trainer.nlq.train import (
        build_for,
        complexity,
        evaluate_model,
        load_nlq_model,
        save_nlq_checkpoint,
        train_nlq,
    )

    if epochs < 1:
        raise EgoedgeError(f"--epochs must be >= 1, got {epochs}")
    teacher_model = load_nlq_model(teacher)[0] if teacher else None
    if teacher_model is not None:
        max_pos_len = teacher_model.cfg.max_pos_len  # the KL compares distributions over the same steps
    ds = _data(data, max_pos_len, max_query_len, fps)
    overrides = {"film": film, **({"text": text} if text else {}), "text_trainable": finetune_text}
    if glove is not None:
        overrides["word_dim"] = _glove_dim(glove)
    torch.manual_seed(0)
    model = build_for(arch, ds, **overrides)
    if glove is not None:
        if model.tokenizer != "words":
            raise EgoedgeError("--glove initialises word embeddings; this model reads queries with MiniLM")
        table, found = load_glove(glove, ds.vocab, overrides["word_dim"])
        model.text.embed.weight.data.copy_(torch.from_numpy(table))
        console.print(f"GloVe: {found} of {len(ds.vocab)} words found", highlight=False)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.01, label_smoothing=0.0)
    loss = SpanLoss(temperature=temperature, kd_weight=kd_weight)
    with RichProgress() as progress:
        train_nlq(model, ds, cfg, loss, teacher_model, progress, f"train {arch}")
    model.cpu().eval()
    rows = {s: nlq_metrics.metrics_row(evaluate_model(model, ds, s)[1]) for s in ("val", "test")}
    save_nlq_checkpoint(out, arch, model, ds, {**rows, **complexity(model)},
                        {"train": asdict(cfg), "loss": asdict(loss), "teacher": str(teacher) if teacher else None})
    console.print(metrics_table(rows, f"{arch} ({film}) -> {out}"))


def _glove_dim(path: Path) -> int:
    if not path.is_file():
        raise EgoedgeError(f"GloVe file not found: {path}")
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().rstrip().split(" ")
    if len(first) < 2:
        raise EgoedgeError(f"{path} is not a GloVe text file (word v1 v2 ... per line)")
    return len(first) - 1


@nlq_app.command("eval")
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="An NLQ checkpoint to run on --split.")] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    out: Annotated[Path, typer.Option(help="Folder for nlq_predictions.json and nlq_metrics.json.")] = None,
    predictions: Annotated[Path, typer.Option(help="Score this submission file instead of a checkpoint.")] = None,
    annotations: Annotated[Path, typer.Option(
        help="Ground truth for --predictions (official annotation JSON).")] = None,
) -> None:
    """Write predictions in the official submission format and score them as the official evaluator does.

    Example: egoedge nlq eval runs/nlq/nlq_student.pt --out runs/nlq/eval
             egoedge nlq eval --predictions nlq_predictions.json --annotations nlq_val.json
    """
    import json

    from egoedge.trainer.common.io import write_json_atomic
    from egoedge.trainer.nlq import metrics as nlq_metrics
    from egoedge.trainer.nlq.dataset import NLQDataSpec, load_data
    from egoedge.trainer.nlq.train import evaluate_model, load_nlq_model

    if predictions is not None:
        if annotations is None:
            raise EgoedgeError("--predictions needs --annotations (the ground-truth annotation JSON)")
        try:
            truth = json.loads(annotations.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise EgoedgeError(f"cannot read annotations {annotations}: {e}") from None
        metrics = nlq_metrics.evaluate(nlq_metrics.read_submission(predictions), truth)
        ground_truth, title = str(annotations), str(predictions)
    else:
        if checkpoint is None:
            raise EgoedgeError("give a checkpoint, or --predictions with --annotations")
        if split not in ("train", "val", "test"):
            raise EgoedgeError(f"unknown split '{split}'; valid: train, val, test")
        model, ckpt = load_nlq_model(checkpoint)
        ds = load_data(NLQDataSpec(**ckpt["config"]["data"]), vocab=ckpt["preprocess"]["vocab"])
        preds, metrics = evaluate_model(model, ds, split)
        ground_truth, title = ds.splits[split].annotation_file, f"{checkpoint} on {split}"
        out = out or checkpoint.parent
        write_json_atomic(out / "nlq_predictions.json", nlq_metrics.submission(preds))
    if out is not None:
        write_json_atomic(out / "nlq_metrics.json", nlq_metrics.metrics_file(metrics, ground_truth))
    console.print(metrics_table({title: nlq_metrics.metrics_row(metrics)}, "Ego4D NLQ (official metrics, %)"))
    console.print(f"evaluated {metrics['evaluated']} of {metrics['queries']} queries", highlight=False)
    if out is not None:
        console.print(f"written: {out / 'nlq_metrics.json'}", highlight=False)


# Moved commands: still answered, hidden from the help, each saying where it went.
@nlq_app.command(hidden=True)
def cbkd(
    checkpoint: Annotated[Path, typer.Argument(help="A trained NLQ checkpoint to compress.")],
    min_ratio: Annotated[float, typer.Option(help="Compression of the shallowest block.")] = None,
    max_ratio: Annotated[float, typer.Option(help="Compression of the deepest block.")] = None,
    finetune_epochs: Annotated[int, typer.Option(help="Epochs of the final end-to-end KD fine-tune.")] = None,
    out: Annotated[Path, typer.Option(help="Output checkpoint (default: <checkpoint>_cbkd.pt beside it).")] = None,
) -> None:
    """Moved to `egoedge train cbkd` (the task comes from the checkpoint)."""
    from egoedge.cli.train import cbkd as train_cbkd

    moved("egoedge nlq cbkd", "egoedge train cbkd")
    train_cbkd(checkpoint, preset=Preset("quick"), min_ratio=min_ratio, max_ratio=max_ratio,
               finetune_epochs=finetune_epochs, out=out)


@nlq_app.command(hidden=True)
def export(
    checkpoint: Annotated[Path, typer.Argument(help="An NLQ checkpoint with word embeddings (e.g. the student).")],
    to: Annotated[str, typer.Option(help="Comma-separated backends.")] = "executorch,tflite,onnx,coreml",
    int8: Annotated[bool, typer.Option("--int8", help="Also make each backend's int8 artifacts (calibrated).")] = False,
    calib: Annotated[int, typer.Option(help="Calibration queries drawn from the training split.")] = 128,
    out: Annotated[Path, typer.Option(help="Output folder (default: export/ beside the checkpoint).")] = None,
    parity_samples: Annotated[int, typer.Option(help="Validation queries in the parity batch.")] = 32,
    allow_failed: Annotated[bool, typer.Option(help="Exit 0 even if an artifact fails to export or its gate.")] = False,
) -> None:
    """Moved to `egoedge export` (the task comes from the checkpoint)."""
    from egoedge.edge.export import ExportConfig

    moved("egoedge nlq export", "egoedge export")
    export_and_show(str(checkpoint), None, out, lambda: ExportConfig(formats=parse_backends(to), int8=int8,
                                                                     calibration=calib,
                                                                     parity_samples=parity_samples), allow_failed)
