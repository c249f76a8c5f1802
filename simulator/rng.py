"""Counter-based random numbers: a pure function of (seed, stream, vehicle, index).

Why not ``numpy.random.Generator``: strategies are compared on *the same* fleet
(common random numbers). A vehicle's k-th connectivity window must be the same
whatever strategy, wave start or active set asked for it, and the engine only
draws for the vehicles still active. A stateful generator would hand out
different numbers depending on how many vehicles were active before; a hash of
the coordinates does not. The mixer is SplitMix64's finaliser (Steele et al.,
"Fast splittable pseudorandom number generators", OOPSLA 2014), which passes
BigCrush when fed a counter.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U64 = np.uint64
_GOLDEN = U64(0x9E3779B97F4A7C15)
_M1 = U64(0xBF58476D1CE4E5B9)
_M2 = U64(0x94D049BB133111EB)
_K_VEHICLE = U64(0xD6E8FEB86659FD93)
_K_INDEX = U64(0xA0761D6478BD642F)
_K_STREAM = U64(0xE7037ED1A0B428DB)

# Named streams keep unrelated draws independent.
STREAMS = {
    "group": 1,
    "wave": 2,
    "install": 3,
    "start": 4,
    "on": 5,
    "gap": 6,
    "gapkind": 7,
    "rate": 8,
    "rate2": 9,
    "poll": 10,
    "dormant": 11,
    "retry": 12,
    "hardware": 13,
    "wifi": 14,
    "cell": 15,
}


def _mix(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = (z ^ (z >> U64(30))) * _M1
    z = (z ^ (z >> U64(27))) * _M2
    return z ^ (z >> U64(31))


def uniform(
    seed: int, stream: str, vehicle: npt.ArrayLike, index: npt.ArrayLike | int = 0
) -> npt.NDArray[np.float64]:
    """Uniform numbers in the open interval (0, 1), one per vehicle."""
    v = np.asarray(vehicle, dtype=np.uint64)
    k = np.asarray(index, dtype=np.uint64)
    base = U64((seed * 0x2545F4914F6CDD1D + STREAMS[stream] * int(_K_STREAM)) % (1 << 64))
    with np.errstate(over="ignore"):
        z = _mix(base + v * _K_VEHICLE + k * _K_INDEX + _GOLDEN)
        z = _mix(z + _GOLDEN)
    # 53 random bits, shifted by half a step so that 0 and 1 never occur (log-safe).
    return ((z >> U64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))


def exponential(
    seed: int, stream: str, vehicle: npt.ArrayLike, index: npt.ArrayLike | int, mean: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Exponential draws with the given mean (per vehicle or scalar)."""
    return -np.log(uniform(seed, stream, vehicle, index)) * np.asarray(mean, dtype=np.float64)


def lognormal_unit_mean(
    seed: int, stream: str, vehicle: npt.ArrayLike, index: npt.ArrayLike | int, sigma: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Log-normal multipliers with mean 1 (Box-Muller from two hashed uniforms)."""
    u1 = uniform(seed, stream, vehicle, index)
    u2 = uniform(seed, stream + "2" if stream + "2" in STREAMS else "rate2", vehicle, index)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    sigma = np.asarray(sigma, dtype=np.float64)
    return np.exp(sigma * z - 0.5 * sigma * sigma)
