"""``multitask``: per-benchmark quadratic coefficients shrunk toward a vector shared by the study's benchmarks.

Coefficients beta_b = w + v_b minimise sum_b ||y_b - c_b - X_b beta_b||² + lam_shared ||w||² + lam_dev sum_b ||v_b||²
on min-max normalised A, C and score (intercepts c_b unpenalised). Both penalties are chosen by exact
leave-one-setting-out CV on the training settings (the setting leaves every benchmark at once: group hat-matrix
identity r_G = (I - H_GG)^-1 e_G).
"""

from __future__ import annotations

import itertools

import numpy as np

from engine.law.models.base import Candidate, LinearPredictor, Prepared
from engine.law.models.linalg import centred, penalty_grid

SHARED_PENALTIES = tuple(float(x) for x in np.logspace(-3, 0, 4))
DEVIATION_PENALTIES = tuple(float(x) for x in np.logspace(2, -2, 5))


class MultitaskFamily:
    """Multi-task ridge over the benchmarks of a study; (shared, deviation) penalties by inner CV."""

    name = "multitask"

    def __init__(self, shared: tuple[float, ...] = SHARED_PENALTIES, deviation: tuple[float, ...] = DEVIATION_PENALTIES) -> None:
        grid = list(itertools.product(penalty_grid(deviation, "multitask deviation penalties"),
                                      penalty_grid(shared, "multitask shared penalties")))
        self.lam_dev = np.array([g[0] for g in grid])
        self.lam_shared = np.array([g[1] for g in grid])

    def _system(self, prep: Prepared) -> tuple[np.ndarray, ...]:
        """The last prepared data's system is kept: ``auto`` asks for the nested residuals and the fit in turn."""
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] is prep:
            return cached[1]
        out = self._solve_system(prep)
        self._cache = (prep, out)
        return out

    def _solve_system(self, prep: Prepared) -> tuple[np.ndarray, ...]:
        """``coef (L,B,p), intercept (L,B), hat H (L,n,B,n,B) setting-major, residuals e (L,n,B), w (B,n)``."""
        Xc, yc, x_off, y_off, w, cnt = centred(prep, "ac_poly")
        B, _, p = Xc.shape
        eye = np.eye(p)
        lv, lw = self.lam_dev[:, None, None], self.lam_shared[:, None, None]
        G = np.einsum("bnp,bnq->bpq", Xc, Xc)
        r = np.einsum("bnp,bn->bp", Xc, yc)
        K = np.linalg.inv(G[None] + lv[..., None] * eye)  # (L,B,p,p), symmetric
        KG = K @ G[None]
        S_inv = np.linalg.inv(lw * eye + lv * KG.sum(axis=1))  # (L,p,p)
        Kr = np.einsum("lbpq,bq->lbp", K, r)
        shared = np.einsum("lpq,lq->lp", S_inv, lv[:, :, 0] * Kr.sum(axis=1))
        coef = shared[:, None, :] + Kr - np.einsum("lbpq,lq->lbp", KG, shared)
        # beta_b = sum_c A_b K_c r_c + K_b r_b with A_b = (I - K_b G_b) S^-1 lam_dev; H = X beta-map X^T + means
        A = (eye - KG) @ (lv[:, None] * S_inv[:, None])  # (L,B,p,p)
        U = Xc[None] @ A  # (L,B,n,p)
        XK = Xc[None] @ K  # (L,B,n,p)
        L, _, n, _ = U.shape
        flat = U.reshape(L, B * n, p) @ np.swapaxes(XK.reshape(L, B * n, p), 1, 2)  # (L, B n, B n)
        H = np.ascontiguousarray(flat.reshape(L, B, n, B, n).transpose(0, 2, 1, 4, 3))  # H[l,i,b,j,c]
        own = XK @ np.swapaxes(Xc, 1, 2)[None] + ((w[:, :, None] * w[:, None, :]) / cnt[:, None, None])[None]  # (L,B,n,n)
        idx = np.arange(B)
        H[:, :, idx, :, idx] += np.moveaxis(own, 1, 0)  # (B,L,n,n) onto H[l, i, b, j, b]
        resid = yc[None] - (Xc[None] @ coef[..., None])[..., 0]  # (L,B,n)
        intercept = y_off[None] - np.einsum("bp,lbp->lb", x_off, coef)
        return coef, intercept, H, np.swapaxes(resid, 1, 2), w

    def path(self, prep: Prepared) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every penalty pair: ``coef (L,B,p), intercept (L,B), group-LOO residuals (L,B,n)``."""
        coef, intercept, H, e, w = self._system(prep)
        n = e.shape[1]
        idx = np.arange(n)
        blocks = np.moveaxis(H[:, idx, :, idx, :], 0, 1)  # (L,n,B,B)
        loo = _solve(np.eye(e.shape[2]) - blocks, e)
        loo = np.where(w.T[None] > 0, loo, np.nan)
        return coef, intercept, np.swapaxes(loo, 1, 2)

    def nested_sse(self, prep: Prepared) -> float:
        """Squared group-LOO errors with each fold's penalties re-chosen without the held-out setting."""
        return float(np.nansum(self.nested_residuals(prep) ** 2))

    def nested_residuals(self, prep: Prepared) -> np.ndarray:
        """(n, B) group-LOO residuals with each fold's penalties re-chosen without the held-out setting (closed
        form: leave-two-settings-out residuals from 2B x 2B hat blocks)."""
        _, _, H, e, w = self._system(prep)
        _, n, B = e.shape
        idx = np.arange(n)
        blocks = np.moveaxis(H[:, idx, :, idx, :], 0, 1)  # (L,n,B,B)
        loo = np.where(w.T[None] > 0, _solve(np.eye(B) - blocks, e), np.nan)  # (L,n,B)
        # leave settings i and j out: Schur complement of the 2x2 block system [[P_i, -H_ij], [-H_ji, P_j]]
        P = np.eye(B) - blocks  # (L,n,B,B)
        P_inv = np.linalg.pinv(P, rcond=1e-10)
        cross = np.transpose(H, (0, 1, 3, 2, 4))  # (L,i,j,B,B) = H[l,i,b,j,c]
        RP = np.swapaxes(cross, 1, 2) @ P_inv[:, :, None]  # H_ji P_i^-1
        M = P[:, None, :] - RP @ cross
        rhs = e[:, None, :] + (RP @ e[:, :, None, :, None])[..., 0]
        M[:, idx, idx] = np.eye(B)  # i == j: unused
        l2o = _solve(M, rhs)  # (L,i,j,B): residual of j without settings i and j
        scored = w.T > 0  # (n,B)
        l2o = np.where(scored[None, None] & ~np.eye(n, dtype=bool)[None, :, :, None], l2o, 0.0)
        inner = (l2o**2).sum(axis=(2, 3))  # (L,n)
        best = np.argmin(np.where(np.isfinite(inner), inner, np.inf), axis=0)
        return loo[best, idx]  # (n,B)

    def select(self, prep: Prepared) -> Candidate:
        coef, intercept, loo = self.path(prep)
        errors = np.nansum(loo**2, axis=(1, 2))
        best = int(np.argmin(errors))
        predictor = LinearPredictor(prep.bounds, "ac_poly", coef[best], intercept[best])
        params = {"shared_penalty": float(self.lam_shared[best]), "deviation_penalty": float(self.lam_dev[best])}
        return Candidate(self.name, params, float(errors[best]), predictor, 6)


def _solve(system: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Batched solve of (I - H_GG) r = e_G; pseudo-inverse when a reduced fit reproduces a point exactly."""
    try:
        return np.linalg.solve(system, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return (np.linalg.pinv(system, rcond=1e-10) @ rhs[..., None])[..., 0]
