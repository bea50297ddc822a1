"""Why: invisible-watermark's ``dwtDctSvd`` loops over 4x4 blocks in Python (~0.3 s per
megapixel each way). This is the same algorithm, vectorised with numpy, and bit-compatible
with it in both directions (tests decode our marks with imwatermark and theirs with ours).

Algorithm (imwatermark 0.2.0, ``scales=[0, strength, 0]``): convert to YUV, take the Haar
DWT of the U channel, cut the approximation band into 4x4 blocks in row-major order, block
``i`` carries bit ``i mod n``; in each block, DCT, then SVD, then quantise the largest
singular value ``s0`` to ``(floor(s0 / q) + 0.25 + 0.5 * bit) * q``. Reading a block gives
1 when ``s0 mod q > q / 2``. We return the per-bit fraction of blocks that read 1 (a soft
value for the payload decoder) instead of a hard majority.

One deliberate difference: imwatermark reassembles the DWT with the horizontal and vertical
detail bands swapped, which distorts the image for no gain (the decoder reads only the
approximation band). We keep the bands in place, so our marks have a higher PSNR.
"""

from __future__ import annotations

import cv2
import numpy as np
import pywt
from numpy.typing import NDArray

_N = 4
_DCT = np.array(
    [[(np.sqrt(1 / _N) if k == 0 else np.sqrt(2 / _N)) * np.cos(np.pi * (2 * i + 1) * k / (2 * _N))
      for i in range(_N)] for k in range(_N)]
)


def _blocks(band: NDArray[np.float64]) -> tuple[NDArray[np.float64], int, int]:
    nr, nc = band.shape[0] // _N, band.shape[1] // _N
    view = band[: nr * _N, : nc * _N].reshape(nr, _N, nc, _N).transpose(0, 2, 1, 3)
    return view.reshape(-1, _N, _N), nr, nc


_Bands = tuple[NDArray[np.float64], ...]


def _u_approx(rgb: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], NDArray[np.float64], _Bands]:
    yuv = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV), dtype=np.uint8)
    rows, cols = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    ca, details = pywt.dwt2(yuv[:rows, :cols, 1].astype(np.float64), "haar")
    return yuv, np.asarray(ca, dtype=np.float64), tuple(details)


def n_blocks(height: int, width: int) -> int:
    """How many 4x4 blocks (bit repetitions in total) an image of this size offers."""
    return ((height // 4 * 2) // _N) * ((width // 4 * 2) // _N)


def embed(rgb: NDArray[np.uint8], bits: NDArray[np.uint8], strength: float) -> NDArray[np.uint8]:
    yuv, ca, (ch, cv, cd) = _u_approx(rgb)
    blocks, nr, nc = _blocks(ca)
    coeffs = _DCT @ blocks @ _DCT.T
    u, s, vt = np.linalg.svd(coeffs)
    wanted = bits[np.arange(blocks.shape[0]) % bits.shape[0]].astype(np.float64)
    s[:, 0] = (np.floor(s[:, 0] / strength) + 0.25 + 0.5 * wanted) * strength
    coeffs = (u * s[:, None, :]) @ vt
    new_blocks = _DCT.T @ coeffs @ _DCT
    ca = ca.copy()
    tiled = new_blocks.reshape(nr, nc, _N, _N).transpose(0, 2, 1, 3)
    ca[: nr * _N, : nc * _N] = tiled.reshape(nr * _N, nc * _N)
    rows, cols = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    u_channel = pywt.idwt2((ca, (ch, cv, cd)), "haar")
    yuv = yuv.copy()
    yuv[:rows, :cols, 1] = np.clip(np.rint(u_channel), 0, 255).astype(np.uint8)
    out = np.asarray(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB), dtype=np.uint8)
    return out


def read_soft(rgb: NDArray[np.uint8], n_bits: int, strength: float) -> NDArray[np.float64]:
    """Per bit, the fraction of its blocks that read 1."""
    _, ca, _ = _u_approx(rgb)
    blocks, _, _ = _blocks(ca)
    s0 = np.linalg.svd(_DCT @ blocks @ _DCT.T, compute_uv=False)[:, 0]
    votes = (np.mod(s0, strength) > strength * 0.5).astype(np.float64)
    index = np.arange(blocks.shape[0]) % n_bits
    ones = np.bincount(index, weights=votes, minlength=n_bits)
    total = np.bincount(index, minlength=n_bits)
    result: NDArray[np.float64] = ones / np.maximum(total, 1)
    return result
