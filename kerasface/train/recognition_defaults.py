"""Margin-head settings of a recognition run, from the size of its training data.

The papers' settings (ArcFace: s=64, m=0.5; Deng et al. 2019) were made for CASIA-WebFace and
larger (10k+ identities). The rule, for C training identities:

- scale, every head: AdaCos' fixed scale s = sqrt(2) * ln(C - 1) (Zhang et al. 2019), within
  [16, 64];
- ArcFace's angular margin: 0.3 at <= 100 identities (the demo's measured setting), 0.5 at
  >= 10,000 (the paper's), linear in log10(C) between, times min(1, (K - 1) / 9) for K images
  per identity (the margin tightens an identity's images around its centre, which one image
  does not need); other heads keep their own margins.

The measurements behind it: docs/benchmarks.md, "Recognition defaults" and "Recognition
defaults on real photos".

The optimizer, schedule and epochs stay the command's defaults: no measurement ties them to the
data's size yet. Settings given in ``loss_kwargs`` win over the rule's.
"""

from __future__ import annotations

import math

SCALE_RANGE = (16.0, 64.0)
ARCFACE_MARGINS = ((100, 0.3), (10_000, 0.5))
FULL_MARGIN_IMAGES = 10


def adacos_scale(num_identities: int) -> float:
    """sqrt(2) * ln(C - 1) within ``SCALE_RANGE``."""
    low, high = SCALE_RANGE
    return min(high, max(low, math.sqrt(2.0) * math.log(max(num_identities - 1, 1))))


def arcface_margin(num_identities: int, images_per_identity: float) -> float:
    """ArcFace's margin for C identities of K images: linear in log10(C) between
    ``ARCFACE_MARGINS``, times min(1, (K - 1) / (``FULL_MARGIN_IMAGES`` - 1))."""
    (c0, m0), (c1, m1) = ARCFACE_MARGINS
    t = (math.log10(max(num_identities, 1)) - math.log10(c0)) / (math.log10(c1) - math.log10(c0))
    share = min(1.0, max(0.0, (images_per_identity - 1) / (FULL_MARGIN_IMAGES - 1)))
    return (m0 + (m1 - m0) * min(1.0, max(0.0, t))) * share


def recognition_defaults(head: str | None, num_identities: int, images_per_identity: float,
                         given: dict | None = None) -> tuple[dict, str]:
    """(head options, reason) for ``head`` trained on ``num_identities`` identities of
    ``images_per_identity`` images on average; the ``given`` options win over the rule's."""
    given = dict(given or {})
    if head is None:
        return given, "a metric loss: no head options"
    rule = {"scale": round(adacos_scale(num_identities), 2)}
    if head == "arcface":
        rule["margin"] = round(arcface_margin(num_identities, images_per_identity), 3)
    data = f"{num_identities} training identities, {images_per_identity:.1f} images each"
    own = sorted(k for k in given if k not in rule or given[k] != rule[k])
    parts = []
    if "scale" in rule and "scale" not in own:
        parts.append(f"scale {rule['scale']:g} = sqrt(2) ln(C - 1) (AdaCos) within "
                     f"[{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}]")
    if "margin" in rule and "margin" not in own:
        parts.append(f"margin {rule['margin']:g}: {ARCFACE_MARGINS[0][1]:g} at <= {ARCFACE_MARGINS[0][0]:,} "
                     f"identities to {ARCFACE_MARGINS[1][1]:g} at >= {ARCFACE_MARGINS[1][0]:,}, linear in log10(C), "
                     f"times min(1, (K - 1) / {FULL_MARGIN_IMAGES - 1}) for K images per identity")
    reason = f"{data}: " + "; ".join(parts)
    if own:
        reason += f"; given in loss_kwargs: {', '.join(own)}"
    reason += "; optimizer, schedule and epochs: the command's defaults (not measured against the data's size)"
    return {**rule, **given}, reason
