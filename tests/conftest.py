import os

import pytest

# Keep tests deterministic and light on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def mini_data_cfg():
    from trainer.data import DataConfig

    return DataConfig(frames=2, size=32, train=32, val=16, test=16, seed=0)
