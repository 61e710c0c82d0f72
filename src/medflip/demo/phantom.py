"""Synthetic phantom chest radiographs for the built-in demo.

**These images are synthetic and for demonstration only. They are not medical data, are not
derived from patients, and must never be used to train or evaluate anything clinical.**

The demo pairs real radiology-report text with images rendered so that each image shows its
report's findings (the 14 observations of :data:`medflip.observations.OBSERVATIONS`). Every image
is built from analytic shapes on a coordinate grid (vectorised numpy, no per-pixel loops):

* Coordinates: ``x`` runs left to right of the image and ``y`` top to bottom, both in [-1, 1].
  Radiograph convention: the patient's right side is on the image left, dense structures
  (bone, fluid, soft tissue, metal) are bright and air-filled lung is dark.
* A density map is composed from soft tissue, lungs, heart, bones, vessel markings and devices,
  and lung *aeration* ``aer`` in [0, 1]. Most findings act the way disease does on film: they
  replace air with fluid or tissue (``aer *= 1 - fraction``) so the region approaches soft-tissue
  density and lung markings vanish inside it; a pneumothorax instead *adds* air.
* Anatomy, exposure, noise and the patient's position vary randomly so that a model cannot
  solve the task from trivia; finding parameters (size, side, position) vary as well.

Public API: :func:`render_phantom` (one image from a label vector) and :func:`render_phantoms`
(a batch, deterministic per ``(seed, index)`` so results do not depend on batching). Both can also
return *where* each finding was drawn (a boolean mask per finding): the ground truth that the
grounding evaluation (medflip.demo.grounding) scores heatmaps against.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from medflip.observations import NUM_OBSERVATIONS, OBSERVATIONS

_IDX = {name: i for i, name in enumerate(OBSERVATIONS)}
_F = np.float32
_OPACITY_CHILDREN = ("Consolidation", "Pneumonia", "Edema", "Atelectasis", "Lung Lesion")


def _gauss_blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Periodic gaussian blur through the FFT (only used to build the texture banks)."""
    h, w = img.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    k = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2))
    return np.fft.irfft2(np.fft.rfft2(img) * k, s=img.shape)


