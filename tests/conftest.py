import os

import pytest

# Keep tests deterministic and light on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Nothing downloads in tests: a pretrained path that tried would fail at once (set before huggingface_hub loads).
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def mini_data_cfg():
    from trainer.data import DataConfig

    return DataConfig(frames=2, size=32, train=32, val=16, test=16, seed=0)


def make_ckpt(path, data_cfg, preprocess=None):
    """An untrained micro-MobileViT student checkpoint for ``data_cfg`` (optionally with a wrong preprocess)."""
    from dataclasses import asdict

    import torch

    from trainer.checkpoint import save_checkpoint
    from trainer.data import label_names, preprocess_spec
    from trainer.models import build_model

    torch.manual_seed(0)
    kwargs = {"num_classes": 16, "frames": data_cfg.frames, "size": data_cfg.size, "variant": "micro"}
    save_checkpoint(path, arch="mobilevit", model_kwargs=kwargs, model=build_model("mobilevit", **kwargs),
                    metrics={}, label_names=label_names(data_cfg), preprocess=preprocess or preprocess_spec(data_cfg),
                    config={"data": asdict(data_cfg)})
    return path


@pytest.fixture
def micro_ckpt():
    """``micro_ckpt(path, data_cfg, preprocess=None)`` writes a checkpoint and returns its path."""
    return make_ckpt


@pytest.fixture(scope="session")
def nlq_data(tmp_path_factory):
    """A tiny generated NLQ dataset (24 train queries, 8-d features, 24 steps, 10 query tokens)."""
    from trainer.nlq.dataset import NLQDataSpec, load_data
    from trainer.nlq.synthetic import NLQDataConfig, generate

    cfg = NLQDataConfig(train_clips=12, val_clips=4, test_clips=4, queries=2, dim=8, min_seconds=10, max_seconds=30)
    root = generate(cfg, tmp_path_factory.mktemp("nlq"))
    return load_data(NLQDataSpec(str(root), max_pos_len=24, max_query_len=10))


def assert_one_line_error(result, message: str | None = None) -> str:
    """A CLI result that failed the way egoedge promises: exit 1 through its own `fail` (an uncaught exception
    would be a traceback for a user; Typer's test runner hides it, so check the exception, not the text),
    with one `error:` line. Returns that line with white space folded."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), f"uncaught {type(result.exception).__name__}: {result.exception}"
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    text = " ".join(result.output[result.output.index("error:"):].split())
    if message is not None:
        assert message in text, text
    return text
