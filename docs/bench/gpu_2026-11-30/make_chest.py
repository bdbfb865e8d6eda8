"""Synthetic stand-in for the Kermany folder on the device machine (throughput only; pixels are noise)."""
import csv, os, sys
from concurrent.futures import ProcessPoolExecutor
import numpy as np
from PIL import Image

root, n, side = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 512

def one(i):
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:side, 0:side] / side
    img = (120 + 60 * np.sin(6 * x + i) * np.cos(4 * y) + rng.normal(0, 12, (side, side))).clip(0, 255)
    label = "PNEUMONIA" if i % 3 else "NORMAL"
    split = "test" if i % 8 == 0 else "train"
    name = f"{split}/{label}/person{i}_bacteria_{i}.jpeg"
    os.makedirs(os.path.join(root, split, label), exist_ok=True)
    Image.fromarray(img.astype(np.uint8)).save(os.path.join(root, name), quality=90)
    return name, label, split

with ProcessPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
    rows = list(pool.map(one, range(n), chunksize=32))
with open(os.path.join(root, "labels.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["filename", "label", "split", "source_path"])
    for name, label, split in rows:
        w.writerow([name, label, split, name])
print(f"{n} synthetic films of {side} px in {root}")
