"""Each pre-flight check on real PyTorch models: fires on a broken one, quiet on a
healthy one; and the user's model, optimizer and data are untouched."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lossdoctor  # noqa: E402

CE = nn.CrossEntropyLoss()


def mlp(*tail: nn.Module, hidden: int = 64, depth: int = 2, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(64, hidden), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, 10), *tail)


def severe(report: lossdoctor.CheckReport) -> list[str]:
    return [f.code for f in report.findings if f.severity.rank >= 1]


@pytest.fixture(scope="module")
def healthy_report(digits):  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    return lossdoctor.check(model, x, y, loss=CE, optimizer=opt, x_val=x[500:] + 0.5,
                            y_val=y[500:])


def test_healthy_model_is_quiet(healthy_report) -> None:  # type: ignore[no-untyped-def]
    assert severe(healthy_report) == [], str(healthy_report)
    assert "regularization" in healthy_report.passed
    assert "initialization" in healthy_report.passed
    assert any("weight_decay" in n for n in healthy_report.notes)
    assert healthy_report.to_dict()["check"]["framework"] == "torch"


def test_model_optimizer_and_data_unchanged(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    x, y = x.copy(), y.copy()
    model = nn.Sequential(nn.Linear(64, 32), nn.Dropout(0.2), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-3)
    # Give the optimizer real state first.
    CE(model(torch.as_tensor(x[:32])), torch.as_tensor(y[:32])).backward()
    opt.step()
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt_state = {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in s.items()}
                 for k, s in opt.state_dict()["state"].items()}
    groups = [dict((k, v) for k, v in g.items() if k != "params")
              for g in opt.state_dict()["param_groups"]]
    x0, y0 = x.copy(), y.copy()
    lossdoctor.check(model, x, y, loss=CE, optimizer=opt)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    after = opt.state_dict()
    for k, s in after["state"].items():
        for n, t in s.items():
            assert torch.equal(t, opt_state[k][n]) if torch.is_tensor(t) else t == opt_state[k][n]
    assert [dict((k, v) for k, v in g.items() if k != "params")
            for g in after["param_groups"]] == groups
    assert np.array_equal(x, x0) and np.array_equal(y, y0)


def test_softmax_into_cross_entropy(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    report = lossdoctor.check(mlp(nn.Softmax(dim=1)), x, y, loss=CE,
                              checks=["outputs", "overfit"])
    assert report.codes()[:2] == ["logits-probabilities-mismatch", "cannot-overfit-small-batch"]
    assert report.findings[0].evidence["output"] == "softmax"


def test_probabilities_into_nll_loss(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    report = lossdoctor.check(mlp(nn.Softmax(dim=1)), x, y, loss=nn.NLLLoss(),
                              checks=["outputs"])
    assert report.codes() == ["logits-probabilities-mismatch"]
    ok = lossdoctor.check(mlp(nn.LogSoftmax(dim=1)), x, y, loss=nn.NLLLoss(),
                          checks=["outputs"])
    assert ok.codes() == []


def test_labels_out_of_range(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    report = lossdoctor.check(mlp(), x, y + 1, loss=CE,
                              checks=["labels", "initial-loss", "overfit"])
    assert report.findings[0].code == "label-problem"
    assert report.findings[0].evidence["label_max"] == 10
    # The training checks stand down instead of crashing on the bad labels.
    assert sorted(f.evidence["check"] for f in report.by_code("check-skipped")) == [
        "initial-loss", "overfit"]


def test_nan_and_unscaled_inputs(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, raw = digits
    bad = x.copy()
    bad[3, 5] = np.nan
    report = lossdoctor.check(mlp(), bad, y, loss=CE, checks=["inputs", "overfit"])
    assert report.codes()[0] == "input-problem" and "NaN" in report.findings[0].title
    pixels = raw * 16  # 8-bit scale
    unscaled = lossdoctor.check(mlp(), pixels, y, loss=CE, checks=["inputs", "initial-loss"])
    assert sorted(unscaled.codes()) == ["initial-loss-mismatch", "input-problem"]


def test_train_validation_overlap(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    report = lossdoctor.check(mlp(), x[:400], y[:400], loss=CE, x_val=x[300:],
                              y_val=y[300:], checks=["inputs"])
    (f,) = report.by_code("input-problem")
    assert f.evidence["shared"] == 100 and f.severity.value == "critical"


class _WrongSquare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return grad * x  # should be 2 * x


class _Square(nn.Module):
    def forward(self, x):  # type: ignore[no-untyped-def]
        return _WrongSquare.apply(x)


def test_wrong_hand_written_gradient(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), _Square(), nn.Linear(16, 10))
    report = lossdoctor.check(model, x, y, loss=CE, checks=["gradients"])
    (f,) = report.findings
    assert f.code == "gradient-check-failed" and f.layer == "0.bias"
    assert f.evidence["analytic_over_numeric"] == pytest.approx(0.5, rel=1e-3)
    assert f.evidence["dtype"] == "float64"


class _CutGraph(nn.Module):
    def forward(self, x):  # type: ignore[no-untyped-def]
        return x.detach()


def test_a_graph_cut_by_detach_is_told_as_a_cut(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), _CutGraph(), nn.Linear(16, 10))
    report = lossdoctor.check(model, x, y, loss=CE, checks=["gradients"])
    (f,) = report.findings
    assert f.code == "gradient-check-failed" and f.layer == "0.bias"
    assert f.evidence["analytic_all_zero"] == "yes"
    assert "no gradient" in f.title and "detach" in f.explanation


def test_shuffled_labels(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    shuffled = np.random.default_rng(1).permutation(y)
    report = lossdoctor.check(mlp(), x, shuffled, loss=CE, checks=["shuffled-labels"])
    assert report.codes() == ["label-problem"]
    assert "unrelated" in report.findings[0].title


def test_regularizer_over_an_exhausted_generator(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp()
    params = model.parameters()
    torch.optim.SGD(params, lr=0.1)  # consumes the generator

    def l2(_m: nn.Module) -> torch.Tensor:
        return 1e-3 * sum((p**2).sum() for p in params)  # type: ignore[return-value]

    report = lossdoctor.check(model, x, y, loss=CE, regularizer=l2, checks=["regularization"])
    assert report.codes() == ["regularization-not-increasing-loss"]

    def good_l2(m: nn.Module) -> torch.Tensor:
        return 1e-3 * sum((p**2).sum() for p in m.parameters())  # type: ignore[return-value]

    ok = lossdoctor.check(model, x, y, loss=CE, regularizer=good_l2, checks=["regularization"])
    assert ok.codes() == [] and ok.passed == ["regularization"]


def test_weight_decay_on_another_models_parameters(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp()
    stale = torch.optim.AdamW(mlp(seed=1).parameters(), weight_decay=0.01)
    report = lossdoctor.check(model, x, y, loss=CE, optimizer=stale, checks=["regularization"])
    assert report.codes() == ["regularization-not-increasing-loss"]


class _Detached(nn.Module):
    """Rounds the logits through numpy, which leaves the autograd graph."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x):  # type: ignore[no-untyped-def]
        return torch.from_numpy(self.net(x).detach().numpy().round(4))


