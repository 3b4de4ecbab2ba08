"""The "synthetic" group of the out-of-domain set: scenes drawn with OpenCV from fixed seeds
(shapes, gradients, stripes, noise textures, text on paper, a simple room with a table and
objects), with no person and no dog in any of them.

Every drawer takes a seeded generator and returns a (FRAME_H, FRAME_W, 3) uint8 BGR frame;
the same seed always draws the same pixels, so the set is byte-for-byte reproducible.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgevlm.data.ood_image import FRAME_H, FRAME_W, GENERATED, OODImage, gaussian_noise, to_uint8


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, 3))


def _canvas(colour) -> np.ndarray:
    return np.full((FRAME_H, FRAME_W, 3), colour, np.uint8)


def _shapes(rng: np.random.Generator) -> np.ndarray:
    image = _canvas(_colour(rng, 40, 230))
    for _ in range(int(rng.integers(3, 9))):
        colour, r = _colour(rng), int(rng.integers(20, 120))
        cx, cy = int(rng.integers(0, FRAME_W)), int(rng.integers(0, FRAME_H))
        kind = int(rng.integers(0, 4))
        if kind == 0:
            cv2.circle(image, (cx, cy), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(image, (cx - r, cy - r // 2), (cx + r, cy + r // 2), colour, -1)
        elif kind == 2:
            points = (np.array([cx, cy]) + rng.integers(-r, r, (3, 2))).astype(np.int32)
            cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
        else:
            cv2.ellipse(image, (cx, cy), (r, r // 3), float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    return image


def _coordinates(rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 position along a random direction, 0 at the top-left corner."""
    y, x = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    return x * np.cos(angle) + y * np.sin(angle)


def _blend(t: np.ndarray, a, b) -> np.ndarray:
    """(H, W) weights in 0-1 -> (H, W, 3) uint8 mixing colour a (t=0) into b (t=1)."""
    t = np.clip(t, 0, 1)[..., None]
    return to_uint8(np.float32(a) * (1 - t) + np.float32(b) * t)


