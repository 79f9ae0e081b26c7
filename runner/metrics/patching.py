"""restored_fraction: how much of the way from the clean run to the source run a patch moves a logit measure."""
from __future__ import annotations

from typing import Any, Iterator, Literal

from runner.metrics.base import Reading, Variable, register
from runner.metrics.logits import TwoChoices


UNDEFINED = "NaN where the source run's value equals the clean run's (a zero denominator)"


class RestoredFraction(TwoChoices):
    """patch: (m_patched - m_clean) / (m_source - m_clean) of m = logit[a] - logit[b] (or, without a pair, the
    logit of the source run's top choice), per sample; both baselines are stored too. With reduce: mean, a ratio
    of the means (per-sample ratios explode where the source run is close to the clean one)."""

    kind: Literal["restored_fraction"]
    variables = {"restored_fraction": Variable(("sample",), undefined=UNDEFINED), "restored_clean": Variable(("sample",)),
                 "restored_source": Variable(("sample",))}
    reduces_itself = True
    attributable = True

    def attrs(self, name: str) -> dict[str, str]:
        pair = self.choice_ids() is not None
        if self.reduce == "mean":
            text = {"restored_fraction": f"fraction of the mean {'logit difference' if pair else 'top-choice logit'} "
                                         "restored",
                    "restored_clean": "unpatched run (fraction 0), mean over samples",
                    "restored_source": "source run (fraction 1), mean over samples"}[name]
            attrs = {"long_name": text, "cell_methods": "sample: mean"}
        else:
            what = "logit difference" if pair else "logit of the source run's top choice"
            attrs = {"long_name": {"restored_fraction": f"fraction of the {what} restored by patching",
                                   "restored_clean": f"{what}, unpatched run (fraction 0)",
                                   "restored_source": f"{what}, source run (fraction 1)"}[name]}
        return attrs | ({"undefined": UNDEFINED} if name == "restored_fraction" else {})

    def problems(self, sizes: Any, intervention: Any) -> Iterator[str]:
        yield from super().problems(sizes, intervention)
        if intervention is None or intervention.kind not in ("patch", "path_patch"):
            yield "restored_fraction measures a patch: it needs intervention kind: patch (or path_patch)"


@register(RestoredFraction)
def restored_fraction(metric: RestoredFraction, r: Reading) -> dict[str, Any]:
    pair = metric.choice_ids()
    if pair is None:
        top = r.source.argmax(dim=-1, keepdim=True)
        m = lambda logits: logits.gather(-1, top).squeeze(-1)  # noqa: E731
    else:
        m = lambda logits: logits[:, pair[0]] - logits[:, pair[1]]  # noqa: E731
    clean, source, patched = m(r.clean), m(r.source), m(r.out)
    if metric.reduce == "mean":
        clean, source, patched = clean.mean(), source.mean(), patched.mean()
    denominator = source - clean
    fraction = ((patched - clean) / denominator).masked_fill(denominator == 0, float("nan"))
    return {"restored_fraction": fraction, "restored_clean": clean, "restored_source": source}