def _tree_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Branching vessel trees growing out of both hila, tapering and thinning with generation."""
    pts_x, pts_y, wts = [], [], []
    step = 0.6 * 2.0 / size
    for side in (-1.0, 1.0):
        hx, hy = side * 0.22, -0.05
        stack = [(hx, hy, a, 0.16, 0) for a in np.linspace(-1.9, 1.9, 7) + rng.normal(0, 0.12, 7)]
        while stack:
            x0, y0, ang, length, gen = stack.pop()
            # angle 0 points laterally; +/- angles sweep down / up
            dx, dy = side * np.cos(ang), np.sin(ang)
            n = max(2, int(length / step))
            t = np.linspace(0.0, length, n)
            pts_x.append(x0 + dx * t)
            pts_y.append(y0 + dy * t + 0.02 * np.sin(t * 25 + rng.uniform(0, 6)))
            wts.append(np.full(n, 0.85**gen))
            if gen < 6:
                x1, y1 = x0 + dx * length, y0 + dy * length
                for d in (-1.0, 1.0):
                    stack.append(
                        (x1, y1, ang + d * rng.uniform(0.2, 0.5), length * rng.uniform(0.7, 0.85), gen + 1)
                    )
    px, py, w = np.concatenate(pts_x), np.concatenate(pts_y), np.concatenate(wts)
    ix = np.round((px + 1) / 2 * size - 0.5).astype(int)
    iy = np.round((py + 1) / 2 * size - 0.5).astype(int)
    ok = (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size)
    img = np.zeros((size, size))
    np.add.at(img, (iy[ok], ix[ok]), w[ok])
    img = _gauss_blur(np.minimum(img, 1.0), 0.6 * size / 128)
    return (img / np.percentile(img[img > 0], 99)).clip(0, 1.2).astype(_F)


@lru_cache(maxsize=8)
def _bank(size: int) -> dict[str, object]:
    """Per-size coordinate grids and texture banks (fixed seed: identical in every process)."""
    rng = np.random.default_rng(20240601)
    c = ((np.arange(size) + 0.5) / size * 2 - 1).astype(_F)
    trees = np.stack([_tree_texture(size, rng) for _ in range(12)])
    noise = []
    for sig in (0.035, 0.06, 0.09, 0.035, 0.06, 0.09, 0.05, 0.07):
        f = _gauss_blur(rng.standard_normal((size, size)), sig * size / 2)
        noise.append(((f - f.mean()) / f.std()).astype(_F))
    return {
        "X": np.broadcast_to(c[None, :], (size, size)),
        "Y": np.broadcast_to(c[:, None], (size, size)),
        "trees": trees,
        "noise": np.stack(noise),
    }


def _soft(d: np.ndarray | float, w: float) -> np.ndarray:
    """Soft step: 0 where d << 0, 1 where d >> 0, linear ramp of width w."""
    return np.clip(0.5 + np.asarray(d) / w, 0.0, 1.0)


def _ellipse(x, y, cx, cy, rx, ry, edge):
    """Soft filled ellipse; the argument of _soft approximates the signed distance to the rim."""
    e = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
    return _soft((1.0 - e) * (0.5 * min(rx, ry)), edge)


def _segment(x, y, ax, ay, bx, by, width, edge):
    """Soft band of half-width ``width`` around the segment a-b."""
    dx, dy = bx - ax, by - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    d = np.sqrt((x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2)
    return _soft(width - d, edge)


def _pick_noise(bank, rng) -> np.ndarray:
    f = bank["noise"][rng.integers(len(bank["noise"]))]
    f = f if rng.random() < 0.5 else f.T
    return np.roll(f, tuple(rng.integers(0, f.shape[0], 2)), axis=(0, 1))


def render_phantom(
    labels: np.ndarray, rng: np.random.Generator, size: int = 128, masks: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """Render one synthetic PA chest radiograph showing the positive observations in ``labels``.

    ``labels`` is a {0,1} vector over the 14 observations (OBSERVATIONS order); returns uint8
    [size, size]. ``masks``: when a dict is given, it receives ``{finding: bool [size, size]}``, the
    pixels where each drawn finding changes the image by at least half its strength (every positive
    finding except Support Devices and No Finding). Asking for masks changes no pixel and no random draw.
    What each finding looks like (and why):

    * Cardiomegaly: heart wider than ~58-68% of the thoracic width (normal 40-48%), the
      cardiothoracic ratio being the classic radiographic criterion.
    * Enlarged Cardiomediastinum: upper mediastinum above the heart widened and a big aortic knob.
    * Pleural Effusion: fluid layers at the lung base (one or both sides) -> homogeneous density
      whose upper border is a concave *meniscus* rising laterally, blunting the costophrenic angle
      and hiding the diaphragm.
    * Consolidation: alveoli filled -> dense, homogeneous, lobar-shaped opacity bounded by a sharp
      fissure, with dark *air bronchograms* (the thick central bronchi stay aerated) inside; a lower-lobe
      border falls laterally (unlike an effusion's meniscus). Pneumonia: the same kind of
      airspace opacity but patchier/multifocal with softer edges.
    * Lung Opacity: ill-defined, moderate, patchy haze with no sharp border and no bronchograms, drawn
      only when no more specific opacity (consolidation, pneumonia, edema, atelectasis, lesion) is present.
    * Edema: bilateral symmetric perihilar "bat-wing" haze (fluid around the hila, periphery
      spared), indistinct vessels, and short horizontal Kerley B lines at the lateral bases.
    * Atelectasis: collapsed (airless) lung at one base: plate-like dense bands above the
      diaphragm, with volume loss -> elevated hemidiaphragm and small shift toward that side.
    * Pneumothorax: air in the pleural space -> a thin bright visceral pleural line with a dark,
      marking-free region beyond it (apical/lateral), the lung partly collapsed behind the line.
    * Lung Lesion: round, sharply marginated nodule or mass.
    * Pleural Other: pleural thickening, a lobulated band of density along the lateral chest wall.
    * Fracture: one rib interrupted by a dark gap with a step-off between the fragments.
    * Support Devices: metal-bright thin lines/shapes: endotracheal tube down the midline,
      central venous line, and/or a pacemaker box with its lead to the heart.
    * No Finding: normal anatomy only.
    """
    labels = np.asarray(labels, dtype=_F).reshape(-1)
    drawn: dict[str, np.ndarray] = {}

    def mark(name: str, weight: np.ndarray) -> None:  # where a finding is drawn (union over its parts)
        m = np.asarray(weight) > 0.5
        drawn[name] = drawn[name] | m if name in drawn else m

    if labels.shape[0] != NUM_OBSERVATIONS:
        raise ValueError(f"expected {NUM_OBSERVATIONS} labels, got {labels.shape[0]}")
    has = {name: bool(labels[i] > 0.5) for name, i in _IDX.items()}
    bank = _bank(size)
    u = rng.uniform
    px = 2.0 / size  # one pixel in coordinate units
    edge = 1.6 * px
    # Exposure and noise are drawn first, from their own stream, so the same rng state renders the
    # same "patient" whatever the findings are (the tests compare such pairs pixel by pixel).
    expo = (u(0.95, 1.2), u(0.0, 0.08), u(-0.05, 0.05), u(-0.03, 0.03), u(0.8, 1.25), u(0.0, 0.6))
    expo += (u(0.008, 0.03), np.random.default_rng(rng.integers(2**63)))

    # --- patient position: small rotation, shift and magnification (applied to the grid) ---
    ang = float(np.deg2rad(rng.normal(0.0, 2.5)))
    sc = u(0.94, 1.06)
    ca, sa = float(np.cos(ang)) / sc, float(np.sin(ang)) / sc
    X0, Y0 = bank["X"], bank["Y"]
    x = ca * X0 + sa * Y0 - u(-0.05, 0.05)
    y = -sa * X0 + ca * Y0 - u(-0.05, 0.05)
    ax_ = np.abs(x)

    # --- anatomy parameters ---
    xl = u(0.72, 0.82)  # lateral extent of the lungs
    apex = u(-0.8, -0.66)
    domes = {-1: u(0.36, 0.48)}
    domes[1] = domes[-1] + u(0.02, 0.09)  # left hemidiaphragm usually lower
    ate_side = int(rng.choice([-1, 1])) if has["Atelectasis"] else 0
    if ate_side:
        domes[ate_side] -= u(0.15, 0.24)  # volume loss pulls the diaphragm up
    shift = 0.035 * ate_side
    ctr = u(0.58, 0.68) if has["Cardiomegaly"] else u(0.40, 0.48)
    hx = u(0.05, 0.11) + (0.04 if has["Cardiomegaly"] else 0.0) + shift
    hrx = ctr * xl
    hry = u(0.22, 0.28) * (1.15 if has["Cardiomegaly"] else 1.0)
    hcy = domes[1] - 0.55 * hry
    mw = u(0.2, 0.27) if has["Enlarged Cardiomediastinum"] else u(0.1, 0.14)

    # --- soft tissue body, abdomen, heart, mediastinum, trachea ---
    body = _soft(u(0.93, 1.1) - ax_ - 0.15 * np.clip(-y - 0.6, 0, None) ** 2 * 4, 3 * px)
    heart = _ellipse(x, y, hx, hcy, hrx, hry, edge)
    dome_f = np.where(x < 0, domes[-1] + 1.2 * (x + 0.42) ** 2, domes[1] + 1.2 * (x - 0.42) ** 2)
    medi = np.maximum(
        _soft(mw - np.abs(x - shift), edge) * _soft(hcy - y, 0.1), _soft(0.1 - np.abs(x - shift), edge)
    )
    medi = np.maximum(
        medi, _ellipse(x, y, shift + 0.9 * mw, -0.3, 0.07 * mw / 0.12, 0.06, edge)
    )  # aortic knob
    if has["Enlarged Cardiomediastinum"]:
        mark("Enlarged Cardiomediastinum", medi * _soft(hcy - hry - y, edge))  # above the heart
    if has["Cardiomegaly"]:
        mark("Cardiomegaly", heart)
    medi = np.maximum(medi, heart)
    abdomen = _soft(y - dome_f, edge)
    trachea = _soft(0.035 - np.abs(x - shift * 0.7), edge) * _soft(-0.3 - y, 0.05)
    tissue = 0.55 * body + 0.06 * medi + 0.05 * abdomen - 0.1 * trachea

    # --- lungs (aeration field) and their markings ---
    lungs, lung_e = {}, {}
    for s in (-1, 1):
        xl_s = xl + u(-0.02, 0.02)
        cx, rx, ry = s * (xl_s + 0.05) / 2, (xl_s - 0.05) / 2, 0.45 - apex
        lung_e[s] = (cx, rx, ry)
        lungs[s] = _ellipse(x, y, cx, 0.45, rx, ry, edge) * _soft(dome_f - y, edge) * (s * x > 0)
    lung = lungs[-1] + lungs[1]
    aer = lung * (1.0 - medi)
    tree = bank["trees"][rng.integers(len(bank["trees"]))]
    tree = tree if rng.random() < 0.5 else tree[:, ::-1]
    rh = np.sqrt((ax_ - 0.22) ** 2 + (y + 0.05) ** 2)
    markings = tree * np.clip(1.3 - rh / 0.8, 0.35, 1.0) + 0.12 * _pick_noise(bank, rng) ** 2
    vessel_gain = u(0.14, 0.19)
    hilum = np.exp(-(((ax_ - 0.2) / 0.07) ** 2) - ((y + 0.03) / 0.12) ** 2) * 0.12

    # --- bones: ribs (posterior + faint anterior), clavicles, spine ---
    cage = _ellipse(x, y, 0.0, 0.45, xl + 0.1, 0.45 - apex + 0.12, 4 * px)
    spacing, phase = u(0.125, 0.15), u(0, 2 * np.pi)
    urib = y + 0.35 * ax_ - 0.9 * ax_**2
    rib_fx = rib_gap = None
    if has["Fracture"]:
        k = rng.integers(2, 6)  # which rib (counting down from the top of the cage)
        uk = (k - phase / (2 * np.pi)) * spacing
        side, xf = int(rng.choice([-1, 1])), u(0.28, 0.5)
        near = (np.abs(urib - uk + 0.6) < 0.5 * spacing) & (s_x := (side * x > 0))
        mark("Fracture", near * (np.abs(ax_ - xf) < 0.06))
        step = u(0.03, 0.045) * (1 if rng.random() < 0.5 else -1)
        urib = np.where(near & (s_x * ax_ > xf), urib + step, urib)
        rib_gap = 1.0 - near * _soft(0.03 - np.abs(ax_ - xf), px)
        rib_fx = True
    band = np.cos(2 * np.pi * (urib + 0.6) / spacing + phase)
    ribs = _soft(band - 0.25, 0.35) * (1.0 - 0.5 * _soft(band - 0.75, 0.2))  # brighter cortex
    ribs = ribs * cage * _soft(y + 0.98, 0.05) * (ax_ > 0.05) * (1.0 - 0.85 * abdomen)
    if rib_fx:
        ribs = ribs * rib_gap
    aribs = _soft(np.cos(2 * np.pi * (y - 0.5 * ax_ + 0.3 * ax_**2) / (spacing * 1.3) + phase) - 0.6, 0.3)
    bones = 0.13 * ribs + 0.04 * aribs * cage
    for s in (-1, 1):
        bones = bones + 0.22 * _segment(
            x, y, s * 0.08, -0.74 + u(-0.03, 0.03), s * u(0.55, 0.7), -0.86 + u(-0.05, 0.05), 0.028, edge
        )
    bones = bones + 0.1 * _soft(0.06 - np.abs(x - 0.3 * shift), edge) * (
        0.7 + 0.3 * np.cos(y * 2 * np.pi / 0.12)
    )

    # --- findings that change aeration (fraction of air replaced by fluid / tissue) ---
    extra = np.zeros_like(x)
    if has["Pleural Effusion"]:
        sides = [-1, 1] if rng.random() < 0.35 else [int(rng.choice([-1, 1]))]
        for s in sides:
            cx, rx, ry = lung_e[s]
            t = np.clip((s * x - 0.05) / (2 * rx), 0.0, 1.0)  # 0 medial .. 1 lateral
            top = domes[s] + u(-0.3, -0.12) - u(0.25, 0.45) * t**2  # concave meniscus, higher laterally
            fluid = _soft(y - top - 0.03, 0.07) * (s * x > 0)
            aer = aer * (1.0 - fluid)
            mark("Pleural Effusion", fluid * lungs[s])
            extra = extra + 0.05 * fluid * _ellipse(x, y, cx, 0.45, rx, ry, edge)
    if has["Consolidation"] or has["Pneumonia"]:
        s = int(rng.choice([-1, 1]))
        cx, rx, _ = lung_e[s]
        lobe = int(rng.integers(3))
        fis = u(-0.12, 0.05)
        if lobe == 0:  # upper lobe, sharp lower border at the horizontal fissure
            region = _soft(fis - y, edge) * _soft(y - u(-0.7, -0.45), 0.15)
        elif lobe == 1:  # middle lobe / lingula, against the heart border
            region = (
                _soft(y - fis, edge) * _soft(fis + u(0.25, 0.4) - y, 0.08) * _soft(u(0.45, 0.6) - s * x, 0.1)
            )
        else:  # lower lobe: upper border along the oblique fissure, highest near the hilum and falling
            # laterally (the opposite of an effusion's meniscus); the lateral costophrenic angle stays aerated
            region = _soft(y - (u(-0.05, 0.1) + 0.35 * (s * x - 0.2)), 2 * edge) * _soft(
                cx * s + 0.7 * rx - s * x, 0.08
            )
        if has["Consolidation"]:  # alveoli filled: homogeneous, nearly airless
            frac = u(0.93, 1.0) * region
        else:  # pneumonia alone: patchy, softer
            frac = u(0.7, 0.9) * region * _soft(_pick_noise(bank, rng) + 0.6, 1.2)
        # air bronchograms: only the thick central bronchi stay aerated (thin ones are below resolution)
        bronchi = np.clip(4.0 * bank["trees"][rng.integers(len(bank["trees"]))] - 3.0, 0, 1) * (rh < 0.45)
        frac = frac * (1.0 - 0.7 * bronchi)
        aer = aer * (1.0 - frac * (s * x > 0))
        mark("Consolidation" if has["Consolidation"] else "Pneumonia", region * lungs[s])
        if has["Consolidation"] and has["Pneumonia"]:
            drawn["Pneumonia"] = drawn["Consolidation"]  # one lesion (see the Lung Opacity note below)
    # Lung Opacity is the parent of the airspace findings (CheXpert's label hierarchy): a report that names a
    # consolidation usually calls the same lesion an "opacity" too, and "consolidation, likely pneumonia" is
    # one lesion. So a separate opacity is drawn only when no child finding already explains it.
    if has["Lung Opacity"] and not any(has[c] for c in _OPACITY_CHILDREN):
        s = int(rng.choice([-1, 1]))
        blob = _ellipse(x, y, s * u(0.3, 0.6), u(-0.4, 0.25), u(0.15, 0.28), u(0.15, 0.3), 0.25)
        aer = aer * (1.0 - u(0.45, 0.65) * blob * _soft(_pick_noise(bank, rng) + 0.3, 1.4))
        mark("Lung Opacity", blob * lung)
    if has["Edema"]:
        bat = np.exp(-(((ax_ - 0.22) / u(0.26, 0.34)) ** 2) - ((y - u(-0.02, 0.08)) / u(0.28, 0.36)) ** 2)
        aer = aer * (1.0 - u(0.55, 0.75) * bat)
        mark("Edema", bat * lung)
        vessel_gain *= 0.6  # indistinct vessels
        period = u(0.055, 0.07)
        jag = 0.05 * _pick_noise(bank, rng)  # ragged line lengths
        for s in (-1, 1):  # Kerley B lines: short horizontal lines at the lateral lower periphery
            cx, rx, _ = lung_e[s]
            lat = _soft(s * x - (cx * s + rx - u(0.1, 0.14) - jag), edge)
            kb = _soft(np.cos(2 * np.pi * y / period + u(0, 6)) - 0.8, 0.25) * _soft(y - u(0.0, 0.12), 0.05)
            extra = extra + 0.15 * kb * lat * lungs[s]
    if ate_side:
        s, (cx, rx, _) = ate_side, lung_e[ate_side]
        for j in range(int(rng.integers(1, 3))):
            yb = domes[s] - u(0.1, 0.18) - 0.12 * j
            xa = cx - s * u(0.05, 0.12)
            plate = _segment(x, y, xa, yb, xa + s * u(0.25, 0.35), yb + u(-0.06, 0.06), u(0.025, 0.04), edge)
            aer = aer * (1.0 - 0.92 * plate)
            mark("Atelectasis", plate * lungs[s])
        wedge = _soft(y - (domes[s] - u(0.12, 0.2) + 0.6 * np.abs(x - cx)), 0.04) * (
            s * x > 0
        )  # basal collapse
        aer = aer * (1.0 - 0.75 * wedge)
        mark("Atelectasis", wedge * lungs[s])
    if has["Lung Lesion"]:
        s = int(rng.choice([-1, 1]))
        r = u(0.035, 0.09)
        nod = _ellipse(x, y, s * u(0.3, 0.62), u(-0.5, 0.2), r, r * u(0.85, 1.15), edge)
        aer = aer * (1.0 - 0.92 * nod)
        mark("Lung Lesion", nod)
    if has["Pleural Other"]:
        s = int(rng.choice([-1, 1]))
        cx, rx, ry = lung_e[s]
        e = ((x - cx) / rx) ** 2 + ((y - 0.45) / ry) ** 2
        w = u(0.22, 0.32) * (1 + 0.35 * np.cos(y * u(20, 35)))  # lobulated thickness
        y0 = u(-0.5, 0.0)
        thick = (
            _soft(e - (1 - w), 0.03)
            * (s * (x - cx) > 0)
            * _soft(y - y0, 0.05)
            * _soft(y0 + u(0.35, 0.6) - y, 0.05)
        )
        aer = aer * (1.0 - 0.95 * thick)
        mark("Pleural Other", thick * lungs[s])
    ptx = 0.0
    line = 0.0
    if has["Pneumothorax"]:
        s = int(rng.choice([-1, 1]))
        cx, rx, ry = lung_e[s]
        d = u(0.16, 0.28)
        inner = ((x - cx + s * d * 0.7) / (rx - 0.6 * d)) ** 2 + ((y - 0.45) / (ry - d)) ** 2
        ptx = _soft(inner - 1.0, 0.02) * lungs[s]  # pleural space beyond the collapsed lung
        line = 0.12 * _soft(0.012 - np.abs(inner - 1.0) * 0.25, 0.01) * lungs[s] * (y < dome_f - 0.05)
        aer = aer * (1.0 - 0.25 * (1.0 - ptx) * lungs[s])  # collapsed lung a little denser
        mark("Pneumothorax", ptx)

    vessels = vessel_gain * (markings + hilum) * (1.0 - ptx)
    density = tissue + bones + extra + line + aer * (vessels - 0.42) - 0.08 * ptx * lung

    # --- support devices (metal: very bright, thin) ---
    if has["Support Devices"]:
        kinds = rng.random(3) < 0.55
        kinds[rng.integers(3)] = True
        if kinds[0]:  # endotracheal tube: radiopaque stripe down the midline, tip above the carina
            tip = u(-0.55, -0.35)
            density = density + 0.5 * _soft(0.012 - np.abs(x - shift * 0.7 - 0.012), px) * _soft(tip - y, px)
        if kinds[1]:  # central venous line from the subclavian region into the SVC
            s = int(rng.choice([-1, 1]))
            yy = np.clip(y, -0.9, 0.05)
            xc = s * (0.09 + 0.45 * ((yy + 0.9) / 0.55 - 1.0) ** 2 * (yy < -0.35))
            density = density + 0.45 * _soft(0.01 - np.abs(x - xc), px) * _soft(y + 0.9, px) * _soft(
                u(-0.15, 0.0) - y, px
            )
        if kinds[2]:  # pacemaker generator (upper left chest) with a lead down to the heart
            bx, by = u(0.45, 0.65), u(-0.75, -0.55)
            box = _soft(0.09 - np.maximum(np.abs(x - bx), 1.3 * np.abs(y - by)), px)
            lead_x = bx + (hx - 0.05 - bx) * np.clip((y - by) / (hcy + 0.1 - by), 0, 1) ** 0.7
            lead = _soft(0.009 - np.abs(x - lead_x), px) * _soft(y - by, px) * _soft(hcy + 0.1 - y, px)
            density = density + 0.8 * box + 0.45 * lead

    # --- exposure, contrast, gamma, blur and noise ---
    gain, off, gy, gx, gamma, b, sigma, noise_rng = expo
    img = np.clip(density * gain + off + gy * y + gx * x, 0.0, 1.0) ** gamma
    img = (1 - b) * img + b * 0.25 * (
        np.roll(img, 1, 0) + np.roll(img, -1, 0) + np.roll(img, 1, 1) + np.roll(img, -1, 1)
    )
    img = img + noise_rng.standard_normal(img.shape, dtype=_F) * sigma
    if masks is not None:
        masks.update(drawn)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_phantoms(
    label_matrix: np.ndarray, seed: int, size: int = 128, start: int = 0, masks: list | None = None
) -> np.ndarray:
    """Render a batch: uint8 [N, size, size]. Row ``j`` is image ``start + j`` of the dataset and
    uses ``np.random.default_rng([seed, start + j])``, so every image is the same whatever batch
    (or worker) renders it: ``render_phantoms(L[a:b], seed, start=a) == render_phantoms(L, seed)[a:b]``.
    ``masks``: when a list is given, one ``{finding: bool [size, size]}`` per image is appended to it."""
    label_matrix = np.asarray(label_matrix, dtype=_F)
    if label_matrix.ndim != 2 or label_matrix.shape[1] != NUM_OBSERVATIONS:
        raise ValueError(f"expected label matrix [N, {NUM_OBSERVATIONS}], got {label_matrix.shape}")
    out = np.empty((label_matrix.shape[0], size, size), dtype=np.uint8)
    for i, row in enumerate(label_matrix):
        m: dict[str, np.ndarray] | None = {} if masks is not None else None
        out[i] = render_phantom(row, np.random.default_rng([seed, start + i]), size, masks=m)
        if masks is not None:
            masks.append(m)
    return out