def test_detached_graph_cannot_overfit(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    report = lossdoctor.check(_Detached(), x, y, loss=CE, checks=["overfit"])
    (f,) = report.findings
    assert f.code == "cannot-overfit-small-batch" and f.evidence["failure"] == "error"


def test_frozen_model_cannot_overfit(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp()
    for p in model.parameters():
        p.requires_grad_(False)
    report = lossdoctor.check(model, x, y, loss=CE, checks=["overfit"])
    assert report.findings[0].evidence["failure"] == "error"
    assert "frozen" in str(report.findings[0].evidence["error"])


def test_summed_loss_and_outliers(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    report = lossdoctor.check(mlp(), x, y, loss=nn.CrossEntropyLoss(reduction="sum"),
                              checks=["initial-loss"])
    (f,) = report.findings
    assert f.code == "initial-loss-mismatch" and f.evidence["ratio"] > 20
    # Two corrupted samples: inputs blown up x40 and labels set to the least likely class.
    model = mlp()
    bad, bad_y = x.copy(), y.copy()
    bad[[5, 77]] *= 40
    with torch.no_grad():
        bad_y[[5, 77]] = model(torch.as_tensor(bad[[5, 77]])).argmin(1).numpy()
    out = lossdoctor.check(model, bad, bad_y, loss=CE, checks=["outliers"], samples=600)
    (f,) = out.by_code("outlier-samples")
    assert f.evidence["outliers"] == 2 and set(f.evidence["indices"].split(", ")) == {"5", "77"}


def test_poor_initialization(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp(depth=5)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.normal_(0, 0.01)
                m.bias.zero_()
    report = lossdoctor.check(model, x, y, loss=CE, checks=["initialization"])
    (f,) = report.findings
    assert f.code == "poor-initialization" and "collapses" in f.title


def test_no_loss_is_an_info_not_a_crash(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    report = lossdoctor.check(mlp(), x, y, checks=["inputs", "initial-loss", "overfit"])
    assert report.passed == ["inputs"]
    assert {f.code for f in report.findings} == {"check-skipped"}
    assert report.worst is None


class TokenNet(nn.Module):
    """Token ids through an Embedding and an LSTM; the label is the last token's
    residue, which the model can learn."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 16)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(ids))
        return self.head(h[:, -1])


def test_token_ids_are_indices_not_unscaled_features() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(256, 10))
    report = lossdoctor.check(TokenNet(), ids, ids[:, -1] % 3, loss=CE)
    # Before: "far from unit scale" on ids 0..49, and float ids into the embedding
    # broke the initialization check.
    assert severe(report) == [] and "monitor-error" not in report.codes()
    assert any("read as indices" in n for n in report.notes)
    assert "initial-loss" in report.passed and "overfit" in report.passed


@pytest.mark.parametrize("in_place", [False, True], ids=["torch.compile", "module.compile"])
def test_a_compiled_model_is_checked_as_its_module(digits, in_place: bool) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    if in_place:
        model.compile(backend="eager")
        compiled = model
    else:
        compiled = torch.compile(model, backend="eager")
    report = lossdoctor.check(compiled, x, y, loss=CE)
    assert report.model == "Sequential"
    assert severe(report) == [] and "monitor-error" not in report.codes()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