def _gradient(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        t = _coordinates(rng)
        t = (t - t.min()) / (t.max() - t.min())
    else:  # radial, from a random centre
        y, x = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
        cx, cy = rng.uniform(0, FRAME_W), rng.uniform(0, FRAME_H)
        t = np.hypot(x - cx, y - cy) / np.hypot(FRAME_W, FRAME_H)
    return _blend(t, _colour(rng), _colour(rng))


def _stripes(rng: np.random.Generator) -> np.ndarray:
    period = rng.uniform(12, 80)
    colours = np.array([_colour(rng) for _ in range(int(rng.integers(2, 4)))], np.uint8)
    band = (_coordinates(rng) // period).astype(np.int64) % len(colours)
    return colours[band]


def _noise_texture(rng: np.random.Generator) -> np.ndarray:
    cell = int(rng.choice([4, 8, 16, 32, 64]))
    coarse = rng.random((FRAME_H // cell + 1, FRAME_W // cell + 1)).astype(np.float32)
    t = cv2.resize(coarse, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    return to_uint8(_blend(t, _colour(rng), _colour(rng)) + gaussian_noise(rng, (FRAME_H, FRAME_W, 3), 4))


WORDS = ("the quick brown box rolls over a lazy river while seven green bottles stand on the wall "
         "milk bread eggs apples rice tea sugar flour salt pepper beans onions carrots butter "
         "meeting at nine room four notes budget plan total page chapter one summary table index").split()


def _text_page(rng: np.random.Generator) -> np.ndarray:
    image = _canvas(_colour(rng, 225, 252))
    ink = _colour(rng, 0, 70)
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX]))
    scale = float(rng.uniform(0.6, 1.1))
    step = int(34 * scale) + 6
    for y in range(int(rng.integers(40, 80)), FRAME_H - 30, step):
        line = " ".join(rng.choice(WORDS, int(rng.integers(3, 8))))
        cv2.putText(image, line, (int(rng.integers(30, 60)), y), font, scale, ink, 1 + int(scale > 0.9), cv2.LINE_AA)
    turn = cv2.getRotationMatrix2D((FRAME_W / 2, FRAME_H / 2), float(rng.uniform(-6, 6)), 1.0)
    return cv2.warpAffine(image, turn, (FRAME_W, FRAME_H), borderMode=cv2.BORDER_REPLICATE)


def _room(rng: np.random.Generator) -> np.ndarray:
    """A wall, a floor, maybe a window, and a table with two to four objects on it."""
    horizon = int(rng.integers(260, 340))
    image = _canvas(_colour(rng, 120, 240))
    image[horizon:] = _colour(rng, 40, 160)
    if rng.random() < 0.6:
        x, w = int(rng.integers(40, 400)), int(rng.integers(120, 200))
        image[40:200, x:x + w] = _blend(np.linspace(0, 1, 160)[:, None].repeat(w, 1), (235, 200, 140), (250, 235, 210))
        cv2.rectangle(image, (x, 40), (x + w, 200), (250, 250, 250), 8)
        cv2.line(image, (x + w // 2, 40), (x + w // 2, 200), (250, 250, 250), 6)
    wood = _colour(rng, 30, 140)
    top, left, right = horizon + 20, int(rng.integers(60, 160)), int(rng.integers(480, 580))
    cv2.rectangle(image, (left, top), (right, top + 18), wood, -1)
    for leg in (left + 10, right - 26):
        cv2.rectangle(image, (leg, top + 18), (leg + 16, FRAME_H), wood, -1)
    slots = np.linspace(left + 40, right - 40, 4).astype(int)
    for x in rng.permutation(slots)[: int(rng.integers(2, 5))]:
        _draw_object(image, rng, int(x), top)
    return image


def _draw_object(image: np.ndarray, rng: np.random.Generator, x: int, table_y: int) -> None:
    """One object standing on the table top at (x, table_y): cup, bowl, book, bottle, plant, fruit."""
    colour, kind = _colour(rng, 20, 240), int(rng.integers(0, 6))
    if kind == 0:  # cup with a handle
        cv2.rectangle(image, (x - 18, table_y - 40), (x + 18, table_y), colour, -1)
        cv2.ellipse(image, (x + 20, table_y - 20), (10, 12), 0, -90, 90, colour, 4, cv2.LINE_AA)
    elif kind == 1:  # bowl
        cv2.ellipse(image, (x, table_y - 2), (40, 28), 0, 180, 360, colour, -1, cv2.LINE_AA)
    elif kind == 2:  # stack of books
        for i in range(int(rng.integers(1, 4))):
            cv2.rectangle(image, (x - 35 + 3 * i, table_y - 14 * (i + 1)), (x + 35 - 2 * i, table_y - 14 * i),
                          _colour(rng, 20, 240), -1)
    elif kind == 3:  # bottle
        cv2.rectangle(image, (x - 14, table_y - 70), (x + 14, table_y), colour, -1)
        cv2.rectangle(image, (x - 5, table_y - 95), (x + 5, table_y - 70), colour, -1)
    elif kind == 4:  # potted plant
        cv2.rectangle(image, (x - 20, table_y - 36), (x + 20, table_y), (40, 80, 160), -1)
        for _ in range(6):
            centre = (x + int(rng.integers(-30, 30)), table_y - 36 - int(rng.integers(10, 60)))
            leaf = (int(rng.integers(20, 60)), int(rng.integers(110, 180)), int(rng.integers(20, 70)))  # BGR green
            cv2.circle(image, centre, int(rng.integers(10, 20)), leaf, -1, cv2.LINE_AA)
    else:  # fruit
        for i in range(int(rng.integers(1, 4))):
            cv2.circle(image, (x - 20 + 20 * i, table_y - 14), 14, colour, -1, cv2.LINE_AA)


SCENES = {  # drawer -> how many images
    "shapes": (_shapes, 12), "gradient": (_gradient, 6), "stripes": (_stripes, 6),
    "noise": (_noise_texture, 6), "text": (_text_page, 8), "room": (_room, 10),
}


def synthetic_scenes() -> list[OODImage]:
    """Every drawn scene, SCENES in order, seeds 0..count-1 of each."""
    out = []
    for index, (kind, (drawer, count)) in enumerate(SCENES.items()):
        for seed in range(count):
            image = drawer(np.random.default_rng([100 + index, seed]))
            out.append(OODImage(f"synthetic_{kind}_{seed:02d}", "synthetic", f"drawn {kind} scene, seed {seed}",
                                GENERATED, image))
    return out
