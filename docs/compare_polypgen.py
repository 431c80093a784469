"""Write a side-by-side of synthetic frames (top) and real PolypGen frames (bottom).

The PolypGen sample lives outside the repository (../shared/data/polypgen; its licence note
asks that it not be copied in), so the picture is made on demand, not committed:

    python docs/compare_polypgen.py --out /tmp/synthetic_vs_polypgen.png
"""
import argparse
from pathlib import Path

import cv2
import numpy as np

from gi_sdk.synthetic import SyntheticEndoscope


def _row(frames, height=220):
    return np.hstack([cv2.resize(f, (int(f.shape[1] * height / f.shape[0]), height)) for f in frames])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polypgen", default=str(Path(__file__).resolve().parents[2] / "shared/data/polypgen/images"))
    parser.add_argument("--out", default="synthetic_vs_polypgen.png")
    args = parser.parse_args()
    scope = SyntheticEndoscope(seed=0)
    synthetic = [scope.frame(i)[0] for i in (0, 400, 800, 1200)]
    real = [cv2.imread(str(p)) for p in sorted(Path(args.polypgen).glob("*.jpg"))[:4]]
    if not real:
        raise SystemExit(f"no PolypGen frames in {args.polypgen}")
    top, bottom = _row(synthetic), _row(real)
    width = max(top.shape[1], bottom.shape[1])
    pad = lambda img: cv2.copyMakeBorder(img, 0, 0, 0, width - img.shape[1], cv2.BORDER_CONSTANT)
    cv2.imwrite(args.out, np.vstack([pad(top), pad(bottom)]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
