"""The Keras Doctor's probe from the data pipeline a user already has: a
`tf.data.Dataset` or a `keras.utils.PyDataset` of (x, y) batches instead of arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from tests.live import digits_keras as dk  # noqa: E402

from lossdoctor.keras import Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402


class Batches(keras.utils.PyDataset):  # type: ignore[misc]
    def __init__(self, x: np.ndarray, y: np.ndarray, size: int) -> None:
        super().__init__()
        self.x, self.y, self.size = x, y, size

    def __len__(self) -> int:
        return -(-len(self.x) // self.size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        part = slice(i * self.size, (i + 1) * self.size)
        return self.x[part], self.y[part]


def test_batches_are_drawn_until_the_probe_is_full(tmp_path: Path) -> None:
    x, y = dk.digits()
    weights = np.ones(len(y), dtype=np.float32)
    sources: dict[str, Any] = {
        "tf.data": tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(24),
        "PyDataset": Batches(x, y, 24),
        "list of batches": [(x[:24], y[:24]), (x[24:48], y[24:48]), (x[48:72], y[48:72])],
        "pair as a list": [x, y],
    }
    for name, source in sources.items():
        doc = Doctor(tmp_path / name, probe=source, probe_size=64)
        assert doc.probe is not None, name
        px, py = doc.probe
        np.testing.assert_array_equal(px, x[:64], err_msg=name)
        np.testing.assert_array_equal(py, y[:64], err_msg=name)


def test_what_cannot_be_a_probe_is_refused_before_training(tmp_path: Path) -> None:
    x, y = dk.digits()
    generator = ((x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8))
    with pytest.raises(TypeError, match="used up"):
        Doctor(tmp_path / "a", probe=generator)
    with pytest.raises(TypeError, match=r"expected \(x, y\)"):
        Doctor(tmp_path / "b", probe=x)
    with pytest.raises(TypeError, match="each batch"):
        Doctor(tmp_path / "c", probe=tf.data.Dataset.from_tensor_slices(x).batch(8))
    with pytest.raises(ValueError, match="no batch"):
        Doctor(tmp_path / "d", probe=tf.data.Dataset.from_tensor_slices((x, y)).take(0))


def test_a_fit_on_a_dataset_probed_from_it(tmp_path: Path) -> None:
    x, y = dk.digits()
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(2048, seed=0).batch(dk.BATCH)
    keras.utils.set_random_seed(0)
    model = dk.mlp()
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    doc = Doctor(tmp_path / "run", probe=train, verbose=False)
    model.fit(train, epochs=2, shuffle=False, verbose=0, callbacks=[doc])
    run = read_run_dir(tmp_path / "run")
    for layer in ("dense_0", "dense_2", "logits"):
        grads = run.series[f"layer/{layer}/grad_norm"].values
        assert len(grads) >= 5 and np.all(np.isfinite(grads)) and np.all(grads > 0)
    assert len(run.series["layer/dense_1/dead_fraction"]) >= 5
